package kstream_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// flakyDecoder decodes strings, but while down it cannot decode "v5": its
// dependency (a registry, say) is unreachable.
type flakyDecoder struct {
	down     atomic.Bool
	failures atomic.Int32
}

func (d *flakyDecoder) Decode(b []byte) (string, error) {
	if d.down.Load() && string(b) == "v5" {
		d.failures.Add(1)
		return "", codec.Unavailable(errors.New("registry at 127.0.0.1:1: connection refused"))
	}
	return string(b), nil
}

// A decoder that is unavailable never makes a *DecodeError: the record is
// decoded again after a backoff, and nothing is lost or skipped.
func TestUnavailableDecoderIsRetriedNotYielded(t *testing.T) {
	for _, mode := range []string{"records", "batches", "key-concurrency"} {
		t.Run(mode, func(t *testing.T) {
			const n = 12
			e := newEnv(t, 1, n)
			dec := &flakyDecoder{}
			dec.down.Store(true)
			logs := &logRecorder{}
			opts := []kstream.Option{kstream.Brokers(e.c.Brokers()...), kstream.Topics(e.topic), kstream.Group("g"), kstream.Logger(slogTo(logs))}
			if mode == "key-concurrency" {
				opts = append(opts, kstream.KeyConcurrency(3))
			}
			s, err := kstream.NewStream[string](dec, opts...)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var got []string
			var errs []error
			add := func(v string, err error) int {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				} else {
					got = append(got, v)
				}
				return len(got)
			}
			// Bring the decoder back once it has failed a few times.
			go func() {
				for dec.failures.Load() < 3 {
					time.Sleep(10 * time.Millisecond)
				}
				dec.down.Store(false)
			}()
			switch mode {
			case "records":
				ctx, cancel := context.WithCancel(e.ctx)
				defer cancel()
				if err := s.Open(ctx); err != nil {
					t.Fatal(err)
				}
				for rec, err := range s.Records(ctx) {
					if add(rec.Value, err) == n {
						cancel() // the loop ends after this record, processed
					}
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			case "batches":
				ctx, cancel := context.WithCancel(e.ctx)
				defer cancel()
				if err := s.Open(ctx); err != nil {
					t.Fatal(err)
				}
				for batch, err := range s.Batches(ctx, 4, 50*time.Millisecond) {
					if err != nil {
						add("", err)
						continue
					}
					for _, rec := range batch {
						if add(rec.Value, nil) == n {
							cancel()
						}
					}
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			case "key-concurrency":
				eng := e.engine()
				s.Handle(func(_ context.Context, rec kstream.Record[string]) error {
					add(rec.Value, nil)
					return nil
				})
				if err := eng.Add(s); err != nil {
					t.Fatal(err)
				}
				if err := eng.Start(e.ctx); err != nil {
					t.Fatal(err)
				}
				eventually(t, 20*time.Second, "every record handled", func() bool {
					mu.Lock()
					defer mu.Unlock()
					return len(got) >= n
				})
				if err := eng.Stop(e.ctx); err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(errs) > 0 {
				t.Fatalf("yielded errors %v: an unavailable decoder must not make a decode error", errs)
			}
			want := make([]string, n)
			for i := range want {
				want[i] = fmt.Sprint("v", i)
			}
			sorted := slices.Clone(got)
			if mode == "key-concurrency" { // lanes finish out of order
				slices.SortFunc(sorted, func(a, b string) int { return cmp.Compare(len(a), len(b))*2 + strings.Compare(a, b) })
			}
			if !slices.Equal(sorted, want) {
				t.Fatalf("records = %v, want each of %v once", got, want)
			}
			if dec.failures.Load() < 3 {
				t.Fatalf("the decoder failed %d times, want at least 3 (retried)", dec.failures.Load())
			}
			if want := "decoder unavailable"; !strings.Contains(logs.String(), want) {
				t.Fatalf("no %q warning logged", want)
			}
			e.wantCommitted("g", map[int32]int64{0: n})
		})
	}
}

// While its decoder is unavailable an engine stream is unhealthy, and
// health says why; it is healthy again once the decoder answers.
func TestUnavailableDecoderShowsInHealth(t *testing.T) {
	const n = 8
	e := newEnv(t, 1, n)
	dec := &flakyDecoder{}
	dec.down.Store(true)
	s, err := kstream.NewStream[string](dec, kstream.Topics(e.topic), kstream.Group("h"), kstream.Name("h"))
	if err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int32
	s.Handle(func(context.Context, kstream.Record[string]) error {
		handled.Add(1)
		return nil
	})
	eng := e.engine()
	if err := eng.Add(s); err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "health to show the unavailable decoder", func() bool {
		sh, _ := eng.StreamHealth("h")
		return strings.Contains(sh.DecoderUnavailable, "connection refused") && !sh.Healthy && !eng.Health().Healthy
	})
	if got := handled.Load(); got != 5 {
		t.Fatalf("handled %d records while the decoder was down, want the 5 before v5", got)
	}
	dec.down.Store(false)
	eventually(t, 20*time.Second, "every record handled and health back", func() bool {
		sh, _ := eng.StreamHealth("h")
		return handled.Load() == n && sh.DecoderUnavailable == "" && sh.Healthy
	})
}
