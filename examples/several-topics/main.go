// Several-topics is the Go form of "Consuming from multiple topics" on the
// kstreams Streams page: one stream, one group, two topics, given as
// kstream.Topics("local--kstreams", "local--hello-world") where kstreams
// takes a list.
//
// The group's members share the partitions of both topics; each record
// carries the topic it came from, which the handler prints as kstreams'
// example does. Order is kept within a partition, not across topics, so the
// events of the two topics may interleave differently from one run to the
// next.
//
// What to look at: the "Event consumed from topic ..." lines (every event of
// both topics, each topic's in the order sent) and the group's committed
// offset on each topic.
//
// With KAFKA_BROKERS unset it runs against an in-process cluster:
//
//	go run ./examples/several-topics
//
// With KAFKA_BROKERS set it uses that cluster; records left in the topics
// by earlier runs are skipped.
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

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

const group = "example-group"

var topics = []string{"local--kstreams", "local--hello-world"}

// perTopic is how many events the program sends to each topic.
const perTopic = 3

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "several-topics:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	w := &lockedWriter{w: out} // the handler prints from the engine's goroutine
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()

	cluster, err := kstreamtest.Start(kstreamtest.Topic(topics[0], 1), kstreamtest.Topic(topics[1], 1))
	if err != nil {
		return err
	}
	defer cluster.Close()
	runID := newRunID()

	eng, err := kstream.NewEngine(kstream.Brokers(cluster.Brokers()...), kstream.Name("my-stream-engine"))
	if err != nil {
		return err
	}

	// runCtx is what Run waits on. It is canceled, as a signal or the
	// timeout would, once the hook has sent every event and the handler has
	// consumed them: the last event can be consumed before its Send returns,
	// and Send honours the hook's context, which is runCtx.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	sent, allConsumed := make(chan struct{}), make(chan struct{})
	go func() {
		for _, ch := range []chan struct{}{sent, allConsumed} {
			select {
			case <-ch:
			case <-runCtx.Done():
				return
			}
		}
		stopRun()
	}()
	consumed := make(map[string]int)

	// @stream_engine.stream(["local--kstreams", "local--hello-world"], group_id="example-group")
	s, err := kstream.NewStream(codec.String(),
		kstream.Topics(topics...), kstream.Group(group), kstream.Name("consume"))
	if err != nil {
		return err
	}
	s.Handle(func(ctx context.Context, cr kstream.Record[string]) error {
		if string(cr.Key) != runID {
			return nil // left by an earlier run on a shared cluster
		}
		fmt.Fprintf(w, "Event consumed from topic %s: headers: %s, payload: %s\n", cr.Topic, formatHeaders(cr.Headers), cr.Value)
		consumed[cr.Topic]++ // the engine calls a stream's handler from one goroutine
		if consumed[topics[0]] == perTopic && consumed[topics[1]] == perTopic {
			close(allConsumed)
		}
		return nil
	})
	if err := eng.Add(s); err != nil {
		return err
	}

	eng.AfterStartup(func(ctx context.Context) error {
		for i := 1; i <= perTopic; i++ {
			for _, t := range topics {
				_, err := eng.Send(ctx, t, []byte(fmt.Sprintf("%s event %d", strings.TrimPrefix(t, "local--"), i)),
					kstream.WithKey([]byte(runID)), kstream.WithHeader("n", []byte(strconv.Itoa(i))))
				if err != nil {
					return err
				}
			}
		}
		fmt.Fprintf(w, "sent %d events to each of %v\n", perTopic, topics)
		close(sent)
		return nil
	})

	if err := eng.Run(runCtx); err != nil {
		return err
	}
	// Run returns nil on any cancellation: tell "done" from "timed out".
	if consumed[topics[0]] < perTopic || consumed[topics[1]] < perTopic {
		return fmt.Errorf("consumed %v before stopping, want %d of each topic: %w", consumed, perTopic, context.Cause(ctx))
	}

	committed, err := cluster.Committed(ctx, group)
	if err != nil {
		return err
	}
	for _, t := range topics {
		fmt.Fprintf(w, "consumed %d events of %s; group %q committed %s/0 at offset %d\n", consumed[t], t, group, t, committed[t][0])
	}
	return nil
}

// formatHeaders prints headers as key=value pairs, the values as text.
func formatHeaders(hs []kstream.Header) string {
	parts := make([]string, len(hs))
	for i, h := range hs {
		parts[i] = h.Key + "=" + string(h.Value)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// newRunID returns the key this run gives its records. On a shared cluster
// it tells this run's records from those of earlier runs; on the embedded
// cluster there are no others.
func newRunID() string {
	if strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) == "" {
		return "embedded"
	}
	return strconv.FormatInt(time.Now().UnixNano(), 36)
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
