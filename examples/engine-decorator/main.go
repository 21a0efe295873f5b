// Engine-decorator is the Go form of the opening of the kstreams Streams
// page: a function registered on a stream engine with
// @stream_engine.stream(...). Go has no decorators, so the same thing is a
// stream with a per-record Handle function, given to the engine with
// eng.Add. The engine sends a few events once it has started (an
// AfterStartup hook, where kstreams' start() awaits produce()), the handler
// prints each one as kstreams' example does, and Run returns once the
// context is canceled, after a graceful stop.
//
// What to look at: the handler gets a typed kstream.Record[string] (the
// String codec decodes the value), one call per record, in offset order;
// returning nil marks the record processed, so the group's committed offset
// printed at the end covers every event.
//
// With KAFKA_BROKERS unset it runs against an in-process cluster:
//
//	go run ./examples/engine-decorator
//
// With KAFKA_BROKERS set it uses that cluster and creates the topic if
// needed; records left in the topic by earlier runs are skipped.
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

const (
	topic   = "local--kstreams"
	group   = "de-my-partition"
	nEvents = 3
)

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "engine-decorator:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	w := &lockedWriter{w: out} // the handler prints from the engine's goroutine
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()

	cluster, err := kstreamtest.Start(kstreamtest.Topic(topic, 1))
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
	consumed := 0

	// @stream_engine.stream("local--kstreams", group_id="de-my-partition")
	// async def consume(cr): ...
	s, err := kstream.NewStream(codec.String(),
		kstream.Topics(topic), kstream.Group(group), kstream.Name("consume"))
	if err != nil {
		return err
	}
	s.Handle(func(ctx context.Context, cr kstream.Record[string]) error {
		if string(cr.Key) != runID {
			return nil // left by an earlier run on a shared cluster
		}
		fmt.Fprintf(w, "Event consumed: headers: %s, payload: %s\n", formatHeaders(cr.Headers), cr.Value)
		consumed++ // the engine calls a stream's handler from one goroutine
		if consumed == nEvents {
			close(allConsumed)
		}
		return nil
	})
	if err := eng.Add(s); err != nil {
		return err
	}

	eng.AfterStartup(func(ctx context.Context) error {
		for i := 1; i <= nEvents; i++ {
			md, err := eng.Send(ctx, topic, []byte("Hi "+strconv.Itoa(i)),
				kstream.WithKey([]byte(runID)),
				kstream.WithHeader("event-id", []byte(strconv.Itoa(i))))
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "sent %q to %s/%d at offset %d\n", "Hi "+strconv.Itoa(i), md.Topic, md.Partition, md.Offset)
		}
		close(sent)
		return nil
	})

	if err := eng.Run(runCtx); err != nil {
		return err
	}
	// Run returns nil on any cancellation: tell "done" from "timed out".
	if consumed < nEvents {
		return fmt.Errorf("consumed %d of %d events before stopping: %w", consumed, nEvents, context.Cause(ctx))
	}
	fmt.Fprintf(w, "engine stopped after %d events\n", consumed)

	committed, err := cluster.Committed(ctx, group)
	if err != nil {
		return err
	}
	end, err := cluster.EndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "group %q committed %s/0 at offset %d (end of partition: %d)\n", group, topic, committed[topic][0], end[0])
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
