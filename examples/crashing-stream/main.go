// Crashing-stream is the Go form of "Stream crashing" on the kstreams
// Streams page, and of what kstreams says may come later ("re-try"): what
// happens when a stream's function fails.
//
// In the seed, the handler reads cr.payload, which does not exist, and the
// stream dies with an AttributeError and a traceback. Go checks field names
// at compile time, so the counterpart here is a runtime failure on a bad
// payload: the handler of the "crashing" stream expects "name:age" and takes
// the age with fields[1], which panics on the payload "Hi". The engine
// recovers the panic (it is never a crash of the process), logs
// "stream crashed" with the stream, its topics, the error and, for a panic,
// the stack, and applies the stream's error policy:
//
//   - ErrorPolicyStop (the default, as in kstreams): the stream stops. It
//     consumes nothing more, not even the good record after "Hi", and "Hi"
//     is not committed, so a fixed program starts from it. The "healthy"
//     stream of the same engine goes on consuming.
//   - ErrorPolicyRestart: the "retrying" stream reads the same events with
//     a group of its own and saves them to a store that fails once, as a
//     database that is briefly unavailable would. The engine restarts the
//     stream from its committed offsets after a backoff, so the failed
//     record is delivered again, and this time it is saved. Nothing is
//     skipped.
//
// The SDK's warnings and errors go to the program's output through a
// slog.TextHandler given to the engine with kstream.Logger (the stack
// shortened to this program's frames).
//
// What to look at: the "stream crashed" log lines, the stream states at the
// end (crashed, running, running with 1 restart), and the committed offsets.
//
// With KAFKA_BROKERS unset it runs against an in-process cluster:
//
//	go run ./examples/crashing-stream
//
// With KAFKA_BROKERS set it uses that cluster, with group names of its own
// for each run.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
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
	helloTopic = "local--hello-world"
)

var events = []string{"ada:36", "Hi", "grace:45"}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "crashing-stream:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	w := &lockedWriter{w: out} // handlers and the SDK write from the engine's goroutines
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()

	cluster, err := kstreamtest.Start(kstreamtest.Topic(topic, 1), kstreamtest.Topic(helloTopic, 1))
	if err != nil {
		return err
	}
	defer cluster.Close()
	// On a shared cluster: groups of this run's own, and this run's records
	// start at base.
	suffix := ""
	if strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != "" {
		suffix = "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	base, err := endOffsets(ctx, cluster)
	if err != nil {
		return err
	}

	eng, err := kstream.NewEngine(
		kstream.Brokers(cluster.Brokers()...),
		kstream.Name("my-stream-engine"),
		kstream.Logger(slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn, ReplaceAttr: readableLog}))),
	)
	if err != nil {
		return err
	}

	// @stream_engine.stream("local--kstreams", group_id="de-my-partition")
	crashing, err := kstream.NewStream(codec.String(),
		kstream.Topics(topic), kstream.Group("de-my-partition"+suffix), kstream.Name("crashing"))
	if err != nil {
		return err
	}
	crashing.Handle(func(ctx context.Context, cr kstream.Record[string]) error {
		if cr.Offset < base[topic] {
			return nil
		}
		name, age := parsePerson(cr.Value) // panics on "Hi"
		fmt.Fprintf(w, "crashing: Event consumed. Payload %s is %d\n", name, age)
		return nil
	})

	healthy, err := kstream.NewStream(codec.String(),
		kstream.Topics(helloTopic), kstream.Group("hello-group"+suffix), kstream.Name("healthy"))
	if err != nil {
		return err
	}
	var helloMu sync.Mutex
	hellos := 0
	healthy.Handle(func(ctx context.Context, cr kstream.Record[string]) error {
		if cr.Offset < base[helloTopic] {
			return nil
		}
		fmt.Fprintf(w, "healthy: Event consumed. Payload %s\n", cr.Value)
		helloMu.Lock()
		hellos++
		helloMu.Unlock()
		return nil
	})

	store := &flakyStore{failOn: "Hi"}
	retrying, err := kstream.NewStream(codec.String(),
		kstream.Topics(topic), kstream.Group("retry-group"+suffix), kstream.Name("retrying"),
		kstream.OnError(kstream.ErrorPolicyRestart))
	if err != nil {
		return err
	}
	retrying.Handle(func(ctx context.Context, cr kstream.Record[string]) error {
		if cr.Offset < base[topic] {
			return nil
		}
		attempt, err := store.save(cr.Value)
		if err != nil {
			fmt.Fprintf(w, "retrying: saving %q (offset %d), attempt %d: %v\n", cr.Value, cr.Offset-base[topic], attempt, err)
			return err
		}
		fmt.Fprintf(w, "retrying: saved %q (offset %d), attempt %d\n", cr.Value, cr.Offset-base[topic], attempt)
		return nil
	})

	for _, s := range []kstream.Runnable{crashing, healthy, retrying} {
		if err := eng.Add(s); err != nil {
			return err
		}
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	defer eng.Stop(context.Background())

	for _, v := range events {
		if _, err := eng.Send(ctx, topic, []byte(v)); err != nil {
			return err
		}
	}
	if _, err := eng.Send(ctx, helloTopic, []byte("hello 1")); err != nil {
		return err
	}
	fmt.Fprintf(w, "sent %q to %s and %q to %s\n", events, topic, "hello 1", helloTopic)

	err = waitFor(ctx, "the crashing stream to crash", func() bool {
		h, _ := eng.StreamHealth("crashing")
		return h.State == kstream.StreamCrashed
	})
	if err != nil {
		return err
	}

	// The other streams go on after the crash.
	if _, err := eng.Send(ctx, helloTopic, []byte("hello 2")); err != nil {
		return err
	}
	fmt.Fprintf(w, "sent %q to %s after the crash\n", "hello 2", helloTopic)
	err = waitFor(ctx, "the healthy stream to consume both hellos", func() bool {
		helloMu.Lock()
		defer helloMu.Unlock()
		return hellos == 2
	})
	if err != nil {
		return err
	}
	err = waitFor(ctx, "the retrying stream to save every event", func() bool { return store.saved() == len(events) })
	if err != nil {
		return err
	}

	fmt.Fprintln(w, "stream states:")
	for _, h := range eng.Health().Streams {
		fmt.Fprintf(w, "  %s: %s, restarts %d", h.Name, h.State, h.Restarts)
		var pe *kstream.PanicError
		if errors.As(h.LastErr, &pe) {
			fmt.Fprintf(w, ", last error: panic: %v", pe.Value)
		} else if h.LastErr != nil {
			fmt.Fprintf(w, ", last error: %v", h.LastErr)
		}
		fmt.Fprintln(w)
	}
	if err := eng.Stop(ctx); err != nil {
		return err
	}

	fmt.Fprintln(w, "committed offsets (counted from this run's first record):")
	for _, g := range []struct{ group, topic string }{
		{"de-my-partition", topic}, {"hello-group", helloTopic}, {"retry-group", topic},
	} {
		committed, err := cluster.Committed(ctx, g.group+suffix)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  %s on %s: %d\n", g.group, g.topic, committed[g.topic][0]-base[g.topic])
	}
	return nil
}

// parsePerson splits "name:age". It trusts its input, as the seed's handler
// trusts cr.payload to exist: on a payload without ':' fields[1] panics.
func parsePerson(v string) (string, int) {
	fields := strings.Split(v, ":")
	age, _ := strconv.Atoi(fields[1])
	return fields[0], age
}

// flakyStore saves values, failing the first attempt to save failOn.
type flakyStore struct {
	failOn string

	mu       sync.Mutex
	attempts map[string]int
	n        int
}

var errUnavailable = errors.New("store unavailable, try again")

func (s *flakyStore) save(v string) (attempt int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.attempts == nil {
		s.attempts = make(map[string]int)
	}
	s.attempts[v]++
	if v == s.failOn && s.attempts[v] == 1 {
		return 1, errUnavailable
	}
	s.n++
	return s.attempts[v], nil
}

func (s *flakyStore) saved() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// readableLog drops the time of each log line and shortens a stack to the
// frames of this program's files, as "function (file:line)".
func readableLog(groups []string, a slog.Attr) slog.Attr {
	switch {
	case len(groups) > 0:
	case a.Key == slog.TimeKey:
		return slog.Attr{}
	case a.Key == "stack":
		lines := strings.Split(a.Value.String(), "\n")
		var frames []string
		for i := 0; i+1 < len(lines); i++ {
			file, _, _ := strings.Cut(strings.TrimSpace(lines[i+1]), " ")
			if !strings.HasPrefix(lines[i+1], "\t") || filepath.Dir(file) != sourceDir {
				continue
			}
			fn, _, _ := strings.Cut(lines[i][strings.LastIndex(lines[i], "/")+1:], "(")
			_, fn, _ = strings.Cut(fn, ".") // drop the package name
			frames = append(frames, fmt.Sprintf("%s (%s)", fn, filepath.Base(file)))
		}
		return slog.String("stack", strings.Join(frames, " <- "))
	}
	return a
}

// sourceDir is the directory of this file, where readableLog finds this
// program's frames.
var sourceDir = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}()

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

func endOffsets(ctx context.Context, cluster *kstreamtest.Cluster) (map[string]int64, error) {
	base := make(map[string]int64)
	for _, t := range []string{topic, helloTopic} {
		end, err := cluster.EndOffsets(ctx, t)
		if err != nil {
			return nil, err
		}
		base[t] = end[0]
	}
	return base, nil
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
