package kstream_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// env is one test's cluster, with a topic of known content: value i is
// "v<i>" on partition i%partitions at offset i/partitions.
type env struct {
	t          *testing.T
	c          *kstreamtest.Cluster
	topic      string
	partitions int32
	ctx        context.Context
}

func newEnv(t *testing.T, partitions int32, n int) *env {
	t.Helper()
	topic := "t-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	checkNoGoroutineLeak(t)
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, partitions))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	e := &env{t: t, c: c, topic: topic, partitions: partitions, ctx: ctx}
	e.produce(0, n)
	return e
}

// produce writes values v<from> .. v<to-1>.
func (e *env) produce(from, to int) {
	e.t.Helper()
	if to <= from {
		return
	}
	recs := make([]*kgo.Record, 0, to-from)
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Topic: e.topic, Partition: int32(i) % e.partitions, Value: []byte(fmt.Sprintf("v%d", i))})
	}
	if err := e.c.Produce(e.ctx, recs...); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) stream(opts ...kstream.Option) *kstream.Stream[string] {
	e.t.Helper()
	base := []kstream.Option{
		kstream.Brokers(e.c.Brokers()...),
		kstream.Topics(e.topic),
		kstream.Logger(testLogger(e.t)),
		kstream.ClientOptions(kgo.HeartbeatInterval(100*time.Millisecond), kgo.FetchMaxWait(200*time.Millisecond)),
		groupProtocol(),
	}
	s, err := kstream.NewStream(codec.String(), append(base, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// groupProtocol returns the client options of the group protocol the tests
// run under: the classic protocol, or with KSTREAM_GROUP_PROTOCOL=consumer
// the consumer protocol of KIP-848, where the broker assigns (make
// test-kip848).
func groupProtocol() kstream.Option {
	if os.Getenv("KSTREAM_GROUP_PROTOCOL") == "consumer" {
		return kstream.ClientOptions(kgo.ServerSideBalancer())
	}
	return kstream.ClientOptions()
}

// committed returns the group's committed offsets for the env's topic.
func (e *env) committed(group string) map[int32]int64 {
	e.t.Helper()
	got, err := e.c.Committed(e.ctx, group)
	if err != nil {
		e.t.Fatal(err)
	}
	if got[e.topic] == nil {
		return map[int32]int64{}
	}
	return got[e.topic]
}

func (e *env) wantCommitted(group string, want map[int32]int64) {
	e.t.Helper()
	if got := e.committed(group); !maps.Equal(got, want) {
		e.t.Fatalf("committed offsets of group %q = %v, want %v", group, got, want)
	}
}

// take ranges over s until it has n records and returns them.
func take(t *testing.T, ctx context.Context, s *kstream.Stream[string], n int) []kstream.Record[string] {
	t.Helper()
	var out []kstream.Record[string]
	if n == 0 {
		return out
	}
	for rec, err := range s.Records(ctx) {
		if err != nil {
			t.Fatalf("unexpected error after %d records: %v", len(out), err)
		}
		out = append(out, rec)
		if len(out) == n {
			break
		}
	}
	if len(out) != n {
		t.Fatalf("got %d records, want %d", len(out), n)
	}
	return out
}

func offsets(recs []kstream.Record[string]) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.Offset
	}
	return out
}

// testLogger sends a stream's logs to the test log, at info level.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// logRecorder captures log output for assertions.
type logRecorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logRecorder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logRecorder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// checkNoGoroutineLeak fails t if, once t's cleanups have run, more
// goroutines are alive than when it was called. Call it before starting the
// test's cluster: cleanups run last-in first-out, so the check runs after the
// cluster is closed and every goroutine left is someone's leak.
func checkNoGoroutineLeak(t *testing.T) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutines: %d alive, %d at start; stacks:\n%s", runtime.NumGoroutine(), base, buf)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// eventually waits for cond, failing t with msg after timeout.
func eventually(t *testing.T, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func slogTo(w *logRecorder) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
