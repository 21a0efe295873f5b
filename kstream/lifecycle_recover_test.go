package kstream_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/kstream"
)

// Item 15 of the core contract issue: Recover[T]() could not infer T, so
// s.Handle(h, kstream.Recover[Order]()) had to name the type. Recover is a
// Middleware itself now, given as it is, and a middleware of the user's
// own, a plain func(next Handler[T]) Handler[T], is given the same way.
func TestLifecycleRecoverIsGivenAsItIs(t *testing.T) {
	e := newEnv(t, 1, 3)
	eng := e.engine()
	var panics atomic.Int32
	// A middleware of the user's own: it counts panics and skips their
	// records.
	skipPanics := func(next kstream.Handler[string]) kstream.Handler[string] {
		return func(ctx context.Context, rec kstream.Record[string]) error {
			err := next(ctx, rec)
			var pe *kstream.PanicError
			if errors.As(err, &pe) {
				panics.Add(1)
				return nil
			}
			return err
		}
	}
	var handled seen
	s := e.engineStream(e.topic, "rec").Handle(func(_ context.Context, rec kstream.Record[string]) error {
		if rec.Value == "v1" {
			panic("v1")
		}
		handled.add(rec.Value)
		return nil
	}, skipPanics, kstream.Recover)
	if err := eng.Add(s); err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "v0 and v2 handled", func() bool { return handled.count() == 2 })
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	if h, _ := eng.StreamHealth("rec"); h.LastErr != nil || panics.Load() != 1 {
		t.Fatalf("health %+v, %d panics recovered; want no crash and one", h, panics.Load())
	}
	e.wantCommitted("rec", map[int32]int64{0: 3})
}
