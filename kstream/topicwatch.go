// Missing topics: a stream subscribed to topics that do not exist consumes
// nothing and, to franz-go, is merely waiting; the watcher makes that visible.

package kstream

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// How often a session checks that its topics exist: soon after opening,
// then often while some are missing (so that health turns back quickly
// once they are created), and rarely once all are there (to notice a topic
// deleted under the stream).
var (
	missingFirstCheck    = 500 * time.Millisecond
	missingCheckInterval = time.Second
	presentCheckInterval = 30 * time.Second
)

// topicWatch is the watcher of one session, kept beside it (in
// topicWatches) rather than in it: it is a concern of its own.
type topicWatch struct {
	stop func() // ends the watcher and waits for its goroutine

	mu      sync.Mutex
	missing []string // at the last check
}

var topicWatches sync.Map // *session → *topicWatch

// startTopicWatch starts the goroutine that checks that the stream's named
// topics exist. A stream with a TopicPattern has none to check: a pattern
// that matches nothing yet may be waiting for topics created later.
// stopTopicWatch (from doClose) ends it.
func (ss *session) startTopicWatch() {
	if len(ss.cfg.topics) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	w := &topicWatch{stop: func() {
		cancel()
		<-done
	}}
	topicWatches.Store(ss, w)
	go func() {
		defer close(done)
		t := time.NewTimer(missingFirstCheck)
		defer t.Stop()
		var warned []string
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			missing, ok := ss.checkTopics(ctx)
			next := presentCheckInterval
			if ok {
				w.setMissing(missing)
				switch {
				case len(missing) > 0 && !slices.Equal(missing, warned):
					ss.log.Warn("subscribed topics do not exist; the stream consumes nothing from them and is unhealthy until they are created", "missing_topics", missing)
				case len(missing) == 0 && len(warned) > 0:
					ss.log.Info("subscribed topics exist now", "topics", warned)
				}
				warned = missing
			}
			if len(missing) > 0 || !ok {
				next = missingCheckInterval
			}
			t.Reset(next)
		}
	}()
}

// checkTopics asks the brokers which of the stream's topics they do not
// know. ok is false when the request failed: nothing is known then.
func (ss *session) checkTopics(ctx context.Context) (missing []string, ok bool) {
	req := kmsg.NewPtrMetadataRequest()
	for _, t := range ss.cfg.topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, ss.client())
	if err != nil {
		return nil, false
	}
	for _, t := range resp.Topics {
		if t.Topic != nil && kerr.ErrorForCode(t.ErrorCode) == kerr.UnknownTopicOrPartition {
			missing = append(missing, *t.Topic)
		}
	}
	slices.Sort(missing)
	return slices.Compact(missing), true
}

// stopTopicWatch ends the session's watcher, if it has one, and waits for
// its goroutine.
func (ss *session) stopTopicWatch() {
	if w, ok := topicWatches.LoadAndDelete(ss); ok {
		w.(*topicWatch).stop()
	}
}

func (w *topicWatch) setMissing(missing []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.missing = missing
}

// missingTopics returns the stream's topics the brokers did not know at
// the last check.
func (ss *session) missingTopics() []string {
	v, ok := topicWatches.Load(ss)
	if !ok {
		return nil
	}
	w := v.(*topicWatch)
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.missing)
}
