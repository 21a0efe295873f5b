package kstream

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
)

// The offset arithmetic of commits and rewinds, without a cluster. A
// partState is built by a sequence of steps, as the session makes them.

type psStep struct {
	yield   []int64 // records yielded, in order
	process []int64 // records processed (marked)
	rewind  int64   // then rewound to this offset (-1: no rewind)
	seek    int64   // then sought to this offset (Seek; -1: no seek)
}

func buildPS(steps ...psStep) *partState {
	ps := &partState{}
	for _, st := range steps {
		for _, off := range st.yield {
			ps.noteYield(&kgo.Record{Offset: off})
		}
		for _, off := range st.process {
			if off+1 > ps.processed {
				ps.processed = off + 1
			}
		}
		if st.rewind >= 0 {
			ps.rewindTo(st.rewind)
		}
		if st.seek >= 0 {
			ps.seekTo(st.seek)
		}
	}
	return ps
}

func yp(yield, process []int64) psStep {
	return psStep{yield: yield, process: process, rewind: -1, seek: -1}
}

func rw(off int64) psStep { return psStep{rewind: off, seek: -1} }

func sk(off int64) psStep { return psStep{rewind: -1, seek: off} }

func TestPartStateArithmetic(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ps      *partState
		low     int64 // lowest unprocessed, -1 for none
		settled int64
	}{
		{"nothing yielded", buildPS(), -1, 0},
		{"first record in hand, from a committed offset", buildPS(yp([]int64{100}, nil)), 100, 100},
		{"all yielded processed", buildPS(yp([]int64{100, 101, 102}, []int64{100, 101, 102})), -1, 103},
		{"record in hand after processed ones", buildPS(yp([]int64{100, 101, 102}, []int64{100, 101})), 102, 102},
		{"batch in hand", buildPS(yp([]int64{5, 6, 7, 8}, nil)), 5, 5},
		// No record lies between 15 and 20: offset 15 reads from 20.
		{"gap in offsets (compaction)", buildPS(yp([]int64{10, 14, 20}, []int64{10, 14})), 15, 15},
		{"out of order: watermark below a finished record", buildPS(yp([]int64{0, 1, 2, 3}, []int64{0})), 1, 1},
		{"broken on and given back", buildPS(yp([]int64{0, 1, 2}, []int64{0, 1}), rw(2)), -1, 2},
		{"given back, then yielded again", buildPS(yp([]int64{0, 1, 2}, []int64{0, 1}), rw(2), yp([]int64{2}, nil)), 2, 2},
		{"rewound below base: lanes dropped unstarted records", buildPS(yp([]int64{50, 51, 52, 53}, []int64{50}), rw(51)), -1, 51},
		{"rewound to partition start", buildPS(yp([]int64{0, 1}, nil), rw(0), yp([]int64{0}, nil)), 0, 0},
		{"given back above records still running on lanes", buildPS(yp([]int64{10, 11, 12, 13, 14, 15}, []int64{10}), rw(15)), 11, 11},
		// Seek: everything before the new position counts as processed,
		// nothing after it as yielded, in both directions.
		{"sought back after processing", buildPS(yp([]int64{100, 101, 102}, []int64{100, 101, 102}), sk(50)), -1, 50},
		{"sought back, then yielded again", buildPS(yp([]int64{100, 101}, []int64{100, 101}), sk(50), yp([]int64{50}, nil)), 50, 50},
		{"sought back, yielded again and processed", buildPS(yp([]int64{100, 101}, []int64{100, 101}), sk(50), yp([]int64{50, 51}, []int64{50})), 51, 51},
		{"sought forward over records never yielded", buildPS(yp([]int64{0, 1}, []int64{0, 1}), sk(10)), -1, 10},
		{"sought to the start", buildPS(yp([]int64{7, 8}, []int64{7, 8}), sk(0), yp([]int64{0}, nil)), 0, 0},
		{"sought, then given back by a break", buildPS(yp([]int64{9}, []int64{9}), sk(3), yp([]int64{3, 4}, []int64{3}), rw(4)), -1, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			low, ok := tc.ps.lowestUnprocessed()
			if !ok {
				low = -1
			}
			if low != tc.low {
				t.Errorf("lowestUnprocessed = %d, want %d (%+v)", low, tc.low, *tc.ps)
			}
			if got := tc.ps.settled(); got != tc.settled {
				t.Errorf("settled = %d, want %d (%+v)", got, tc.settled, *tc.ps)
			}
		})
	}
}

func TestRewindTarget(t *testing.T) {
	for _, tc := range []struct {
		name          string
		ps            *partState
		firstBuffered int64 // -1: none
		want          int64 // -1: no rewind
	}{
		{"nothing in hand, nothing buffered", buildPS(yp([]int64{0, 1}, []int64{0, 1})), -1, -1},
		{"buffered only", buildPS(yp([]int64{0, 1}, []int64{0, 1})), 2, 2},
		{"unprocessed only (lanes dropped records)", buildPS(yp([]int64{0, 1, 2, 3}, []int64{0})), -1, 1},
		{"unprocessed before buffered", buildPS(yp([]int64{0, 1, 2, 3}, []int64{0})), 4, 1},
		{"never yielded, buffered", buildPS(), 7, 7},
		{"given back by a break, then buffered behind", buildPS(yp([]int64{0, 1, 2}, []int64{0, 1}), rw(2)), 2, 2},
		{"sought back: nothing to rewind", buildPS(yp([]int64{0, 1}, []int64{0, 1}), sk(0)), -1, -1},
		{"sought back, record in hand and buffered behind", buildPS(yp([]int64{5}, []int64{5}), sk(1), yp([]int64{1}, nil)), 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.ps.rewindTarget(tc.firstBuffered, tc.firstBuffered >= 0)
			if !ok {
				got = -1
			}
			if got != tc.want {
				t.Fatalf("rewindTarget = %d, want %d", got, tc.want)
			}
			if ok {
				tc.ps.rewindTo(got)
				if _, pending := tc.ps.lowestUnprocessed(); pending {
					t.Fatalf("after rewinding to %d something still counts as yielded and unprocessed: %+v", got, *tc.ps)
				}
			}
		})
	}
}

func TestCommitTarget(t *testing.T) {
	inHand := buildPS(yp([]int64{0, 1, 2}, []int64{0, 1})) // 2 in the body
	outOfOrder := buildPS(yp([]int64{0, 1, 2, 3, 4}, []int64{0, 1}))
	// Committed up to 100, then sought back to 40: commits go backwards.
	soughtBack := func(steps ...psStep) *partState {
		ps := buildPS(yp([]int64{98, 99}, []int64{98, 99}))
		ps.committed, ps.committedKnown = 100, true
		ps.seekTo(40)
		for _, st := range steps {
			for _, off := range st.yield {
				ps.noteYield(&kgo.Record{Offset: off})
			}
			for _, off := range st.process {
				ps.processed = max(ps.processed, off+1)
			}
		}
		return ps
	}
	for _, tc := range []struct {
		name       string
		ps         *partState
		explicit   bool
		outOfOrder bool
		closing    bool
		want       int64
	}{
		{"Commit from a serial body covers the record in hand", inHand, true, false, false, 3},
		{"a listener's Commit stops at it", inHand, false, false, false, 2},
		{"Commit while closing stops at it", inHand, true, false, true, 2},
		{"Commit under concurrency stops at the lowest unfinished", outOfOrder, true, true, false, 2},
		{"a listener's Commit under concurrency too", outOfOrder, false, true, false, 2},
		{"Commit after a seek back commits the new position", soughtBack(), true, false, false, 40},
		{"Commit after a seek back and a record in hand", soughtBack(yp([]int64{40, 41}, []int64{40})), true, false, false, 42},
		{"a listener's Commit after a seek back", soughtBack(yp([]int64{40, 41}, []int64{40})), false, false, false, 41},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss := &session{outOfOrder: tc.outOfOrder}
			ss.closing.Store(tc.closing)
			got := ss.commitTargetLocked(tc.ps, tc.explicit)
			if got != tc.want {
				t.Fatalf("commit target = %d, want %d", got, tc.want)
			}
			if got <= tc.ps.committed {
				t.Fatalf("commit target %d is not beyond the last commit as known, %d: commitYielded would skip it", got, tc.ps.committed)
			}
		})
	}
}

// The concurrency watermark: a partition's mark advances over the finished
// records at the front of its queue, never past an unfinished or failed one.
func TestProgressWatermark(t *testing.T) {
	recs := make([]*kgo.Record, 6)
	for i := range recs {
		recs[i] = &kgo.Record{Offset: int64(i)}
	}
	type fin struct {
		off  int
		ok   bool
		want int64 // offset the mark advances to, -1: none
	}
	for _, tc := range []struct {
		name string
		fins []fin
	}{
		{"in order", []fin{{0, true, 0}, {1, true, 1}, {2, true, 2}}},
		{"out of order: held until the front finishes", []fin{{2, true, -1}, {1, true, -1}, {0, true, 2}}},
		{"a failed record holds the mark for good", []fin{{0, true, 0}, {1, false, -1}, {2, true, -1}, {3, true, -1}}},
		{"gaps filled one by one", []fin{{1, true, -1}, {3, true, -1}, {0, true, 1}, {2, true, 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &progress{done: map[*kgo.Record]bool{}}
			p.queue = append(p.queue, recs...)
			for _, f := range tc.fins {
				got := int64(-1)
				if last := p.finish(recs[f.off], f.ok); last != nil {
					got = last.Offset
				}
				if got != f.want {
					t.Fatalf("finish(%d, %v): mark to %d, want %d", f.off, f.ok, got, f.want)
				}
			}
		})
	}
}

// Item 12 of the core contract issue: Close's own final push re-armed the
// mark-push timer, which then fired after Close returned.
func TestClosedSessionLeavesNoPushTimer(t *testing.T) {
	fc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	ctx := context.Background()
	pc, err := kgo.NewClient(kgo.SeedBrokers(fc.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := pc.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("a")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	pc.Close()
	s, err := NewStream(codec.String(), Brokers(fc.ListenAddrs()...), Topics("t"), Group("g"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	ss, err := s.session()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, err := range s.Records(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 2 {
			// The first record is processed and its mark not yet
			// pushed: Close's final push has something to push.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if ss.pushTimer.Stop() {
		t.Fatal("the mark-push timer is armed after Close: it fires after Close returned")
	}
}
