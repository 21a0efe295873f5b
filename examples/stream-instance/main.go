// Stream-instance is the Go form of "Creating a Stream instance" on the
// kstreams Streams page: a stream created directly, with a deserializer of
// its own and a function that iterates over the whole stream, then added to
// the engine with eng.Add (kstreams' stream_engine.add_stream).
//
// In kstreams the deserializer is a class with a deserialize method; here it
// is a codec.DecoderFunc that turns "name:age" text into a Person, so the
// stream is a *kstream.Stream[Person] and every record's Value is typed.
// The stream function (kstreams' func=stream) is set with Func: the engine
// calls it once, and it ranges over s.Records(ctx) as kstreams' "async for cr
// in stream" does.
//
// What to look at: the decoded Person in each "Event consumed" line, and the
// record "not a person", which the decoder rejects: the range yields a
// *kstream.DecodeError for it (with its topic, partition and offset), the
// function prints it and goes on, and the record after it is consumed as
// usual.
//
// With KAFKA_BROKERS unset it runs against an in-process cluster:
//
//	go run ./examples/stream-instance
//
// With KAFKA_BROKERS set it uses that cluster; records left in the topic by
// earlier runs are skipped.
package main

import (
	"bytes"
	"context"
	"errors"
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

const topic = "local--kstreams"

// Person is the value of each record, written as "name:age".
type Person struct {
	Name string
	Age  int
}

// decodePerson is the stream's deserializer. It copies what it keeps (the
// name) because the bytes belong to the fetched record.
func decodePerson(data []byte) (Person, error) {
	name, age, ok := bytes.Cut(data, []byte(":"))
	if !ok {
		return Person{}, fmt.Errorf("want name:age, got %q", data)
	}
	n, err := strconv.Atoi(string(age))
	if err != nil {
		return Person{}, fmt.Errorf("age of %q: %w", name, err)
	}
	return Person{Name: string(name), Age: n}, nil
}

var events = []string{"ada:36", "grace:45", "not a person", "linus:28"}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "stream-instance:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	w := &lockedWriter{w: out} // the stream function prints from the engine's goroutine
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()

	brokers, stopCluster, err := kstreamtest.StartCluster(kstreamtest.Topic(topic, 1))
	if err != nil {
		return err
	}
	defer stopCluster()
	runID := newRunID()

	eng, err := kstream.NewEngine(kstream.Brokers(brokers...), kstream.Name("my-stream-engine"))
	if err != nil {
		return err
	}

	var mu sync.Mutex
	var people []Person
	var badOffsets []int64
	done := make(chan struct{})

	// stream = Stream("local--kstreams", name="my-stream", func=stream,
	//                 deserializer=MyDeserializer())
	stream, err := kstream.NewStream(codec.DecoderFunc[Person](decodePerson),
		kstream.Topics(topic), kstream.Group("my-stream"), kstream.Name("my-stream"))
	if err != nil {
		return err
	}
	stream.Func(func(ctx context.Context, s *kstream.Stream[Person]) error {
		seen := 0
		for cr, err := range s.Records(ctx) {
			var de *kstream.DecodeError
			if err != nil && !errors.As(err, &de) {
				return err // a fetch error: the stream crashes
			}
			if string(cr.Key) != runID {
				continue // left by an earlier run on a shared cluster
			}
			seen++
			switch {
			case de != nil:
				// Continuing counts the bad record as handled.
				fmt.Fprintf(w, "skipped %s/%d offset %d: %v\n", de.Topic, de.Partition, de.Offset, de.Err)
				mu.Lock()
				badOffsets = append(badOffsets, de.Offset)
				mu.Unlock()
			default:
				fmt.Fprintf(w, "Event consumed: headers: %s, payload: %+v\n", formatHeaders(cr.Headers), cr.Value)
				mu.Lock()
				people = append(people, cr.Value)
				mu.Unlock()
			}
			if seen == len(events) {
				close(done)
			}
		}
		return nil // ctx canceled: the engine is stopping
	})
	if err := eng.Add(stream); err != nil {
		return err
	}

	// async def start(): await stream_engine.start(); await produce()
	if err := eng.Start(ctx); err != nil {
		return err
	}
	for i, v := range events {
		if _, err := eng.Send(ctx, topic, []byte(v),
			kstream.WithKey([]byte(runID)),
			kstream.WithHeader("content-type", []byte("text/name-age")),
			kstream.WithHeader("n", []byte(strconv.Itoa(i+1)))); err != nil {
			eng.Stop(context.Background())
			return err
		}
	}
	fmt.Fprintf(w, "sent %d events to %s\n", len(events), topic)

	select {
	case <-done:
	case <-ctx.Done():
	}
	if err := eng.Stop(context.Background()); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	if len(people)+len(badOffsets) < len(events) {
		return fmt.Errorf("consumed %d of %d events before stopping: %w", len(people)+len(badOffsets), len(events), context.Cause(ctx))
	}
	fmt.Fprintf(w, "decoded %d people, rejected %d record(s)\n", len(people), len(badOffsets))
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
