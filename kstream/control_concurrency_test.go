package kstream_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/kstream"
)

// Pause and Resume from a handler of a concurrent stream: the paused
// partition's records wait (those already handed to a lane still run), and
// every record is handled once, in partition order.
func TestPauseFromConcurrentHandler(t *testing.T) {
	for _, mode := range []string{"partition", "key"} {
		t.Run(mode, func(t *testing.T) {
			const parts, per = 2, 300
			e := newEnv(t, parts, parts*per)
			eng := e.engine()
			opt := kstream.PartitionConcurrency(2)
			if mode == "key" {
				opt = kstream.KeyConcurrency(4) // keyless records keep their partition's lane
			}
			s := e.engineStream(e.topic, "pause-conc-"+mode, opt, kstream.MaxPollRecords(5))
			var got perPartition
			var pausedAt, resumedAt atomic.Int64
			pausedAt.Store(-1)
			var once, resumeOnce sync.Once
			finished := make(chan struct{})
			s.Handle(func(_ context.Context, rec kstream.Record[string]) error {
				got.add(rec.Partition, rec.Offset)
				if rec.Partition == 0 && rec.Offset == 3 {
					once.Do(func() {
						s.Pause(pausedOf(e.topic, 0))
						pausedAt.Store(int64(got.count(1)))
					})
				}
				if pausedAt.Load() >= 0 && got.count(1) == per {
					resumeOnce.Do(func() {
						resumedAt.Store(int64(got.count(0)))
						s.Resume(pausedOf(e.topic, 0))
					})
				}
				if got.count(0)+got.count(1) == parts*per {
					close(finished)
				}
				return nil
			})
			if err := eng.Add(s); err != nil {
				t.Fatal(err)
			}
			if err := eng.Start(e.ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case <-finished:
			case <-time.After(30 * time.Second):
				t.Fatalf("handled %d and %d records, want %d each", got.count(0), got.count(1), per)
			}
			got.check(t, parts, 0, per)
			if n := resumedAt.Load(); n >= per {
				t.Fatalf("partition 0 was fully handled (%d records) before Resume: the pause did not hold", n)
			}
		})
	}
}

// Seek back from a handler of a concurrent stream: the partition is read
// again from the new position, with no gap, once the lanes are done.
func TestSeekFromConcurrentHandler(t *testing.T) {
	const per = 200
	e := newEnv(t, 2, 2*per)
	eng := e.engine()
	s := e.engineStream(e.topic, "seek-conc", kstream.PartitionConcurrency(2), kstream.MaxPollRecords(5))
	var got perPartition
	var once sync.Once
	var total atomic.Int64
	finished := make(chan struct{})
	s.Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		got.add(rec.Partition, rec.Offset)
		if rec.Partition == 0 && rec.Offset == 10 {
			once.Do(func() {
				if err := s.Seek(ctx, kstream.TopicPartitionOffset{Topic: e.topic, Partition: 0, Offset: 2}); err != nil {
					t.Error(err)
				}
			})
		}
		if rec.Offset == per-1 && total.Add(1) == 2 {
			close(finished)
		}
		return nil
	})
	if err := eng.Add(s); err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatalf("handled %d and %d records; the last records were not reached", got.count(0), got.count(1))
	}
	got.mu.Lock()
	defer got.mu.Unlock()
	p0 := got.offs[0]
	i := slices.Index(p0, 2)
	j := slices.Index(p0[i+1:], 2) + i + 1
	if i != 2 || j <= i {
		t.Fatalf("partition 0 was not read again from 2: %v", p0)
	}
	for k := 0; k < j; k++ {
		if p0[k] != int64(k) {
			t.Fatalf("partition 0 before the seek took effect: %v, want 0, 1, 2, ... (at least to 10)", p0[:j])
		}
	}
	if j < 11 {
		t.Fatalf("the seek took effect before its record, 10, was handled: %v", p0)
	}
	for k, off := range p0[j:] {
		if off != int64(2+k) {
			t.Fatalf("partition 0 after the seek: %v, want 2 to %d in order", p0[j:], per-1)
		}
	}
	if want := per - 2; len(p0[j:]) != want {
		t.Fatalf("partition 0 after the seek: %d records, want %d", len(p0[j:]), want)
	}
	if p1 := got.offs[1]; len(p1) != per {
		t.Fatalf("partition 1: %d records handled, want %d each once", len(p1), per)
	}
}

// Pause with Batches: records kept for the paused partition come after
// Resume, in order.
func TestPauseBatches(t *testing.T) {
	const parts, per = 2, 30
	e := newEnv(t, parts, parts*per)
	s := e.stream(kstream.Group("pause-batches"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got perPartition
	paused, pausedOnce := false, false
	for b, err := range s.Batches(e.ctx, 7, 20*time.Millisecond) {
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range b {
			got.add(r.Partition, r.Offset)
		}
		if !pausedOnce && got.count(0) > 0 && got.count(0) < per {
			s.Pause(pausedOf(e.topic, 0))
			paused, pausedOnce = true, true
		}
		if paused && got.count(1) == per {
			s.Resume(pausedOf(e.topic, 0))
			paused = false
			if got.count(0) == per {
				t.Fatal("partition 0 was read to its end while paused")
			}
		}
		if got.count(0)+got.count(1) == parts*per {
			break
		}
	}
	got.check(t, parts, 0, per)
}
