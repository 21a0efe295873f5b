// Remove-stream is the Go form of "Removing a stream from the engine" on the
// kstreams Streams page (stream_engine.remove_stream(stream)).
//
// A stream is added to a running engine, consumes three events, and is
// removed with eng.Remove(ctx, s): the stream finishes the record in hand,
// commits what it processed and leaves its group, and the engine forgets it.
// Two more events are then sent; nobody consumes them, and they show up as
// lag between the group's committed offset and the end of the partition.
// Finally the same stream is added again: it starts from the committed
// offset, so it gets exactly the two events it missed.
//
// What to look at: the committed offset right after Remove (3: every
// processed record, nothing more), the count that does not move while the
// stream is removed, and the lag that the re-added stream clears.
//
// With KAFKA_BROKERS unset it runs against an in-process cluster:
//
//	go run ./examples/remove-stream
//
// With KAFKA_BROKERS set it uses that cluster, with a group name of its own
// for each run.
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
	topic      = "local--kstreams"
	streamName = "my-stream"
	// quiet is how long the program watches the removed stream to show
	// that it consumes nothing.
	quiet = 500 * time.Millisecond
)

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "remove-stream:", err)
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
	// The committed offsets this program shows are those of its own group:
	// on a shared cluster, a group per run.
	group := "remove-demo"
	if external() {
		group += "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	base, err := endOffset(ctx, cluster)
	if err != nil {
		return err
	}

	eng, err := kstream.NewEngine(kstream.Brokers(cluster.Brokers()...))
	if err != nil {
		return err
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	defer eng.Stop(context.Background())

	var consumed counter
	s, err := kstream.NewStream(codec.String(),
		kstream.Topics(topic), kstream.Group(group), kstream.Name(streamName))
	if err != nil {
		return err
	}
	s.Handle(func(ctx context.Context, cr kstream.Record[string]) error {
		if cr.Offset < base {
			return nil // left by an earlier run on a shared cluster
		}
		fmt.Fprintf(w, "Event consumed: offset %d, payload: %s\n", cr.Offset, cr.Value)
		consumed.add()
		return nil
	})
	// Added to a running engine, the stream starts at once.
	if err := eng.Add(s); err != nil {
		return err
	}
	if err := send(ctx, eng, w, 1, 3); err != nil {
		return err
	}
	if err := consumed.waitFor(ctx, 3); err != nil {
		return err
	}

	// stream_engine.remove_stream(stream)
	if err := eng.Remove(ctx, s); err != nil {
		return err
	}
	_, known := eng.StreamHealth(streamName)
	fmt.Fprintf(w, "removed %q; engine still has it: %v\n", streamName, known)
	if err := printOffsets(ctx, w, cluster, group, base); err != nil {
		return err
	}

	if err := send(ctx, eng, w, 4, 5); err != nil {
		return err
	}
	select {
	case <-time.After(quiet):
	case <-ctx.Done():
		return ctx.Err()
	}
	fmt.Fprintf(w, "consumed while removed (%v): %d\n", quiet, consumed.get()-3)
	if err := printOffsets(ctx, w, cluster, group, base); err != nil {
		return err
	}

	// A removed stream can be added again: a new group member, starting
	// from the committed offset.
	if err := eng.Add(s); err != nil {
		return err
	}
	fmt.Fprintf(w, "added %q again\n", streamName)
	if err := consumed.waitFor(ctx, 5); err != nil {
		return err
	}
	if err := eng.Stop(ctx); err != nil {
		return err
	}
	return printOffsets(ctx, w, cluster, group, base)
}

// send sends events number from to to, each as "event <n>".
func send(ctx context.Context, eng *kstream.Engine, w io.Writer, from, to int) error {
	for i := from; i <= to; i++ {
		if _, err := eng.Send(ctx, topic, []byte("event "+strconv.Itoa(i))); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "sent events %d..%d\n", from, to)
	return nil
}

// printOffsets prints the group's committed offset, the end of the
// partition and the lag between them, counted from base, where this run's
// records start.
func printOffsets(ctx context.Context, w io.Writer, cluster *kstreamtest.Cluster, group string, base int64) error {
	committed, err := cluster.Committed(ctx, group)
	if err != nil {
		return err
	}
	end, err := endOffset(ctx, cluster)
	if err != nil {
		return err
	}
	c, ok := committed[topic][0]
	if !ok {
		fmt.Fprintf(w, "  committed: none, end: %d\n", end-base)
		return nil
	}
	fmt.Fprintf(w, "  committed: %d, end: %d, lag: %d\n", c-base, end-base, end-c)
	return nil
}

func endOffset(ctx context.Context, cluster *kstreamtest.Cluster) (int64, error) {
	end, err := cluster.EndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	return end[0], nil
}

func external() bool { return strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != "" }

// counter counts consumed events and lets the program wait for a count.
type counter struct {
	mu      sync.Mutex
	n       int
	changed chan struct{}
}

func (c *counter) add() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

func (c *counter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *counter) waitFor(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		if c.n >= n {
			c.mu.Unlock()
			return nil
		}
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("consumed %d of %d events: %w", c.get(), n, context.Cause(ctx))
		}
	}
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
