package kstream_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/kstream"
)

// A context that ends while its records wait behind a stall fails exactly
// those records, at once and in the order they were sent, whether it had
// few of them (no more than a watch keeps itself) or more (found in the
// engine's registry among other contexts' records); records of other
// contexts waiting behind the same stall are left to the broker, and are
// acknowledged once it answers. (The ended context's records are the last
// ones sent: franz-go fails the records of a batch by the context of its
// first record.)
func TestSendAsyncContextEndFailsOnlyItsRecords(t *testing.T) {
	for _, ended := range []int{3, 6} {
		t.Run(strconv.Itoa(ended), func(t *testing.T) { testContextEndFailsOnlyItsRecords(t, ended) })
	}
}

func testContextEndFailsOnlyItsRecords(t *testing.T, ended int) {
	e := newEnv(t, 1, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	stall, held := stallBehindBackground(t, e, eng)
	var got outcomes
	sizes := []int{3, 5, ended}
	var cancels []context.CancelFunc
	for c, n := range sizes {
		ctx, cancel := context.WithCancel(e.ctx)
		cancels = append(cancels, cancel)
		for j := range n {
			i := c*100 + j
			eng.SendAsync(ctx, e.topic, []byte("x"), got.done(i), kstream.WithKey([]byte("k")))
		}
	}
	cancels[2]()
	eventually(t, deadlineBound, "the records of the ended context to fail", func() bool { return len(got.get()) == ended })
	for j, o := range got.get() {
		if o.i != 200+j || !errors.Is(o.err, context.Canceled) {
			t.Fatalf("done call %d: send %d with %v, want send %d with context.Canceled", j, o.i, o.err, 200+j)
		}
	}
	stall.Heal()
	if o := waitOutcome(t, held, 20*time.Second, "the held record"); o.err != nil {
		t.Fatal(o.err)
	}
	if err := eng.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	l := got.get()
	if len(l) != 3+5+ended {
		t.Fatalf("done called %d times for %d sends", len(l), 3+5+ended)
	}
	for _, o := range l[ended:] {
		if o.err != nil || o.i >= 200 {
			t.Fatalf("send %d: %v, want it acknowledged", o.i, o.err)
		}
	}
	cancels[0]()
	cancels[1]()
	eventually(t, 5*time.Second, "the context watches to be gone", func() bool { return eng.ContextWatches() == 0 })
}

// Goroutines sending under one context while the watches are swept every
// millisecond, so that watches are retired and made again under the sends:
// every record is acknowledged once. Then, with the broker stalled behind
// a record whose context cannot end, the watch of records in flight is
// kept however many sweeps pass, and the context's end fails every one of
// them.
func TestSendAsyncWatchesSweptUnderSends(t *testing.T) {
	t.Cleanup(kstream.SetWatchIdle(time.Millisecond)) // restored after the engine stops
	const senders, each = 4, 1500
	e := newEnv(t, 3, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var got outcomes
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for j := range each {
				eng.SendAsync(ctx, e.topic, []byte(strconv.Itoa(j)), got.done(g*each+j))
				if j%100 == 99 {
					// Long enough for sweeps to find no record
					// of the watch in flight, now and then.
					if err := eng.Flush(e.ctx); err != nil {
						t.Error(err)
						return
					}
					time.Sleep(3 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	if err := eng.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	checkOnce(t, got.get(), senders*each, func(o outcome) bool { return o.err == nil })

	stall, held := stallBehindBackground(t, e, eng) // franz-go cannot fail the records behind it
	ended, end := context.WithCancel(e.ctx)
	var failed outcomes
	for g := range senders {
		wg.Go(func() {
			for j := range 5 {
				eng.SendAsync(ended, e.topic, []byte("stalled"), failed.done(g*5+j))
			}
		})
	}
	wg.Wait()
	time.Sleep(20 * time.Millisecond) // about 20 sweeps, with the records in flight
	if l := failed.get(); len(l) != 0 {
		t.Fatalf("%d records failed before their context ended: %+v", len(l), l[0])
	}
	end()
	eventually(t, deadlineBound, "every record of the ended context to fail", func() bool { return len(failed.get()) == senders*5 })
	stall.Heal()
	if o := waitOutcome(t, held, 20*time.Second, "the held record"); o.err != nil {
		t.Fatal(o.err)
	}
	if err := eng.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	checkOnce(t, failed.get(), senders*5, func(o outcome) bool { return errors.Is(o.err, context.Canceled) })
	cancel()
	eventually(t, 5*time.Second, "the context watches to be gone", func() bool { return eng.ContextWatches() == 0 })
}

// checkOnce fails t unless list has one outcome for each of sends 0..n-1,
// each one ok.
func checkOnce(t *testing.T, list []outcome, n int, ok func(outcome) bool) {
	t.Helper()
	if len(list) != n {
		t.Fatalf("%d done calls for %d sends", len(list), n)
	}
	seen := make([]bool, n)
	for _, o := range list {
		if seen[o.i] {
			t.Fatalf("done of send %d called twice", o.i)
		}
		seen[o.i] = true
		if !ok(o) {
			t.Fatalf("send %d: %+v", o.i, o)
		}
	}
}

// Stop stops the watches of the contexts SendAsync records were sent
// under, whose contexts have not ended: none is left when Stop returns.
func TestStopStopsContextWatches(t *testing.T) {
	t.Cleanup(kstream.SetWatchIdle(time.Hour)) // no sweep stops them first
	e := newEnv(t, 1, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var got outcomes
	for i := range 10 {
		eng.SendAsync(ctx, e.topic, []byte("x"), got.done(i))
	}
	if err := eng.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	if n := eng.ContextWatches(); n != 1 {
		t.Fatalf("%d context watches before Stop, want 1", n)
	}
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	if n := eng.ContextWatches(); n != 0 {
		t.Fatalf("%d context watches after Stop", n)
	}
	checkOnce(t, got.get(), 10, func(o outcome) bool { return o.err == nil })
}

// A watch retired by the sweeps while its records wait behind a stall,
// and the watch made after it for the same context: the context's end
// fails the records of both, one at a time and in the order they were
// sent.
func TestSendAsyncContextEndAcrossRetiredWatch(t *testing.T) {
	t.Cleanup(kstream.SetWatchIdle(time.Hour)) // swept only by SweepWatchesNow
	e := newEnv(t, 1, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	if _, err := eng.Send(e.ctx, e.topic, []byte("before")); err != nil {
		t.Fatal(err)
	}
	eng.SendAsync(ctx, e.topic, []byte("makes the watch"), nil)
	if err := eng.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	if !eng.SweepWatchesNow() { // finds the watch idle
		t.Fatal("no sweep scheduled")
	}
	stall, held := stallBehindBackground(t, e, eng)
	var got outcomes
	var running atomic.Int32
	var overlapped atomic.Bool
	slow := func(i int) func(kstream.RecordMetadata, error) {
		d := got.done(i)
		return func(md kstream.RecordMetadata, err error) {
			if running.Add(1) > 1 {
				overlapped.Store(true)
			}
			defer running.Add(-1)
			time.Sleep(5 * time.Millisecond)
			d(md, err)
		}
	}
	for i := range 3 {
		eng.SendAsync(ctx, e.topic, []byte("x"), slow(i))
	}
	if !eng.SweepWatchesNow() { // retires the watch, its records in flight
		t.Fatal("no sweep scheduled")
	}
	for i := 3; i < 6; i++ {
		eng.SendAsync(ctx, e.topic, []byte("x"), slow(i)) // a new watch
	}
	cancel()
	eventually(t, deadlineBound, "the six records to fail", func() bool { return len(got.get()) == 6 })
	for j, o := range got.get() {
		if o.i != j || !errors.Is(o.err, context.Canceled) {
			t.Fatalf("done call %d: send %d with %v, want send %d with context.Canceled", j, o.i, o.err, j)
		}
	}
	if overlapped.Load() {
		t.Fatal("done functions of the context's records ran at the same time")
	}
	stall.Heal()
	if o := waitOutcome(t, held, 20*time.Second, "the held record"); o.err != nil {
		t.Fatal(o.err)
	}
}

// A producer that rewrites the records' topic (kgo.DefaultProduceTopicAlways)
// while their context's watch fails them: the watch reads nothing franz-go
// writes (the race detector checks it), and the errors name the topic the
// records were sent to.
func TestSendAsyncExpiredUnderProducerThatRewritesTopic(t *testing.T) {
	e := newEnv(t, 1, 0)
	eng := e.engine(kstream.ClientOptions(kgo.DefaultProduceTopic(e.topic), kgo.DefaultProduceTopicAlways()))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(e.ctx)
	cancel()
	var got outcomes
	const n = 50
	for i := range n {
		eng.SendAsync(ended, "named", []byte("x"), got.done(i))
	}
	if err := eng.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	checkOnce(t, got.get(), n, func(o outcome) bool {
		return errors.Is(o.err, context.Canceled) && strings.Contains(o.err.Error(), `"named"`)
	})
}

// An OnStartup hook that sends, then fails: Start closes the producer it
// made, and before Start returns, the records the hook sent have had their
// done called and their context's watch is gone.
func TestFailedStartFinishesTheHooksSends(t *testing.T) {
	t.Cleanup(kstream.SetWatchIdle(time.Hour)) // no sweep stops the watch first
	e := newEnv(t, 1, 0)
	eng := e.engine()
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var got outcomes
	errHook := errors.New("hook failed")
	eng.OnStartup(func(context.Context) error {
		for i := range 5 {
			eng.SendAsync(ctx, e.topic, []byte("x"), got.done(i))
		}
		return errHook
	})
	if err := eng.Start(e.ctx); !errors.Is(err, errHook) {
		t.Fatalf("Start: %v, want the hook's error", err)
	}
	if l := got.get(); len(l) != 5 {
		t.Fatalf("%d done functions called when Start returned, want 5", len(l))
	}
	if n := eng.ContextWatches(); n != 0 {
		t.Fatalf("%d context watches after the failed Start", n)
	}
}
