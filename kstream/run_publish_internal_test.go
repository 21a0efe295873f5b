package kstream

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
)

// A record a run does not yield, because the range's ctx had ended or a
// flag asked for the locked path, must never be seen by another goroutine's
// fold as yielded: Commit from that goroutine, which commits what was
// yielded, would commit a record no body was given (a Pause, a Close or a
// revoke before it is yielded again loses it). (From review: when runStep
// published the record before it looked at the ctx and the flags, both
// tests failed, committing offset 3.) These
// tests act as the Records iterator does (iter.go) one step at a time, so
// that another goroutine's Commit lands where it may in a real range:
// after runStep returned and before step takes the lock.

const runPublishRecords = 10

type runPublishEnv struct {
	t   *testing.T
	c   *kfake.Cluster
	s   *Stream[string]
	ss  *session
	adm *kadm.Client
}

func newRunPublishEnv(t *testing.T) *runPublishEnv {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	recs := make([]*kgo.Record, runPublishRecords)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "in", Value: fmt.Appendf(nil, "v%d", i)}
	}
	if err := pc.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	s, err := NewStream(codec.String(), Brokers(c.ListenAddrs()...), Topics("in"), Group("g"), ManualCommit(),
		ClientOptions(kgo.HeartbeatInterval(100*time.Millisecond), kgo.FetchMaxWait(100*time.Millisecond)),
		internalGroupProtocol())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ss, err := s.session()
	if err != nil {
		t.Fatal(err)
	}
	return &runPublishEnv{t: t, c: c, s: s, ss: ss, adm: kadm.NewClient(pc)}
}

// startRun takes record 0 as step does and returns the run after it, which
// must hold at least 3 records, and record 1, taken by runStep as by the
// iterator and now in the body's hands.
func (e *runPublishEnv) startRun(ctx context.Context) (run []*kgo.Record, r0, r1 *kgo.Record) {
	e.t.Helper()
	e.ss.beginRange()
	r0, fe, st, run := e.ss.step(ctx, ctx.Done(), nil)
	if st != popRecord || fe != nil || r0 == nil {
		e.t.Fatalf("step: record %v, error %v, status %v", r0, fe, st)
	}
	if r0.Offset != 0 || len(run) < 3 {
		e.t.Fatalf("step took offset %d with a run of %d records, want offset 0 and 3 or more", r0.Offset, len(run))
	}
	r1 = e.ss.runStep(run, 1, r0, ctx.Done())
	if r1 == nil || r1.Offset != 1 {
		e.t.Fatalf("runStep(1) = %v; want record 1", r1)
	}
	return run, r0, r1
}

// committed returns the offset group g committed for partition 0 (-1: none).
func (e *runPublishEnv) committed() int64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := e.adm.FetchOffsets(ctx, "g")
	if err != nil {
		e.t.Fatal(err)
	}
	if o, ok := offs.Lookup("in", 0); ok {
		return o.At
	}
	return -1
}

// The range's ctx ends while the body holds record 1 (the body cancels it,
// or a deadline passes); the iterator's next runStep ends the run, and
// Commit from another goroutine runs before the iterator's step takes the
// lock. It commits records 0 and 1, not record 2, which no body was given.
func TestRunCommitAfterCtxEndNeverCoversTheNextRecord(t *testing.T) {
	e := newRunPublishEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run, _, r1 := e.startRun(ctx)
	cancel() // the body's ctx ends; the body returns
	r2 := e.ss.runStep(run, 2, run[0], ctx.Done())
	if r2 != nil {
		t.Fatalf("runStep after the ctx ended took offset %d", r2.Offset)
	}
	// Another goroutine's Commit, before the iterator's step.
	if err := e.s.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.committed(); got != 2 {
		t.Errorf("Commit from another goroutine committed offset %d, want 2 (records 0 and 1 were yielded)", got)
	}
	if _, _, st, _ := e.ss.step(ctx, ctx.Done(), r1); st != popEnd {
		t.Fatalf("step after the ctx ended: status %v, want popEnd", st)
	}
	e.ss.endRange()
	// The next range starts at record 2.
	next, stop := iterPull(t, e.s)
	defer stop()
	if rec := next(); rec.Offset != 2 {
		t.Fatalf("next range yielded offset %d first, want 2", rec.Offset)
	}
}

// Pause of the run's partition (from the body or another goroutine) while
// the body holds record 1; the iterator's next runStep sees the flag, and
// Commit from another goroutine runs before the iterator's step takes the
// lock. It commits records 0 and 1 only: record 2 is kept for the Resume,
// and a Close before the Resume must not have committed it.
func TestRunCommitAfterPauseNeverCoversTheNextRecord(t *testing.T) {
	e := newRunPublishEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	run, _, r1 := e.startRun(ctx)
	e.s.Pause(map[string][]int32{"in": {0}})
	r2 := e.ss.runStep(run, 2, run[0], ctx.Done())
	if r2 != nil {
		t.Fatalf("runStep after Pause took offset %d of the paused partition", r2.Offset)
	}
	if err := e.s.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.committed(); got != 2 {
		t.Errorf("Commit from another goroutine committed offset %d, want 2 (records 0 and 1 were yielded; record 2 is paused)", got)
	}
	// The iterator's step: the partition is paused, so it waits for
	// records until the range's ctx ends.
	cancel()
	if r, _, st, _ := e.ss.step(ctx, ctx.Done(), r1); st != popEnd {
		t.Fatalf("step: record %v, status %v, want popEnd", r, st)
	}
	e.ss.endRange()
	e.s.Resume(map[string][]int32{"in": {0}})
	next, stop := iterPull(t, e.s)
	defer stop()
	if rec := next(); rec.Offset != 2 {
		t.Fatalf("range after the Resume yielded offset %d first, want 2", rec.Offset)
	}
}

// iterPull ranges over s's Records in a pull iterator, with a deadline.
func iterPull(t *testing.T, s *Stream[string]) (next func() Record[string], stop func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	recs := make(chan Record[string])
	errs := make(chan error, 1)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for rec, err := range s.Records(ctx) {
			if err != nil {
				errs <- err
				return
			}
			select {
			case recs <- rec:
			case <-quit:
				return
			}
		}
	}()
	next = func() Record[string] {
		t.Helper()
		select {
		case rec := <-recs:
			return rec
		case err := <-errs:
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatal("no record within 10 s")
		}
		return Record[string]{}
	}
	stop = func() {
		close(quit)
		cancel()
		<-done
	}
	return next, stop
}
