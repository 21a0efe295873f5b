package kstream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/kstream"
)

// Tests of item 5 of the core contract issue: a Func function's ctx was not
// canceled when the engine stopped the stream, only at the stop's
// deadline, so a function waiting on anything but its range held the stop
// for the whole deadline. (TestFuncCtxLiveDuringGracefulStop checks the
// other half: the record in hand finishes with a live ctx.)

func TestLifecycleFuncCtxEndsOnStop(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func(started chan<- struct{}) func(context.Context, *kstream.Stream[string]) error
	}{
		{"waiting on ctx, not ranging", func(started chan<- struct{}) func(context.Context, *kstream.Stream[string]) error {
			return func(ctx context.Context, _ *kstream.Stream[string]) error {
				close(started)
				<-ctx.Done()
				return nil
			}
		}},
		{"waiting on ctx after the range", func(started chan<- struct{}) func(context.Context, *kstream.Stream[string]) error {
			return func(ctx context.Context, s *kstream.Stream[string]) error {
				for _, err := range s.Records(ctx) {
					if err != nil {
						return err
					}
					select {
					case started <- struct{}{}:
					default:
					}
				}
				<-ctx.Done() // the range ended on the stop: so does ctx
				return nil
			}
		}},
		{"ranging on another goroutine", func(started chan<- struct{}) func(context.Context, *kstream.Stream[string]) error {
			return func(ctx context.Context, s *kstream.Stream[string]) error {
				ranged := make(chan error, 1)
				go func() {
					for _, err := range s.Records(ctx) {
						if err != nil {
							ranged <- err
							return
						}
						select {
						case started <- struct{}{}:
						default:
						}
					}
					ranged <- nil
				}()
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-tick.C: // periodic work of the function's own
					case <-ctx.Done():
						return <-ranged
					}
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1, 3)
			eng := e.engine()
			started := make(chan struct{}, 1)
			eng.Add(e.engineStream(e.topic, "fn").Func(tc.fn(started)))
			if err := eng.Start(e.ctx); err != nil {
				t.Fatal(err)
			}
			<-started
			stopCtx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
			defer cancel()
			start := time.Now()
			if err := eng.Stop(stopCtx); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("Stop took %v: the function learned of the stop only at its 5s deadline", took)
			}
			if h, _ := eng.StreamHealth("fn"); h.State != kstream.StreamStopped || h.LastErr != nil {
				t.Fatalf("health %+v, want stopped without error", h)
			}
		})
	}
}

// The ctx is canceled once the range ends on a stop, not before: a body
// that does I/O with ctx for the record in hand finishes it.
func TestLifecycleFuncCtxLiveUntilTheRangeEnds(t *testing.T) {
	e := newEnv(t, 1, 3)
	eng := e.engine()
	inBody := make(chan struct{})
	var afterRange error
	var stored seen
	eng.Add(e.engineStream(e.topic, "fn").Func(func(ctx context.Context, s *kstream.Stream[string]) error {
		for rec, err := range s.Records(ctx) {
			if err != nil {
				return err
			}
			if rec.Value == "v0" {
				close(inBody)
				// The stop is under way: wait until it has asked the
				// stream to stop, then check that ctx stays live while
				// the record is in hand.
				deadline := time.Now().Add(5 * time.Second)
				for {
					if h, _ := eng.StreamHealth("fn"); h.State == kstream.StreamStopping {
						break
					}
					if time.Now().After(deadline) {
						return errors.New("the stop did not begin within 5s")
					}
					time.Sleep(5 * time.Millisecond)
				}
				select {
				case <-ctx.Done():
					return errors.New("ctx canceled under the record in hand")
				case <-time.After(200 * time.Millisecond):
				}
			}
			stored.add(rec.Value)
		}
		afterRange = ctx.Err()
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	<-inBody
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	if h, _ := eng.StreamHealth("fn"); h.LastErr != nil {
		t.Fatal(h.LastErr)
	}
	if got := stored.get(); len(got) != 1 {
		t.Fatalf("stored %v, want only the record in hand", got)
	}
	if !errors.Is(afterRange, context.Canceled) {
		t.Fatalf("ctx after the range ended on the stop: %v, want canceled", afterRange)
	}
	e.wantCommitted("fn", map[int32]int64{0: 1})
}
