package kstream_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// An engine of bounded streams, one of each kind (Handle, Handle with
// PartitionConcurrency and KeyConcurrency, HandleBatches, Func, with and
// without a group): each handles every record below its end, finishes
// (StreamFinished, healthy), and Run returns nil by itself.
func TestStopAtEndEngineRunReturns(t *testing.T) {
	const parts, per = 3, 20
	e := newEnv(t, parts, parts*per)
	eng := e.engine()
	kinds := []string{"handle", "partition-concurrency", "key-concurrency", "batches", "func", "no-group"}
	handled := map[string]*ledger{}
	for _, kind := range kinds {
		l := &ledger{seen: map[[2]int64]int{}}
		handled[kind] = l
		opts := []kstream.Option{kstream.StopAtEnd()}
		switch kind {
		case "partition-concurrency":
			opts = append(opts, kstream.PartitionConcurrency(2))
		case "key-concurrency":
			opts = append(opts, kstream.KeyConcurrency(4))
		}
		s := e.engineStream(e.topic, "end-engine-"+kind, opts...)
		if kind == "no-group" {
			var err error
			s, err = kstream.NewStream(codec.String(), kstream.Topics(e.topic), kstream.Name("end-engine-no-group"), kstream.StopAtEnd())
			if err != nil {
				t.Fatal(err)
			}
		}
		handle := func(_ context.Context, rec kstream.Record[string]) error {
			l.add(rec.Partition, rec.Offset)
			return nil
		}
		switch kind {
		case "batches":
			s.HandleBatches(7, 20*time.Millisecond, func(_ context.Context, recs []kstream.Record[string]) error {
				for _, r := range recs {
					l.add(r.Partition, r.Offset)
				}
				return nil
			})
		case "func":
			s.Func(func(ctx context.Context, s *kstream.Stream[string]) error {
				for rec, err := range s.Records(ctx) {
					if err != nil {
						return err
					}
					l.add(rec.Partition, rec.Offset)
				}
				return nil
			})
		default:
			s.Handle(handle)
		}
		if err := eng.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	if err := eng.Run(ctx); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run returned because its context ended, not by itself")
	}
	for _, kind := range kinds {
		l := handled[kind]
		l.mu.Lock()
		n, dups := len(l.seen), len(l.dups)
		l.mu.Unlock()
		if dups > 0 {
			t.Errorf("%s: %d records handled twice", kind, dups)
		}
		if n != parts*per {
			t.Errorf("%s: %d records handled, want %d (the end at assignment)", kind, n, parts*per)
		}
		sh, ok := eng.StreamHealth("end-engine-" + kind)
		if !ok || sh.State != kstream.StreamFinished || sh.State.String() != "finished" {
			t.Errorf("%s: health %+v, want StreamFinished", kind, sh)
		}
	}
}

// A finished stream keeps a running engine healthy while another stream
// still runs.
func TestStopAtEndFinishedIsHealthy(t *testing.T) {
	e := newEnv(t, 1, 5)
	eng := e.engine()
	bounded := e.engineStream(e.topic, "end-healthy-bounded", kstream.StopAtEnd())
	bounded.Handle(func(context.Context, kstream.Record[string]) error { return nil })
	endless := e.engineStream(e.topic, "end-healthy-endless")
	endless.Handle(func(context.Context, kstream.Record[string]) error { return nil })
	for _, s := range []*kstream.Stream[string]{bounded, endless} {
		if err := eng.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the bounded stream to finish", func() bool {
		sh, _ := eng.StreamHealth("end-healthy-bounded")
		return sh.State == kstream.StreamFinished
	})
	rec := httptest.NewRecorder()
	eng.HealthHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("health status %d with a finished stream, want 200; body %s", rec.Code, rec.Body)
	}
	if sh, _ := eng.StreamHealth("end-healthy-endless"); sh.State != kstream.StreamRunning {
		t.Fatalf("the endless stream is %v, want running", sh.State)
	}
}
