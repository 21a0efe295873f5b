package kstream_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// values returns the values of recs.
func values[T any](recs []kstream.Record[T]) []T {
	out := make([]T, len(recs))
	for i, r := range recs {
		out[i] = r.Value
	}
	return out
}

// produceValues writes vals, in order, to topic's partition 0.
func produceValues(t *testing.T, e *env, topic string, vals ...string) {
	t.Helper()
	for _, v := range vals {
		if err := e.c.Produce(e.ctx, &kgo.Record{Topic: topic, Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
}

// In a HandleBatches stream, a record that fails to decode goes through the
// middleware: DeadLetter dead-letters it alone and the stream goes on with
// the records after it, committing past it.
func TestHandleBatchesDeadLettersUndecodable(t *testing.T) {
	e := newEnv(t, 1, 0)
	if err := e.c.CreateTopic(e.ctx, "dlq", 1); err != nil {
		t.Fatal(err)
	}
	produceValues(t, e, e.topic, `1`, `2`, `not json`, `4`, `5`)
	eng := e.engine()
	s, err := kstream.NewStream(codec.JSON[int](), kstream.Topics(e.topic), kstream.Group("bdl"), kstream.Name("bdl"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var handled []int
	eng.Add(s.HandleBatches(10, time.Second, func(_ context.Context, recs []kstream.Record[int]) error {
		mu.Lock()
		defer mu.Unlock()
		handled = append(handled, values(recs)...)
		return nil
	}, kstream.DeadLetter[int](eng, "dlq"), kstream.Recover))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "records 1, 2, 4 and 5 handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == 4
	})
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	if h, _ := eng.StreamHealth("bdl"); h.LastErr != nil || h.Restarts != 0 {
		t.Fatalf("stream crashed: %v", h.LastErr)
	}
	if !slices.Equal(handled, []int{1, 2, 4, 5}) {
		t.Fatalf("handled %v", handled)
	}
	e.wantCommitted("bdl", map[int32]int64{0: 5})
	r := readBack(t, e, "dlq", 0, 0)
	h := headers(r)
	if string(r.Value) != "not json" || h[kstream.HeaderDLQOffset] != "2" || !strings.Contains(h[kstream.HeaderDLQErrorMessage], "decode") {
		t.Fatalf("dead letter %q headers %v", r.Value, h)
	}
}

// Without middleware that handles it, a record that fails to decode in a
// HandleBatches stream is still a crash, and is not committed.
func TestHandleBatchesUndecodableWithoutDeadLetterIsACrash(t *testing.T) {
	e := newEnv(t, 1, 0)
	produceValues(t, e, e.topic, `1`, `x`)
	eng := e.engine()
	s, err := kstream.NewStream(codec.JSON[int](), kstream.Topics(e.topic), kstream.Group("bdc"), kstream.Name("bdc"))
	if err != nil {
		t.Fatal(err)
	}
	eng.Add(s.HandleBatches(10, 100*time.Millisecond, func(context.Context, []kstream.Record[int]) error { return nil }, kstream.Recover))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the crash", func() bool { return state(t, eng, "bdc") == kstream.StreamCrashed })
	h, _ := eng.StreamHealth("bdc")
	var de *kstream.DecodeError
	if !errors.As(h.LastErr, &de) || de.Offset != 1 {
		t.Fatalf("LastErr = %v, want the DecodeError at offset 1", h.LastErr)
	}
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("bdc", map[int32]int64{0: 1})
}

// Recover turns a batch handler's panic into an error, which Retry retries
// with the same batch; a middleware of the user's sees the whole batch
// through Record.Batch.
func TestHandleBatchesRetryRecover(t *testing.T) {
	e := newEnv(t, 1, 4)
	eng := e.engine()
	var mu sync.Mutex
	var calls [][]string
	var seenByMW [][]string
	spy := func(next kstream.Handler[string]) kstream.Handler[string] {
		return func(ctx context.Context, rec kstream.Record[string]) error {
			mu.Lock()
			seenByMW = append(seenByMW, values(rec.Batch()))
			mu.Unlock()
			return next(ctx, rec)
		}
	}
	attempt := 0
	eng.Add(e.engineStream(e.topic, "brr").HandleBatches(2, 5*time.Second, func(_ context.Context, recs []kstream.Record[string]) error {
		mu.Lock()
		calls = append(calls, values(recs))
		mu.Unlock()
		if recs[0].Value == "v0" {
			attempt++
			switch attempt {
			case 1:
				panic("first attempt")
			case 2:
				return errBoom
			}
		}
		return nil
	}, spy, kstream.Retry[string](3, 10*time.Millisecond), kstream.Recover))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "both batches handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(calls) == 4
	})
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	if h, _ := eng.StreamHealth("brr"); h.LastErr != nil {
		t.Fatalf("stream crashed: %v", h.LastErr)
	}
	want := [][]string{{"v0", "v1"}, {"v0", "v1"}, {"v0", "v1"}, {"v2", "v3"}}
	if !slices.EqualFunc(calls, want, slices.Equal[[]string]) {
		t.Fatalf("batch handler calls %v, want %v", calls, want)
	}
	if wantMW := [][]string{{"v0", "v1"}, {"v2", "v3"}}; !slices.EqualFunc(seenByMW, wantMW, slices.Equal[[]string]) {
		t.Fatalf("middleware saw %v, want %v", seenByMW, wantMW)
	}
	e.wantCommitted("brr", map[int32]int64{0: 4})
}

// DeadLetter dead-letters every record of a batch the handler failed, and
// the stream goes on.
func TestHandleBatchesDeadLetterWholeBatch(t *testing.T) {
	e := newEnv(t, 1, 4)
	if err := e.c.CreateTopic(e.ctx, "dlq", 1); err != nil {
		t.Fatal(err)
	}
	eng := e.engine()
	var handled atomic.Int32
	eng.Add(e.engineStream(e.topic, "bdw").HandleBatches(2, 5*time.Second, func(_ context.Context, recs []kstream.Record[string]) error {
		if recs[0].Value == "v0" {
			return errBoom
		}
		handled.Add(int32(len(recs)))
		return nil
	}, kstream.DeadLetter[string](eng, "dlq")))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the second batch handled", func() bool { return handled.Load() == 2 })
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("bdw", map[int32]int64{0: 4})
	for i := range 2 {
		r := readBack(t, e, "dlq", 0, int64(i))
		h := headers(r)
		if string(r.Value) != "v"+strconv.Itoa(i) || h[kstream.HeaderDLQOffset] != strconv.Itoa(i) || h[kstream.HeaderDLQErrorMessage] != "boom" {
			t.Fatalf("dead letter %d: %q headers %v", i, r.Value, h)
		}
	}
}

// Timeout gives each handler call a deadline, in Handle and in
// HandleBatches; a handler that waits on its ctx fails with
// context.DeadlineExceeded, which DeadLetter before Timeout dead-letters.
func TestTimeoutMiddleware(t *testing.T) {
	e := newEnv(t, 1, 2)
	if err := e.c.CreateTopic(e.ctx, "dlq", 1); err != nil {
		t.Fatal(err)
	}
	eng := e.engine()
	const d = 200 * time.Millisecond
	var mu sync.Mutex
	var left []time.Duration
	var batchLeft time.Duration
	var batchHasDeadline bool
	var ctxs []context.Context
	eng.Add(e.engineStream(e.topic, "to").Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		dl, ok := ctx.Deadline()
		mu.Lock()
		if ok {
			left = append(left, time.Until(dl))
		}
		ctxs = append(ctxs, ctx)
		mu.Unlock()
		if rec.Value == "v0" {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}, kstream.DeadLetter[string](eng, "dlq"), kstream.Timeout[string](d)))
	done := make(chan struct{})
	eng.Add(e.engineStream(e.topic, "tob").HandleBatches(2, time.Second, func(ctx context.Context, _ []kstream.Record[string]) error {
		dl, ok := ctx.Deadline()
		batchLeft, batchHasDeadline = time.Until(dl), ok
		close(done)
		return nil
	}, kstream.Timeout[string](d)))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	<-done
	eventually(t, 20*time.Second, "both records handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(left) == 2
	})
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	// Each call's ctx was canceled when it returned.
	if ctxs[1].Err() != context.Canceled {
		t.Fatalf("the ctx of a call that returned: %v, want context.Canceled", ctxs[1].Err())
	}
	if !batchHasDeadline {
		t.Fatal("the batch handler's ctx has no deadline")
	}
	for _, l := range append(left, batchLeft) {
		if l > d {
			t.Fatalf("deadlines %v and %v away at the call's start, want at most %v", left, batchLeft, d)
		}
	}
	r := readBack(t, e, "dlq", 0, 0)
	if h := headers(r); string(r.Value) != "v0" || !strings.Contains(h[kstream.HeaderDLQErrorMessage], "deadline exceeded") {
		t.Fatalf("dead letter %q headers %v", r.Value, h)
	}
	e.wantCommitted("to", map[int32]int64{0: 2})
}

// After Retry, each attempt has a deadline of its own; before it, one
// deadline bounds all the attempts. (Middleware are functions: called here
// directly.)
func TestTimeoutAndRetryOrder(t *testing.T) {
	const d = 50 * time.Millisecond
	slow := func(calls *int) kstream.Handler[string] {
		return func(ctx context.Context, _ kstream.Record[string]) error {
			*calls++
			<-ctx.Done()
			return ctx.Err()
		}
	}
	var each int
	err := kstream.Retry[string](3, time.Millisecond)(kstream.Timeout[string](d)(slow(&each)))(context.Background(), kstream.Record[string]{})
	if each != 3 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Timeout after Retry: %d calls, %v; want 3 each timed out", each, err)
	}
	var all int
	err = kstream.Timeout[string](d)(kstream.Retry[string](3, time.Millisecond)(slow(&all)))(context.Background(), kstream.Record[string]{})
	if all != 1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Timeout before Retry: %d calls, %v; want 1, the deadline ending the retries", all, err)
	}
}

func TestTimeoutRejectsNonPositive(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		func() {
			defer func() {
				if p := recover(); p == nil || !strings.Contains(p.(string), "Timeout") {
					t.Errorf("Timeout(%v) panicked with %v, want a message naming Timeout", d, p)
				}
			}()
			kstream.Timeout[string](d)
		}()
	}
}
