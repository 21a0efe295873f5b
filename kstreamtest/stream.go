package kstreamtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// links maps each stream built by NewStream to its severable dialer, for
// Crash. Entries are removed when the stream's test ends.
var links sync.Map // *kstream.Stream[T] (as any) -> *link

// NewStream returns a stream wired to c, closed when t ends. It is
// kstream.NewStream with, before opts, kstream.Brokers(c.Brokers()...) and
// kstream.ClientOptions(c.GroupTimings()...), so that rebalances and crashes
// play out in about a second instead of Kafka's 45s; and, after opts, a
// kgo.Dialer that Crash can sever (it replaces any kgo.Dialer given in
// opts). Options in opts override the others, as repeated options do in
// kstream. NewStream fails t if kstream.NewStream rejects the options. The
// stream is not opened: range over it, call Use or Open, or add it to an
// engine.
func NewStream[T any](t testing.TB, c *Cluster, dec codec.Decoder[T], opts ...kstream.Option) *kstream.Stream[T] {
	t.Helper()
	l := newLink()
	all := make([]kstream.Option, 0, len(opts)+3)
	all = append(all,
		kstream.Brokers(c.Brokers()...),
		kstream.ClientOptions(c.GroupTimings()...),
	)
	all = append(all, opts...)
	all = append(all, kstream.ClientOptions(kgo.Dialer(l.dial)))
	s, err := kstream.NewStream(dec, all...)
	if err != nil {
		t.Fatalf("kstreamtest: NewStream: %v", err)
	}
	links.Store(s, l)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Logf("kstreamtest: closing stream %q at the end of the test: %v", s.Name(), err)
		}
		links.Delete(s)
	})
	return s
}

// NewEngine returns an engine wired to c, stopped when t ends (if the test
// has not stopped it). It is kstream.NewEngine with, before opts,
// kstream.Brokers(c.Brokers()...) and kstream.ClientOptions(c.GroupTimings()...),
// which its streams inherit. It fails t if kstream.NewEngine rejects the options.
// The engine is not started.
func NewEngine(t testing.TB, c *Cluster, opts ...kstream.Option) *kstream.Engine {
	t.Helper()
	all := make([]kstream.Option, 0, len(opts)+2)
	all = append(all,
		kstream.Brokers(c.Brokers()...),
		kstream.ClientOptions(c.GroupTimings()...),
	)
	all = append(all, opts...)
	eng, err := kstream.NewEngine(all...)
	if err != nil {
		t.Fatalf("kstreamtest: NewEngine: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := eng.Stop(ctx); err != nil {
			t.Errorf("kstreamtest: stopping the engine at the end of the test: %v", err)
		}
	})
	return eng
}

// Closer is a stream as Crash and Leave see it: any *kstream.Stream[T].
type Closer interface {
	Name() string
	Close() error
}

// Crash crashes a stream built by NewStream the way a process dies: its
// connections are cut first, so it neither commits what it processed nor
// leaves its group. The stream is then closed (its range ends quietly at the
// next record boundary, its goroutines end) and the broker still counts it
// as a member until its session times out, c.SessionTimeout() later; only
// then does the group rebalance and its partitions move to the other
// members, which start from the last commit, so records it processed since
// are delivered again.
//
// A stream that is ranging may see one error from the cut before Close ends
// its range (a failed group heartbeat surfaces as a *kstream.FetchError).
// After Crash the stream can be opened again, as a new member: the cut only
// applies to the connections it had.
//
// Crash fails t if s was not built by NewStream.
func Crash(t testing.TB, s Closer) {
	t.Helper()
	v, ok := links.Load(s)
	if !ok {
		t.Fatalf("kstreamtest: Crash: stream %q was not built by kstreamtest.NewStream, so its connections cannot be cut", s.Name())
	}
	l := v.(*link)
	l.sever()
	// The final commit and the LeaveGroup fail: that is the crash.
	_ = s.Close()
	l.heal()
}

// Leave removes a stream from its group gracefully: it closes the stream,
// which commits what it processed and leaves the group, so its partitions
// move to the other members at once. It fails t if Close returns an error.
func Leave(t testing.TB, s Closer) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Errorf("kstreamtest: Leave: closing stream %q: %v", s.Name(), err)
	}
}
