package kstream_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

func headers(r *kgo.Record) map[string]string {
	out := map[string]string{}
	for _, h := range r.Headers {
		out[h.Key] = string(h.Value)
	}
	return out
}

// A handler error, a panic (behind Recover) and a record that fails to
// decode all go to the dead-letter topic with their source and error; the
// stream goes on and commits past them.
func TestDeadLetter(t *testing.T) {
	e := newEnv(t, 1, 0)
	if err := e.c.CreateTopic(e.ctx, "dlq", 1); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{`1`, `2`, `not json`, `4`, `5`} {
		if err := e.c.Produce(e.ctx, &kgo.Record{Topic: e.topic, Key: []byte("k" + v), Value: []byte(v), Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t-" + v)}}}); err != nil {
			t.Fatal(err)
		}
	}
	eng := e.engine()
	var handled atomic.Int32
	s, err := kstream.NewStream(codec.JSON[int](), kstream.Topics(e.topic), kstream.Group("dl"), kstream.Name("dl"))
	if err != nil {
		t.Fatal(err)
	}
	s.Handle(func(_ context.Context, rec kstream.Record[int]) error {
		switch rec.Value {
		case 2:
			return errBoom
		case 4:
			panic("four")
		}
		handled.Add(1)
		return nil
	}, kstream.DeadLetter[int](eng, "dlq"), kstream.Recover)
	eng.Add(s)
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "records 1 and 5 handled", func() bool { return handled.Load() == 2 })
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("dl", map[int32]int64{0: 5})

	want := []struct {
		offset  int64
		value   string
		errPart string
		class   string
	}{
		{1, "2", "boom", "*errors.errorString"},
		{2, "not json", "decode record", "*json.SyntaxError"},
		{3, "4", "panic: four", "*kstream.PanicError"},
	}
	for i, w := range want {
		r := readBack(t, e, "dlq", 0, int64(i))
		h := headers(r)
		if string(r.Value) != w.value || string(r.Key) != "k"+w.value || h["trace"] != "t-"+w.value {
			t.Fatalf("dead letter %d: key %q value %q headers %v", i, r.Key, r.Value, h)
		}
		if h[kstream.HeaderDLQTopic] != e.topic || h[kstream.HeaderDLQPartition] != "0" || h[kstream.HeaderDLQOffset] != strconv.FormatInt(w.offset, 10) {
			t.Fatalf("dead letter %d source headers %v", i, h)
		}
		if !strings.Contains(h[kstream.HeaderDLQErrorMessage], w.errPart) || h[kstream.HeaderDLQErrorClass] != w.class {
			t.Fatalf("dead letter %d error headers %q %q, want %q %q", i, h[kstream.HeaderDLQErrorMessage], h[kstream.HeaderDLQErrorClass], w.errPart, w.class)
		}
	}
}

// Unhandled, a record that fails to decode crashes a Handle stream, and is
// not committed.
func TestDecodeErrorWithoutDeadLetterIsACrash(t *testing.T) {
	e := newEnv(t, 1, 0)
	for _, v := range []string{`1`, `x`} {
		if err := e.c.Produce(e.ctx, &kgo.Record{Topic: e.topic, Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	eng := e.engine()
	s, err := kstream.NewStream(codec.JSON[int](), kstream.Topics(e.topic), kstream.Group("dec"), kstream.Name("dec"))
	if err != nil {
		t.Fatal(err)
	}
	eng.Add(s.Handle(func(context.Context, kstream.Record[int]) error { return nil }))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the crash", func() bool { return state(t, eng, "dec") == kstream.StreamCrashed })
	h, _ := eng.StreamHealth("dec")
	var de *kstream.DecodeError
	if !errors.As(h.LastErr, &de) || de.Offset != 1 {
		t.Fatalf("LastErr = %v, want the DecodeError at offset 1", h.LastErr)
	}
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("dec", map[int32]int64{0: 1})
}

func TestRetryMiddleware(t *testing.T) {
	e := newEnv(t, 1, 2)
	eng := e.engine()
	var calls []string
	var attemptsV0 atomic.Int32
	done := make(chan struct{})
	eng.Add(e.engineStream(e.topic, "retry").Handle(func(_ context.Context, rec kstream.Record[string]) error {
		calls = append(calls, rec.Value)
		if rec.Value == "v0" && attemptsV0.Add(1) < 3 {
			return errBoom
		}
		if rec.Value == "v1" {
			close(done)
		}
		return nil
	}, kstream.Retry[string](3, 10*time.Millisecond)))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(calls, []string{"v0", "v0", "v0", "v1"}) {
		t.Fatalf("calls %v, want v0 three times then v1", calls)
	}
	if h, _ := eng.StreamHealth("retry"); h.LastErr != nil {
		t.Fatalf("stream crashed: %v", h.LastErr)
	}
}

func TestRetryGivesUpAndKeepsTheError(t *testing.T) {
	calls := 0
	h := kstream.Retry[string](3, time.Millisecond)(func(context.Context, kstream.Record[string]) error {
		calls++
		return errBoom
	})
	err := h(context.Background(), kstream.Record[string]{})
	if !errors.Is(err, errBoom) || calls != 3 {
		t.Fatalf("err %v after %d calls, want errBoom after 3", err, calls)
	}
	calls = 0
	de := &kstream.DecodeError{Err: errBoom}
	h = kstream.Retry[string](3, time.Millisecond)(func(context.Context, kstream.Record[string]) error {
		calls++
		return de
	})
	if err := h(context.Background(), kstream.Record[string]{}); !errors.Is(err, de) || calls != 1 {
		t.Fatalf("decode error retried: %d calls", calls)
	}
}
