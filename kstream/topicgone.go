package kstream

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A topic that is deleted, and perhaps created again under the same name,
// has a new topic ID; franz-go's producer keeps the one it knew and fails
// every record to the topic with UNKNOWN_TOPIC_ID until it is told to
// forget the topic. The engine notes such a topic when a send to it fails
// that way, and the next send to it makes the producer forget it, so that
// it looks the topic up again: the send that failed returns its error, the
// next one goes to the topic the name now stands for.
//
// A failure counts only if no purge has happened since its send began:
// the records of an old failure that come back after a purge would
// otherwise make the next send purge again, failing records already
// buffered for the new topic.
type goneTopics struct {
	n      atomic.Int32  // topics noted or being purged: sends look only when non-zero
	purges atomic.Uint64 // purges begun, the generation a send records
	mu     sync.Mutex
	names  map[string]chan struct{} // noted topic → nil, or closed when its purge is done
}

// generation is what a send records before producing, for note.
func (g *goneTopics) generation() uint64 { return g.purges.Load() }

// note records topic as gone if err says the brokers no longer know it,
// and no purge has begun since the send of generation gen began.
func (g *goneTopics) note(e *Engine, topic string, err error, gen uint64) {
	if err == nil || !errors.Is(err, kerr.UnknownTopicID) || gen != g.purges.Load() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.names[topic]; ok {
		return
	}
	if g.names == nil {
		g.names = make(map[string]chan struct{})
	}
	g.names[topic] = nil
	g.n.Add(1)
	e.log.Warn("the brokers no longer know the topic's ID (deleted, or deleted and created again); the next send looks it up again", "topic", topic)
}

// forget makes producer forget topic if it was noted as gone, and waits
// for that until ctx ends. The purge runs on a goroutine of its own
// (franz-go runs it on its metadata goroutine, which may be busy), counted
// in e.inflight so that Stop waits for it; one purge serves every send
// that waits for it.
func (g *goneTopics) forget(ctx context.Context, e *Engine, producer *kgo.Client, topic string) error {
	if g.n.Load() == 0 {
		return nil
	}
	g.mu.Lock()
	done, ok := g.names[topic]
	if !ok {
		g.mu.Unlock()
		return nil
	}
	if done == nil {
		done = make(chan struct{})
		g.names[topic] = done
		g.purges.Add(1)
		e.inflight.add() // the caller holds one too: the count cannot reach zero in between
		go func() {
			defer e.inflight.finish()
			producer.PurgeTopicsFromProducing(topic)
			g.mu.Lock()
			delete(g.names, topic)
			g.mu.Unlock()
			g.n.Add(-1)
			close(done)
		}()
	}
	g.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
