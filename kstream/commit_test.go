package kstream_test

import (
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/kstream"
)

func TestManualCommitCommitsNothingByItself(t *testing.T) {
	e := newEnv(t, 1, 6)
	s := e.stream(kstream.Group("g"), kstream.ManualCommit())
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	take(t, e.ctx, s, 4)
	take(t, e.ctx, s, 2) // all six processed, ranging resumed
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("g", map[int32]int64{})
}

func TestManualCommitInBodyIncludesRecordInHand(t *testing.T) {
	e := newEnv(t, 1, 6)
	s := e.stream(kstream.Group("g"), kstream.ManualCommit())
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for rec, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Offset == 2 {
			if err := s.Commit(e.ctx); err != nil { // after storing rec
				t.Fatal(err)
			}
			break
		}
	}
	e.wantCommitted("g", map[int32]int64{0: 3})
}

func TestCommitRecordsNeverBackwards(t *testing.T) {
	e := newEnv(t, 2, 8) // partition 0: v0 v2 v4 v6; partition 1: v1 v3 v5 v7
	s := e.stream(kstream.Group("g"), kstream.ManualCommit())
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs := take(t, e.ctx, s, 8)
	byPart := map[int32][]kstream.Record[string]{}
	for _, r := range recs {
		byPart[r.Partition] = append(byPart[r.Partition], r)
	}
	// Commit partition 0 up to its third record, partition 1 up to its first.
	if err := s.CommitRecords(e.ctx, byPart[0][2], byPart[1][0]); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("g", map[int32]int64{0: 3, 1: 1})
	// An older record does not move partition 0 back.
	if err := s.CommitRecords(e.ctx, byPart[0][0], byPart[1][1]); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("g", map[int32]int64{0: 3, 1: 2})
}

func TestDefaultModeCommitAndClose(t *testing.T) {
	e := newEnv(t, 2, 8)
	s := e.stream(kstream.Group("g"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	recs := take(t, e.ctx, s, 8) // breaks on the eighth, which is given back
	if err := s.Commit(e.ctx); err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{0: 4, 1: 4}
	want[recs[7].Partition] = recs[7].Offset
	e.wantCommitted("g", want)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := s.Commit(e.ctx); !errors.Is(err, kstream.ErrClosed) {
		t.Fatalf("Commit after Close = %v, want ErrClosed", err)
	}
}

func TestNoGroupReadsAllAndCannotCommit(t *testing.T) {
	e := newEnv(t, 3, 9)
	s := e.stream() // no group
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs := take(t, e.ctx, s, 9)
	seen := map[string]bool{}
	for _, r := range recs {
		seen[r.Value] = true
	}
	if len(seen) != 9 {
		t.Fatalf("saw %d distinct values, want 9", len(seen))
	}
	if err := s.Commit(e.ctx); !errors.Is(err, kstream.ErrNoGroup) {
		t.Fatalf("Commit without a group = %v, want ErrNoGroup", err)
	}
	if err := s.CommitRecords(e.ctx, recs[0]); !errors.Is(err, kstream.ErrNoGroup) {
		t.Fatalf("CommitRecords without a group = %v, want ErrNoGroup", err)
	}
	if got, want := s.Assignment(), map[string][]int32{e.topic: {0, 1, 2}}; !equalAssignment(got, want) {
		t.Fatalf("Assignment() = %v, want %v", got, want)
	}
}

func TestCommitBeforeOpen(t *testing.T) {
	e := newEnv(t, 1, 0)
	s := e.stream(kstream.Group("g"))
	if err := s.Commit(e.ctx); !errors.Is(err, kstream.ErrNotOpen) {
		t.Fatalf("Commit before Open = %v, want ErrNotOpen", err)
	}
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Open(e.ctx); !errors.Is(err, kstream.ErrAlreadyOpen) {
		t.Fatalf("second Open = %v, want ErrAlreadyOpen", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func equalAssignment(a, b map[string][]int32) bool {
	return maps.EqualFunc(a, b, func(x, y []int32) bool {
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	})
}

// Records processed before a loop body that takes long are committed while
// it runs, not only when it returns.
func TestProcessedRecordsCommittedWhileBodyIsSlow(t *testing.T) {
	e := newEnv(t, 1, 6)
	s := e.stream(kstream.Group("g"), kstream.ClientOptions(kgo.AutoCommitInterval(100*time.Millisecond)))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for rec, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Offset == 3 {
			// 0..2 are processed; the body now takes its time.
			eventually(t, 10*time.Second, "0..2 to be committed while the body runs", func() bool {
				return e.committed("g")[0] == 3
			})
			break
		}
	}
}
