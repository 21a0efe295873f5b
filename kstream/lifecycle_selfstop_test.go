package kstream_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/kstream"
)

// Tests of item 3 of the core contract issue: Engine.Stop and Remove called
// from inside a Handle function waited for that very handler until their
// deadline (4s with a 3s deadline), then reported that the stream "did not
// stop". They must return without waiting on themselves, and the stream
// must still stop once the handler returns, committing what it processed.

// selfStopCase is how a handler calls Stop or Remove.
type selfStopCase struct {
	name string
	opts []kstream.Option
	// ctx makes the context given to Stop or Remove from the handler's.
	ctx func(handlerCtx context.Context) (context.Context, context.CancelFunc)
}

var selfStopCases = []selfStopCase{
	{"serial, handler ctx", nil, func(hc context.Context) (context.Context, context.CancelFunc) {
		return context.WithTimeout(hc, 3*time.Second)
	}},
	{"serial, unrelated ctx", nil, func(context.Context) (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 3*time.Second)
	}},
	{"PartitionConcurrency, handler ctx", []kstream.Option{kstream.PartitionConcurrency(2)}, func(hc context.Context) (context.Context, context.CancelFunc) {
		return context.WithTimeout(hc, 3*time.Second)
	}},
	{"KeyConcurrency, handler ctx", []kstream.Option{kstream.KeyConcurrency(2)}, func(hc context.Context) (context.Context, context.CancelFunc) {
		return context.WithTimeout(hc, 3*time.Second)
	}},
}

// selfStop is what the handler saw of its call.
type selfStop struct {
	err  error
	took time.Duration
}

func TestLifecycleStopFromHandlerDoesNotWaitOnItself(t *testing.T) {
	for _, tc := range selfStopCases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1, 5)
			eng := e.engine()
			var handled seen
			called := make(chan selfStop, 1)
			s := e.engineStream(e.topic, "self", tc.opts...)
			eng.Add(s.Handle(func(hctx context.Context, rec kstream.Record[string]) error {
				if rec.Value == "v1" {
					ctx, cancel := tc.ctx(hctx)
					defer cancel()
					start := time.Now()
					err := eng.Stop(ctx)
					called <- selfStop{err, time.Since(start)}
				}
				handled.add(rec.Value)
				return nil
			}))
			if err := eng.Start(e.ctx); err != nil {
				t.Fatal(err)
			}
			var got selfStop
			select {
			case got = <-called:
			case <-e.ctx.Done():
				t.Fatal("the handler never called Stop")
			}
			if got.err != nil || got.took > time.Second {
				t.Fatalf("Stop from the handler took %v and returned %v, want at once and nil", got.took, got.err)
			}
			// The stream stops once the handler has returned, and commits
			// what it handled, the record that called Stop included.
			eventually(t, 10*time.Second, "the stream to stop", func() bool { return state(t, eng, "self") == kstream.StreamStopped })
			h, _ := eng.StreamHealth("self")
			if h.LastErr != nil {
				t.Fatalf("health %+v", h)
			}
			n := len(handled.get())
			if n < 2 {
				t.Fatalf("handled %v, want v0 and v1 at least", handled.get())
			}
			e.wantCommitted("self", map[int32]int64{0: int64(n)})
		})
	}
}

func TestLifecycleRemoveFromHandlerDoesNotWaitOnItself(t *testing.T) {
	for _, tc := range selfStopCases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1, 5)
			eng := e.engine()
			var handled seen
			called := make(chan selfStop, 1)
			s := e.engineStream(e.topic, "self", tc.opts...)
			returned := make(chan struct{})
			eng.Add(s.Handle(func(hctx context.Context, rec kstream.Record[string]) error {
				if rec.Value == "v1" {
					defer close(returned)
					ctx, cancel := tc.ctx(hctx)
					defer cancel()
					start := time.Now()
					err := eng.Remove(ctx, s)
					called <- selfStop{err, time.Since(start)}
					// Not before the function has returned.
					if err := eng.Add(s); err == nil {
						t.Error("Add of the stream from its own handler, after Remove, succeeded")
					}
				}
				handled.add(rec.Value)
				return nil
			}))
			if err := eng.Start(e.ctx); err != nil {
				t.Fatal(err)
			}
			var got selfStop
			select {
			case got = <-called:
			case <-e.ctx.Done():
				t.Fatal("the handler never called Remove")
			}
			if got.err != nil || got.took > time.Second {
				t.Fatalf("Remove from the handler took %v and returned %v, want at once and nil", got.took, got.err)
			}
			if _, ok := eng.StreamHealth("self"); ok {
				t.Fatal("the removed stream is still in Health")
			}
			<-returned
			// Once the function has returned, the stream commits what it
			// handled, and can be added again.
			eventually(t, 10*time.Second, "the records handled to be committed", func() bool {
				n := len(handled.get())
				return n >= 2 && e.committed("self")[0] == int64(n)
			})
			eventually(t, 10*time.Second, "the removed stream to be added again", func() bool { return eng.Add(s) == nil })
			eventually(t, 10*time.Second, "the stream to run again", func() bool { return state(t, eng, "self") == kstream.StreamRunning })
			if err := eng.Remove(e.ctx, s); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Stop called from a handler while another Stop is at work returns at
// once: the Stop at work waits for the handler.
func TestLifecycleStopFromHandlerDuringAStop(t *testing.T) {
	e := newEnv(t, 1, 3)
	eng := e.engine()
	inHandler := make(chan struct{})
	called := make(chan selfStop, 1)
	var handled atomic.Int64
	eng.Add(e.engineStream(e.topic, "self").Handle(func(hctx context.Context, rec kstream.Record[string]) error {
		handled.Add(1)
		if rec.Value != "v0" {
			return nil
		}
		close(inHandler)
		// Wait for the outer Stop to begin.
		for deadline := time.Now().Add(10 * time.Second); eng.Health().Running && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(hctx, 5*time.Second)
		defer cancel()
		start := time.Now()
		err := eng.Stop(ctx)
		called <- selfStop{err, time.Since(start)}
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	<-inHandler
	stopCtx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := eng.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	got := <-called
	if got.err != nil || got.took > time.Second || took > 3*time.Second {
		t.Fatalf("Stop from the handler during a Stop took %v and returned %v; the outer Stop took %v: want both at once, nil", got.took, got.err, took)
	}
	// What the stream handled is committed, and nothing else: v0, and
	// the records after it that the loop may have taken before it saw
	// the stop (the engine stops a loop's fetching from a goroutine of
	// context.AfterFunc, so the next boundary that sees it can come a
	// record or two later).
	e.wantCommitted("self", map[int32]int64{0: handled.Load()})
}
