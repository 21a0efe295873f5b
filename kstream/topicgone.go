package kstream

import (
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
// that way, and the next send to it (Send, SendAsync or SendBatch, on the
// caller's goroutine) makes the producer forget it, so that it looks the
// topic up again: the send that failed returns its error, the next one
// goes to the topic the name now stands for.
type goneTopics struct {
	n     atomic.Int32 // topics noted: sends check the map only when non-zero
	names sync.Map     // topic name → struct{}
}

// note records topic as gone if err says the brokers no longer know it.
func (g *goneTopics) note(e *Engine, topic string, err error) {
	if err == nil || !errors.Is(err, kerr.UnknownTopicID) {
		return
	}
	if _, loaded := g.names.LoadOrStore(topic, struct{}{}); !loaded {
		g.n.Add(1)
		e.log.Warn("the brokers no longer know the topic's ID (deleted, or deleted and created again); the next send looks it up again", "topic", topic)
	}
}

// forget makes producer forget topic if it was noted as gone.
func (g *goneTopics) forget(producer *kgo.Client, topic string) {
	if g.n.Load() == 0 {
		return
	}
	if _, ok := g.names.LoadAndDelete(topic); ok {
		g.n.Add(-1)
		producer.PurgeTopicsFromProducing(topic)
	}
}
