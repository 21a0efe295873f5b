// Consumer-behaviour is the Go form of "Changing consumer behavior" on the
// kstreams Streams page. kstreams passes aiokafka keyword arguments through
// to the consumer; a kstream.Stream passes franz-go options through
// kstream.ClientOptions, and has an option of its own for the offset reset
// policy:
//
//	aiokafka keyword         kstream option
//	auto_offset_reset        kstream.ResetOffset(kstream.Latest)
//	session_timeout_ms       kstream.ClientOptions(kgo.SessionTimeout(d))
//	heartbeat_interval_ms    kstream.ClientOptions(kgo.HeartbeatInterval(d))
//	fetch_max_wait_ms        kstream.ClientOptions(kgo.FetchMaxWait(d))
//
// The reset policy decides where a group starts in a partition it has no
// committed offset for. Two streams with new groups read the same topic,
// which already holds two events: "earliest" (the default, so that nothing
// produced before a group's first start is lost) reads them; "latest"
// starts after them and reads only what is sent once it has joined.
//
// A real broker accepts session timeouts between its
// group.min.session.timeout.ms (6s by default) and
// group.max.session.timeout.ms; the heartbeat interval should be well under
// the session timeout.
//
// What to look at: the events each stream consumed; "latest" has none of
// the "before" events.
//
// With KAFKA_BROKERS unset it runs against an in-process cluster:
//
//	go run ./examples/consumer-behaviour
//
// With KAFKA_BROKERS set it uses that cluster, with group names of its own
// for each run (a group that has committed offsets ignores the reset
// policy), and skips records left by earlier runs.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
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

const topic = "local--kstream"

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "consumer-behaviour:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	w := &lockedWriter{w: out} // the handlers print from the engine's goroutines
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()

	cluster, err := kstreamtest.Start(kstreamtest.Topic(topic, 1))
	if err != nil {
		return err
	}
	defer cluster.Close()
	runID, suffix := "embedded", ""
	if strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != "" {
		runID = strconv.FormatInt(time.Now().UnixNano(), 36)
		suffix = "-" + runID
	}

	for _, v := range []string{"before-1", "before-2"} {
		if err := cluster.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(runID), Value: []byte(v)}); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "sent before-1, before-2 to %s before any stream started\n", topic)

	eng, err := kstream.NewEngine(kstream.Brokers(cluster.Brokers()...))
	if err != nil {
		return err
	}
	seen := make(map[string]*consumed)
	assigned := make(chan struct{})
	var assignOnce sync.Once
	for _, reset := range []kstream.OffsetReset{kstream.Earliest, kstream.Latest} {
		name := reset.String()
		c := &consumed{}
		seen[name] = c
		// @stream_engine.stream("local--kstream", group_id=...,
		//     auto_offset_reset="latest", session_timeout_ms=10000, ...)
		s, err := kstream.NewStream(codec.String(),
			kstream.Topics(topic),
			kstream.Group(name+"-group"+suffix),
			kstream.Name(name),
			kstream.ResetOffset(reset),
			kstream.ClientOptions(
				kgo.SessionTimeout(10*time.Second),
				kgo.HeartbeatInterval(500*time.Millisecond),
				kgo.FetchMaxWait(250*time.Millisecond),
			),
			kstream.Listener(kstream.ListenerFuncs{
				Assigned: func(context.Context, kstream.AnyStream, map[string][]int32) {
					if reset == kstream.Latest {
						assignOnce.Do(func() { close(assigned) })
					}
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
			fmt.Fprintf(w, "%s: Event consumed: payload: %s\n", name, cr.Value)
			c.add(cr.Value)
			return nil
		})
		if err := eng.Add(s); err != nil {
			return err
		}
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	defer eng.Stop(context.Background())

	// Once "latest" has its partition, it looks up the end of it; what is
	// sent after that is read. Send until it reads something: normally
	// after-1 is enough.
	select {
	case <-assigned:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the latest stream's assignment: %w", context.Cause(ctx))
	}
	select {
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	for i := 1; seen["latest"].len() == 0; i++ {
		v := "after-" + strconv.Itoa(i)
		if _, err := eng.Send(ctx, topic, []byte(v), kstream.WithKey([]byte(runID))); err != nil {
			return err
		}
		fmt.Fprintf(w, "sent %s after the streams joined\n", v)
		if err := seen["latest"].waitFor(ctx, 1, 300*time.Millisecond); err != nil {
			return err
		}
	}
	// "earliest" reads everything: the two before and what was sent after.
	if err := seen["earliest"].waitFor(ctx, 2+seen["latest"].len(), 0); err != nil {
		return err
	}
	if err := eng.Stop(ctx); err != nil {
		return err
	}
	for _, name := range []string{"earliest", "latest"} {
		fmt.Fprintf(w, "%s consumed: %v\n", name, seen[name].get())
	}
	return nil
}

// consumed records the values a stream consumed.
type consumed struct {
	mu   sync.Mutex
	vals []string
}

func (c *consumed) add(v string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.vals = append(c.vals, v)
}

func (c *consumed) get() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.vals)
}

func (c *consumed) len() int { return len(c.get()) }

// waitFor waits until at least n values were consumed. With a positive
// patience it gives up quietly after that long; without, only when ctx
// is done, with an error.
func (c *consumed) waitFor(ctx context.Context, n int, patience time.Duration) error {
	var give <-chan time.Time
	if patience > 0 {
		t := time.NewTimer(patience)
		defer t.Stop()
		give = t.C
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for c.len() < n {
		select {
		case <-tick.C:
		case <-give:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("consumed %v, waiting for %d: %w", c.get(), n, context.Cause(ctx))
		}
	}
	return nil
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
