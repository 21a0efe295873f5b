package kstream_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/kstream"
)

// One partition, six records: offsets 0..5. The matrix of STYLE.md, with
// the commit each way of leaving the loop must produce, read back from the
// group's committed offsets.

func TestRecordsRunToEnd(t *testing.T) {
	e := newEnv(t, 1, 6)
	s := e.stream(kstream.Group("g"))
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var got []string
	for rec, err := range s.Records(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec.Value)
		if len(got) == 6 {
			cancel() // ends the loop quietly at the next boundary
		}
	}
	if want := []string{"v0", "v1", "v2", "v3", "v4", "v5"}; !slices.Equal(got, want) {
		t.Fatalf("values = %v, want %v", got, want)
	}
	// The stream was opened by its loop, so the loop closed it, committing
	// all six: the last body finished before cancel took effect.
	e.wantCommitted("g", map[int32]int64{0: 6})
}

func TestRecordsBreak(t *testing.T) {
	for _, at := range []int{0, 2, 5} { // first, middle, last
		t.Run(fmt.Sprintf("at%d", at), func(t *testing.T) {
			e := newEnv(t, 1, 6)
			s := e.stream(kstream.Group("g"))
			if err := s.Open(e.ctx); err != nil {
				t.Fatal(err)
			}
			recs := take(t, e.ctx, s, at+1) // breaks on offset at
			if recs[at].Offset != int64(at) {
				t.Fatalf("broke on offset %d, want %d", recs[at].Offset, at)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// The record broken on is not committed (breaking on the
			// first leaves nothing to commit at all).
			want := map[int32]int64{0: int64(at)}
			if at == 0 {
				want = map[int32]int64{}
			}
			e.wantCommitted("g", want)
			// The next member starts with it.
			s2 := e.stream(kstream.Group("g"))
			defer s2.Close()
			if got := take(t, e.ctx, s2, 1)[0].Offset; got != int64(at) {
				t.Fatalf("next member starts at %d, want %d", got, at)
			}
		})
	}
}

func TestRecordsResumeAfterBreak(t *testing.T) {
	e := newEnv(t, 1, 6)
	s := e.stream(kstream.Group("g"), kstream.MaxPollRecords(100))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	first := take(t, e.ctx, s, 2) // 0, 1; breaks on 1 with 2..5 polled
	if err := s.Commit(e.ctx); err != nil {
		t.Fatal(err)
	}
	// The record broken on was given back: Commit does not cover it.
	e.wantCommitted("g", map[int32]int64{0: 1})
	second := take(t, e.ctx, s, 5) // 1 again first, then the rest
	if got, want := append(offsets(first), offsets(second)...), []int64{0, 1, 1, 2, 3, 4, 5}; !slices.Equal(got, want) {
		t.Fatalf("offsets across two ranges = %v, want %v", got, want)
	}
	if err := s.Commit(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("g", map[int32]int64{0: 5}) // 5 was broken on
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("g", map[int32]int64{0: 5})
}

// The record broken on is yielded again first, and a later range that
// finishes it commits it.
func TestRecordsBreakThenProcessLaterCommitsOver(t *testing.T) {
	e := newEnv(t, 1, 6)
	s := e.stream(kstream.Group("g"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	take(t, e.ctx, s, 3) // breaks on 2
	if got := offsets(take(t, e.ctx, s, 2)); !slices.Equal(got, []int64{2, 3}) {
		t.Fatalf("second range yielded %v, want [2 3]: the record broken on first", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("g", map[int32]int64{0: 3}) // 2 finished, 3 broken on
}

func TestRecordsReturnAndError(t *testing.T) {
	e := newEnv(t, 1, 6)
	s := e.stream(kstream.Group("g"))
	errStore := errors.New("store failed")
	err := s.Use(e.ctx, func(records iter.Seq2[kstream.Record[string], error]) error {
		for rec, err := range records {
			if err != nil {
				return err
			}
			if rec.Offset == 3 {
				return errStore // returns from inside the loop
			}
		}
		return nil
	})
	if !errors.Is(err, errStore) {
		t.Fatalf("Use returned %v, want %v", err, errStore)
	}
	e.wantCommitted("g", map[int32]int64{0: 3})
}

func TestRecordsPanic(t *testing.T) {
	e := newEnv(t, 1, 6)
	s := e.stream(kstream.Group("g"))
	var recovered any
	func() {
		defer func() { recovered = recover() }()
		_ = s.Use(e.ctx, func(records iter.Seq2[kstream.Record[string], error]) error {
			for rec, err := range records {
				if err != nil {
					return err
				}
				if rec.Offset == 4 {
					panic("boom")
				}
			}
			return nil
		})
	}()
	if recovered != "boom" {
		t.Fatalf("recovered %v, want the body's panic to go through Use", recovered)
	}
	e.wantCommitted("g", map[int32]int64{0: 4})
	// Use closed the stream; ranging it again is an error.
	var errs []error
	for _, err := range s.Records(e.ctx) {
		errs = append(errs, err)
	}
	if len(errs) != 1 || !errors.Is(errs[0], kstream.ErrClosed) {
		t.Fatalf("ranging a closed stream yielded %v, want one ErrClosed", errs)
	}
}

// A panic in the body of a stream opened by Open: the range ends, the stream
// stays usable, and ranging again resumes after the record.
func TestRecordsPanicThenResume(t *testing.T) {
	e := newEnv(t, 1, 6)
	s := e.stream(kstream.Group("g"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	func() {
		defer func() { _ = recover() }()
		for rec := range s.Records(e.ctx) {
			if rec.Offset == 1 {
				panic("boom")
			}
		}
	}()
	if got := take(t, e.ctx, s, 1)[0].Offset; got != 1 {
		t.Fatalf("after a panic on 1 the next range starts at %d, want 1 (the record panicked on)", got)
	}
}

func TestRecordsConcurrentRange(t *testing.T) {
	e := newEnv(t, 1, 3)
	s := e.stream(kstream.Group("g"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var inner []error
	for _, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // another goroutine tries to range too
			defer wg.Done()
			for _, err := range s.Records(e.ctx) {
				inner = append(inner, err)
			}
		}()
		wg.Wait()
		break
	}
	if len(inner) != 1 || !errors.Is(inner[0], kstream.ErrConcurrentRange) {
		t.Fatalf("second range yielded %v, want one ErrConcurrentRange", inner)
	}
}

func TestRecordsCloseInsideBody(t *testing.T) {
	e := newEnv(t, 1, 6)
	s := e.stream(kstream.Group("g"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	var seen []int64
	for rec, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, rec.Offset)
		if rec.Offset == 2 {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !slices.Equal(seen, []int64{0, 1, 2}) {
		t.Fatalf("seen %v, want the loop to end after Close on 2", seen)
	}
	e.wantCommitted("g", map[int32]int64{0: 2}) // 2 was in flight
	// Open after Close is a new member, from the committed offset.
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := take(t, e.ctx, s, 1)[0].Offset; got != 2 {
		t.Fatalf("reopened stream starts at %d, want 2", got)
	}
}

func TestRecordsCloseFromAnotherGoroutine(t *testing.T) {
	e := newEnv(t, 1, 6)
	s := e.stream(kstream.Group("g"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	inBody := make(chan struct{})
	closed := make(chan error)
	go func() {
		<-inBody
		closed <- s.Close()
	}()
	var seen []int64
	for rec, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, rec.Offset)
		if rec.Offset == 3 {
			close(inBody)
			if err := <-closed; err != nil { // Close returns while the body still runs
				t.Fatal(err)
			}
		}
	}
	if !slices.Equal(seen, []int64{0, 1, 2, 3}) {
		t.Fatalf("seen %v", seen)
	}
	e.wantCommitted("g", map[int32]int64{0: 3})
}

func TestRecordsCancelWhileBlocked(t *testing.T) {
	e := newEnv(t, 1, 2)
	s := e.stream(kstream.Group("g"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	n := 0
	for _, err := range s.Records(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if n == 2 {
			// The next step blocks in a poll: nothing more is produced.
			time.AfterFunc(100*time.Millisecond, cancel)
		}
	}
	if n != 2 {
		t.Fatalf("got %d records", n)
	}
	if err := s.Commit(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("g", map[int32]int64{0: 2})
}

func TestRecordsNeverOpenedOpensForTheLoop(t *testing.T) {
	e := newEnv(t, 1, 4)
	s := e.stream(kstream.Group("g"))
	take(t, e.ctx, s, 2) // breaks on 1
	e.wantCommitted("g", map[int32]int64{0: 1})
	if err := s.Commit(e.ctx); !errors.Is(err, kstream.ErrNotOpen) {
		t.Fatalf("Commit after the loop closed = %v, want ErrNotOpen", err)
	}
	// A second loop is a new session: it starts at the broken-on record.
	if got := take(t, e.ctx, s, 1)[0].Offset; got != 1 {
		t.Fatalf("second loop starts at %d, want 1", got)
	}
}

func TestBatches(t *testing.T) {
	e := newEnv(t, 1, 10)
	s := e.stream(kstream.Group("g"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var sizes []int
	var all []int64
	for batch, err := range s.Batches(e.ctx, 4, 200*time.Millisecond) {
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(batch))
		for _, r := range batch {
			all = append(all, r.Offset)
		}
		if len(all) == 10 {
			break
		}
	}
	if !slices.Equal(all, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("offsets %v", all)
	}
	for _, n := range sizes {
		if n > 4 || n == 0 {
			t.Fatalf("batch sizes %v, want 1..4 each", sizes)
		}
	}
	// The last batch was broken on: only the batches before it are processed.
	last := sizes[len(sizes)-1]
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("g", map[int32]int64{0: int64(10 - last)})
}

func TestBatchesWaitYieldsPartial(t *testing.T) {
	e := newEnv(t, 1, 3)
	s := e.stream(kstream.Group("g"))
	for batch, err := range s.Batches(e.ctx, 100, 100*time.Millisecond) {
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) != 3 {
			// All three are fetched at once; the wait ends the batch.
			t.Fatalf("batch of %d, want 3", len(batch))
		}
		break
	}
}

func TestBatchesCancelMidBatchLosesNothing(t *testing.T) {
	e := newEnv(t, 1, 3)
	s := e.stream(kstream.Group("g"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(e.ctx)
	time.AfterFunc(300*time.Millisecond, cancel) // while it waits for more
	for batch, err := range s.Batches(ctx, 100, time.Minute) {
		t.Fatalf("yielded %d records, %v; want nothing before cancel", len(batch), err)
	}
	// The three gathered records are not lost: the next range yields them.
	var got []int64
	for batch, err := range s.Batches(e.ctx, 3, time.Minute) {
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range batch {
			got = append(got, r.Offset)
		}
		break
	}
	if !slices.Equal(got, []int64{0, 1, 2}) {
		t.Fatalf("after cancel got %v, want [0 1 2]", got)
	}
}

func TestBatchesInvalidArguments(t *testing.T) {
	e := newEnv(t, 1, 0)
	s := e.stream(kstream.Group("g"))
	for _, tc := range []struct {
		max  int
		wait time.Duration
	}{{0, time.Second}, {-1, time.Second}, {1, -time.Second}} {
		var errs []error
		for _, err := range s.Batches(e.ctx, tc.max, tc.wait) {
			errs = append(errs, err)
		}
		if len(errs) != 1 || !errors.Is(errs[0], kstream.ErrInvalidOption) {
			t.Errorf("Batches(%d, %v) yielded %v, want one ErrInvalidOption", tc.max, tc.wait, errs)
		}
	}
}
