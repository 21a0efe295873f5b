package kstream_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/kstream"
)

// The iterator matrix for Emit: a range that emits for every record is left
// with the output of the record in hand outstanding, by break, return,
// panic, Close from another goroutine, or its ctx canceled; a second range
// (or session) handles the rest. In the default mode every input ends up
// with an output and the commit covers every record; under ExactlyOnce a
// read_committed reader finds every output exactly once.
func TestEmitIteratorMatrix(t *testing.T) {
	for _, mode := range []string{"default", "exactly-once"} {
		for _, exit := range []string{"break", "return", "panic", "close", "cancel"} {
			t.Run(mode+"/"+exit, func(t *testing.T) {
				const n, at = 10, 4
				e := newEnv(t, 1, n)
				out := e.topic + "-out"
				if err := e.c.CreateTopic(e.ctx, out, 1); err != nil {
					t.Fatal(err)
				}
				opts := []kstream.Option{kstream.Group("g")}
				if mode == "exactly-once" {
					opts = append(opts, kstream.ExactlyOnce())
				}
				s := e.stream(opts...)
				if err := s.Open(e.ctx); err != nil {
					t.Fatal(err)
				}
				emit := func(ctx context.Context, rec kstream.Record[string]) {
					if err := s.Emit(ctx, out, []byte("out-"+rec.Value)); err != nil {
						t.Errorf("Emit: %v", err)
					}
				}
				lctx, cancel := context.WithCancel(e.ctx)
				firstRange := func() (panicked any) {
					defer func() { panicked = recover() }()
					for rec, err := range s.Records(lctx) {
						if err != nil {
							t.Errorf("first range: %v", err)
							return nil
						}
						emit(lctx, rec)
						if rec.Offset < at {
							continue
						}
						switch exit {
						case "break":
						case "return":
							return nil
						case "panic":
							panic("boom")
						case "close":
							closed := make(chan error, 1)
							go func() { closed <- s.Close() }()
							if err := <-closed; err != nil {
								t.Errorf("Close: %v", err)
							}
							continue // the range ends at the next boundary
						case "cancel":
							cancel()
							continue
						}
						break
					}
					return nil
				}
				if p := firstRange(); (p != nil) != (exit == "panic") {
					t.Fatalf("panic %v", p)
				}
				cancel()
				if exit == "close" || exit == "cancel" {
					// A new session (after Close), or the same one after a
					// normal end, handles the rest.
					if exit == "cancel" {
						if err := s.Close(); err != nil {
							t.Fatal(err)
						}
					}
					if err := s.Open(e.ctx); err != nil {
						t.Fatal(err)
					}
				}
				// The second range: until every record was handled.
				ctx2, cancel2 := context.WithTimeout(e.ctx, 20*time.Second)
				defer cancel2()
				first := int64(-1)
				for rec, err := range s.Records(ctx2) {
					if err != nil {
						t.Fatal(err)
					}
					if first < 0 {
						first = rec.Offset
					}
					emit(ctx2, rec)
					if rec.Offset == n-1 {
						cancel2()
					}
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				last := int64(at) // the record broken on, unfinished
				if exit == "cancel" {
					last = at + 1 // a normal end: the body finished record at
				}
				if first < 0 || first > last {
					t.Fatalf("second range began at %d, want %d or before", first, last)
				}
				if exit != "close" && mode == "default" && first != last {
					t.Fatalf("second range began at %d, want the record broken on, %d", first, at)
				}
				e.wantCommitted("g", map[int32]int64{0: n})
				got := e.outputs(out, true)
				wantEach(t, got, n, mode == "exactly-once")
				if mode == "default" {
					dups := 0
					for i := 0; i < n; i++ {
						dups += got[fmt.Sprintf("out-v%d", i)] - 1
					}
					if dups > 1 {
						t.Fatalf("%d duplicates, want at most the record in hand's", dups)
					}
				}
			})
		}
	}
}

var _ = errors.New
