package kstream_test

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/kstream"
)

// perPartition collects the offsets yielded, per partition, in order.
type perPartition struct {
	mu   sync.Mutex
	offs map[int32][]int64
}

func (pp *perPartition) add(p int32, off int64) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.offs == nil {
		pp.offs = map[int32][]int64{}
	}
	pp.offs[p] = append(pp.offs[p], off)
}

func (pp *perPartition) count(p int32) int {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return len(pp.offs[p])
}

// check fails t unless each partition got exactly offsets from..to-1, in
// order: nothing lost, skipped or yielded twice.
func (pp *perPartition) check(t *testing.T, parts int32, from, to int64) {
	t.Helper()
	pp.mu.Lock()
	defer pp.mu.Unlock()
	for p := range parts {
		var want []int64
		for o := from; o < to; o++ {
			want = append(want, o)
		}
		if got := pp.offs[p]; !slices.Equal(got, want) {
			t.Errorf("partition %d: got offsets %v, want %v", p, got, want)
		}
	}
}

func pausedOf(topic string, ps ...int32) map[string][]int32 {
	if len(ps) == 0 {
		return map[string][]int32{}
	}
	return map[string][]int32{topic: ps}
}

// Pause from the loop body: the partition's records already fetched are
// kept and come after Resume, in order; a break while paused gives the
// record in hand back ahead of them.
func TestPauseFromBody(t *testing.T) {
	for _, tc := range []struct {
		name  string
		group bool
	}{{"group", true}, {"no group", false}} {
		t.Run(tc.name, func(t *testing.T) {
			const parts, per = 2, 10
			e := newEnv(t, parts, parts*per)
			var opts []kstream.Option
			if tc.group {
				opts = append(opts, kstream.Group("pause-body"))
			}
			s := e.stream(opts...)
			if err := s.Open(e.ctx); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx, cancel := context.WithTimeout(e.ctx, 15*time.Second)
			defer cancel()
			var got perPartition
			paused := false
			broke := false
		again:
			for rec, err := range s.Records(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				if paused && rec.Partition == 0 {
					t.Fatalf("got offset %d of partition 0 while it was paused", rec.Offset)
				}
				if rec.Partition == 0 && rec.Offset == 0 && !paused && got.count(0) == 0 {
					s.Pause(pausedOf(e.topic, 0))
					paused = true
					if p := s.Paused(); !maps.EqualFunc(p, pausedOf(e.topic, 0), slices.Equal) {
						t.Fatalf("Paused() = %v, want partition 0", p)
					}
					if !broke {
						// Given back: yielded again first after Resume.
						broke = true
						break
					}
				}
				got.add(rec.Partition, rec.Offset)
				if paused && got.count(1) == per {
					s.Resume(pausedOf(e.topic, 0))
					paused = false
					if p := s.Paused(); len(p) != 0 {
						t.Fatalf("Paused() after Resume = %v, want none", p)
					}
				}
				if got.count(0)+got.count(1) == parts*per {
					break
				}
			}
			if ctx.Err() != nil {
				t.Fatalf("timed out with %d and %d records: %v", got.count(0), got.count(1), got.offs)
			}
			if broke && got.count(0)+got.count(1) < parts*per {
				if paused && got.count(1) == per {
					// Partition 1 was read to its end before the pause:
					// no record of it will come to resume in the body.
					s.Resume(pausedOf(e.topic, 0))
					paused = false
				}
				goto again
			}
			got.check(t, parts, 0, per)
		})
	}
}

// Pause and Resume from another goroutine, with a rebalance in between:
// the partitions the member keeps stay paused (nothing of them is
// processed until Resume), and across the two members every record is
// processed once.
func TestPauseFromGoroutineAcrossRebalance(t *testing.T) {
	const parts, per = 4, 20
	e := newEnv(t, parts, parts*per)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	l := &ledger{seen: map[[2]int64]int{}}
	a := startMember(t, ctx, e, "a", l, kstream.Group("pause-rb"))
	defer a.s.Close()
	eventually(t, 20*time.Second, "a to own all partitions", func() bool { return a.ownedCount() == parts })
	all := pausedOf(e.topic, 0, 1, 2, 3)
	a.s.Pause(all)
	if p := a.s.Paused(); !maps.EqualFunc(p, all, slices.Equal) {
		t.Fatalf("Paused() = %v, want %v", p, all)
	}
	b := startMember(t, ctx, e, "b", l, kstream.Group("pause-rb"))
	defer b.s.Close()
	eventually(t, 30*time.Second, "the partitions to be split between a and b", func() bool {
		return a.ownedCount() > 0 && b.ownedCount() > 0 && a.ownedCount()+b.ownedCount() == parts
	})
	kept := a.s.Assignment()
	if p := a.s.Paused(); !maps.EqualFunc(p, kept, slices.Equal) {
		t.Fatalf("after the rebalance Paused() = %v, want the partitions a kept, %v", p, kept)
	}
	// The pause took effect at a's next record boundary: from then on a
	// processes nothing of the partitions it keeps.
	b.mu.Lock()
	bOwned := slices.Collect(maps.Keys(b.owned))
	b.mu.Unlock()
	eventually(t, 30*time.Second, "b to read its partitions", func() bool {
		for _, p := range bOwned {
			if seenOf(l, p) != per {
				return false
			}
		}
		return true
	})
	keptSeen := map[int32]int{}
	for _, p := range kept[e.topic] {
		keptSeen[p] = seenOf(l, p)
	}
	time.Sleep(300 * time.Millisecond) // a chance for a broken pause to show: nothing to await
	for _, p := range kept[e.topic] {
		if n := seenOf(l, p); n != keptSeen[p] || n == per {
			t.Fatalf("partition %d, paused and kept by a: %d records processed, %d before; want no progress and records left", p, n, keptSeen[p])
		}
	}
	a.s.Resume(all)
	if p := a.s.Paused(); len(p) != 0 {
		t.Fatalf("Paused() after Resume = %v, want none", p)
	}
	eventually(t, 30*time.Second, "every record to be processed", func() bool { return l.distinct() == parts*per })
	cancel()
	for _, m := range []*member{a, b} {
		if err := <-m.done; err != nil {
			t.Fatal(err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.dups) > 0 {
		t.Fatalf("%d records processed twice, e.g. partition/offset %v", len(l.dups), l.dups[0])
	}
}

// seenOf returns how many distinct offsets of partition p were processed.
func seenOf(l *ledger, p int32) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for k := range l.seen {
		if k[0] == int64(p) {
			n++
		}
	}
	return n
}

// Pause from a rebalance listener, as partitions are assigned, and Resume
// from another goroutine.
func TestPauseFromListener(t *testing.T) {
	const parts, per = 2, 10
	e := newEnv(t, parts, parts*per)
	var s *kstream.Stream[string]
	s = e.stream(kstream.Group("pause-listener"), kstream.Listener(kstream.ListenerFuncs{
		Assigned: func(_ context.Context, _ kstream.AnyStream, a map[string][]int32) {
			if slices.Contains(a[e.topic], 0) {
				s.Pause(pausedOf(e.topic, 0))
			}
		},
	}))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got perPartition
	resumed := make(chan struct{})
	for rec, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got.add(rec.Partition, rec.Offset)
		if rec.Partition == 0 {
			select {
			case <-resumed:
			default:
				t.Fatalf("got offset %d of partition 0 before Resume", rec.Offset)
			}
		}
		if rec.Partition == 1 && got.count(1) == per {
			if p := s.Paused(); !maps.EqualFunc(p, pausedOf(e.topic, 0), slices.Equal) {
				t.Fatalf("Paused() = %v, want partition 0", p)
			}
			go func() {
				close(resumed)
				s.Resume(pausedOf(e.topic, 0))
			}()
		}
		if got.count(0)+got.count(1) == parts*per {
			break
		}
	}
	got.check(t, parts, 0, per)
}
