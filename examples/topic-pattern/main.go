// Topic-pattern shows a stream subscribed to a topic pattern rather than to
// a list of topics, next to "Consuming from multiple topics" on the
// kstreams Streams page: kstream.TopicPattern, the Go form of subscribing by
// pattern (aiokafka's subscribe(pattern=...)).
//
// The stream consumes every topic whose whole name matches
// `local--events-.*`. One such topic exists when it starts; another is
// created while it runs, and the stream picks it up at its next metadata
// refresh. franz-go refreshes metadata every 5 minutes by default, so the
// stream passes kgo.MetadataMaxAge and kgo.MetadataMinAge through
// kstream.ClientOptions to make that a fraction of a second here, and
// kgo.FetchMaxWait so that the first fetch from the new topic is not held
// up behind a long poll of the old one. A topic that does not match
// (local--other) is never read.
//
// What to look at: the "assigned" lines, written by a rebalance listener
// (the group first gets local--events-a, then, once the new topic is seen,
// local--events-b as well), the topic of each consumed event, and that
// local--other's event is not among them.
//
// With KAFKA_BROKERS unset it runs against an in-process cluster:
//
//	go run ./examples/topic-pattern
//
// With KAFKA_BROKERS set it uses that cluster; the topic it creates while
// running then has a name of its own for each run, and records left by
// earlier runs are skipped.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

const (
	pattern    = `local--events-.*`
	firstTopic = "local--events-a"
	otherTopic = "local--other"
	group      = "pattern-group"
)

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "topic-pattern:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	w := &lockedWriter{w: out} // the handler and the listener print from other goroutines
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()

	cluster, err := kstreamtest.Start(kstreamtest.Topic(firstTopic, 1), kstreamtest.Topic(otherTopic, 1))
	if err != nil {
		return err
	}
	defer cluster.Close()
	runID := newRunID()
	newTopic := "local--events-b"
	if runID != "embedded" {
		newTopic += "-" + runID // "created after start" on every run
	}

	// Events already waiting when the stream starts.
	err = cluster.Produce(ctx,
		&kgo.Record{Topic: firstTopic, Key: []byte(runID), Value: []byte("a1")},
		&kgo.Record{Topic: firstTopic, Key: []byte(runID), Value: []byte("a2")},
		&kgo.Record{Topic: otherTopic, Key: []byte(runID), Value: []byte("not for this stream")},
	)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "sent a1, a2 to %s and one event to %s\n", firstTopic, otherTopic)

	eng, err := kstream.NewEngine(kstream.Brokers(cluster.Brokers()...))
	if err != nil {
		return err
	}
	var mu sync.Mutex
	byTopic := make(map[string][]string)
	got := func(topic string) int {
		mu.Lock()
		defer mu.Unlock()
		return len(byTopic[topic])
	}

	s, err := kstream.NewStream(codec.String(),
		kstream.TopicPattern(pattern),
		kstream.Group(group),
		kstream.Name("events"),
		kstream.ClientOptions(
			kgo.MetadataMaxAge(250*time.Millisecond),
			kgo.MetadataMinAge(100*time.Millisecond),
			// A fetch in flight when the new partition is assigned runs
			// to its end before one that includes the new partition is
			// sent: cap that wait (franz-go's default is 5s).
			kgo.FetchMaxWait(250*time.Millisecond),
		),
		kstream.Listener(kstream.ListenerFuncs{
			Assigned: func(_ context.Context, _ kstream.AnyStream, assigned map[string][]int32) {
				fmt.Fprintf(w, "assigned: %v\n", assigned)
			},
		}),
	)
	if err != nil {
		return err
	}
	s.Handle(func(ctx context.Context, cr kstream.Record[string]) error {
		if string(cr.Key) != runID {
			return nil // left by an earlier run on a shared cluster
		}
		fmt.Fprintf(w, "Event consumed from topic %s: payload: %s\n", cr.Topic, cr.Value)
		mu.Lock()
		byTopic[cr.Topic] = append(byTopic[cr.Topic], cr.Value)
		mu.Unlock()
		return nil
	})
	if err := eng.Add(s); err != nil {
		return err
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	defer eng.Stop(context.Background())
	if err := waitFor(ctx, "a1 and a2", func() bool { return got(firstTopic) == 2 }); err != nil {
		return err
	}

	// A topic created after the stream started, matching the pattern.
	if err := cluster.CreateTopic(ctx, newTopic, 1); err != nil {
		return err
	}
	if _, err := eng.Send(ctx, newTopic, []byte("b1"), kstream.WithKey([]byte(runID))); err != nil {
		return err
	}
	created := time.Now()
	fmt.Fprintf(w, "created %s and sent b1 to it\n", newTopic)
	if err := waitFor(ctx, "b1 from the new topic", func() bool { return got(newTopic) == 1 }); err != nil {
		return err
	}
	fmt.Fprintf(w, "picked up the new topic within %v\n", time.Since(created).Round(100*time.Millisecond))

	if err := eng.Stop(ctx); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	for _, t := range []string{firstTopic, newTopic, otherTopic} {
		fmt.Fprintf(w, "consumed from %s: %v\n", t, byTopic[t])
	}
	return nil
}

func waitFor(ctx context.Context, what string, cond func() bool) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, context.Cause(ctx))
		}
	}
	return nil
}

// newRunID returns the key this run gives its records. On a shared cluster
// it tells this run's records from those of earlier runs; on the embedded
// cluster there are no others.
func newRunID() string {
	if strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) == "" {
		return "embedded"
	}
	// Decimal, as the other examples' suffixes: a base-36 one could be
	// all letters, which examples/secured_test.go cannot tell from a name.
	return strconv.FormatInt(time.Now().UnixNano(), 10)
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
