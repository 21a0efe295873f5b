package kstream_test

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/kstream"
)

// The Records iterator steps through the records of a partition already
// polled without taking the session's lock (run.go). What another goroutine
// sees meanwhile must be what it would see if every step took the lock:
// Commit from another goroutine covers exactly what it covers from the body:
// every record yielded so far, the one in hand included, and nothing after
// it.
func TestCommitFromAnotherGoroutineCoversWhatWasYielded(t *testing.T) {
	const n = 200
	e := newEnv(t, 1, n)
	s := e.stream(kstream.Group("g"), kstream.ManualCommit())
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
	defer cancel()
	commit := make(chan chan error)
	go func() {
		for reply := range commit {
			reply <- s.Commit(ctx)
		}
	}()
	defer close(commit)
	checks := map[int64]bool{1: true, 57: true, 120: true, n - 1: true}
	for rec, err := range s.Records(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if checks[rec.Offset] {
			reply := make(chan error)
			commit <- reply
			if err := <-reply; err != nil {
				t.Fatal(err)
			}
			e.wantCommitted("g", map[int32]int64{0: rec.Offset + 1})
		}
		if rec.Offset == n-1 {
			break
		}
	}
}

// Pause and Resume from another goroutine, at random moments, end the run
// in progress from outside it; every record is still yielded once, in order.
func TestPauseResumeFromAnotherGoroutineDuringRuns(t *testing.T) {
	const parts, per = 3, 400
	e := newEnv(t, parts, parts*per)
	s := e.stream(kstream.Group("g"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	var toggles atomic.Int64
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				s.Resume(map[string][]int32{e.topic: {0, 1, 2}})
				return
			default:
			}
			p := int32(rng.IntN(parts))
			s.Pause(map[string][]int32{e.topic: {p}})
			time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond) // how long the pause lasts, not synchronization
			s.Resume(map[string][]int32{e.topic: {p}})
			toggles.Add(1)
		}
	}()
	var pp perPartition
	got := 0
	for rec, err := range s.Records(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		pp.add(rec.Partition, rec.Offset)
		if got++; got == parts*per {
			break
		}
		if got%100 == 0 {
			// Let the pauses and resumes interleave with the loop even on
			// a fast machine: every 100 records, wait for the next one.
			for n := toggles.Load(); toggles.Load() == n && ctx.Err() == nil; {
				runtime.Gosched()
			}
		}
	}
	close(stop)
	wg.Wait()
	pp.check(t, parts, 0, per)
	if toggles.Load() == 0 {
		t.Fatal("no pause and resume ran while the stream was read")
	}
}
