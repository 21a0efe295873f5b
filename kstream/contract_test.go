package kstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/kstream"
)

// Tests of the core contract issue: each failed on the code before its fix.

// handledSet records which offsets of one partition a handler finished.
type handledSet struct {
	mu   sync.Mutex
	done map[int64]int
}

func (h *handledSet) add(off int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.done[off]++
}

func (h *handledSet) has(off int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.done[off] > 0
}

func (h *handledSet) missing(n int64) []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []int64
	for i := range n {
		if h.done[i] == 0 {
			out = append(out, i)
		}
	}
	return out
}

// produceKeyed writes n records with distinct keys to partition 0.
func (e *env) produceKeyed(n int) {
	e.t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: e.topic, Key: []byte(fmt.Sprint("k", i)), Value: []byte(fmt.Sprint(i))}
	}
	if err := e.c.Produce(e.ctx, recs...); err != nil {
		e.t.Fatal(err)
	}
}

// Item A: CommitRecords from KeyConcurrency handlers in ManualCommit mode
// commits only below the lowest unfinished record, so the record that
// failed, and those after it, are delivered again after the restart.
func TestConcurrentCommitRecordsStopsAtLowestUnfinished(t *testing.T) {
	for _, mode := range []struct {
		name string
		opt  kstream.Option
	}{
		{"key", kstream.KeyConcurrency(4)},
		{"partition", kstream.PartitionConcurrency(4)},
	} {
		t.Run(mode.name, func(t *testing.T) {
			const n, bad = 30, 12
			e := newEnv(t, 1, 0)
			e.produceKeyed(n)
			eng := e.engine()
			var s *kstream.Stream[string]
			var failed atomic.Bool
			ok := &handledSet{done: map[int64]int{}}
			s = e.engineStream(e.topic, "cr", kstream.ManualCommit(), mode.opt, kstream.OnError(kstream.ErrorPolicyRestart)).
				Handle(func(ctx context.Context, rec kstream.Record[string]) error {
					if rec.Offset == bad && failed.CompareAndSwap(false, true) {
						// Let later records (other keys) run and commit
						// themselves first, where lanes allow it.
						deadline := time.Now().Add(2 * time.Second)
						for !ok.has(n-1) && time.Now().Before(deadline) && mode.name == "key" {
							time.Sleep(time.Millisecond)
						}
						return errors.New("record 12 fails once")
					}
					if err := s.CommitRecords(ctx, rec); err != nil && !errors.Is(err, kstream.ErrClosed) {
						return err
					}
					ok.add(rec.Offset)
					return nil
				})
			if err := eng.Add(s); err != nil {
				t.Fatal(err)
			}
			if err := eng.Start(e.ctx); err != nil {
				t.Fatal(err)
			}
			eventually(t, 20*time.Second, "every record handled after the restart", func() bool { return len(ok.missing(n)) == 0 })
			if !failed.Load() {
				t.Fatal("record 12 never failed")
			}
		})
	}
}

// Item B: a revoke listener's Commit under PartitionConcurrency or
// KeyConcurrency stops at the failed record, in either commit mode.
func TestConcurrentListenerCommitStopsAtFailedRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []kstream.Option
	}{
		{"manual-partition", []kstream.Option{kstream.ManualCommit(), kstream.Listener(kstream.ManualCommitRebalanceListener{}), kstream.PartitionConcurrency(2)}},
		{"manual-key", []kstream.Option{kstream.ManualCommit(), kstream.Listener(kstream.ManualCommitRebalanceListener{}), kstream.KeyConcurrency(4)}},
		{"default-key", []kstream.Option{kstream.KeyConcurrency(4), kstream.Listener(kstream.ListenerFuncs{
			Revoked: func(ctx context.Context, s kstream.AnyStream, _ map[string][]int32) { _ = s.Commit(ctx) },
		})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n, bad = 30, 12
			e := newEnv(t, 1, 0)
			e.produceKeyed(n)
			eng := e.engine()
			ok := &handledSet{done: map[int64]int{}}
			s := e.engineStream(e.topic, "lc", tc.opts...).Handle(func(_ context.Context, rec kstream.Record[string]) error {
				if rec.Offset == bad {
					// Let later records of other lanes finish first.
					deadline := time.Now().Add(time.Second)
					for !ok.has(n-1) && time.Now().Before(deadline) {
						time.Sleep(time.Millisecond)
					}
					return errors.New("record 12 fails")
				}
				ok.add(rec.Offset)
				return nil
			})
			if err := eng.Add(s); err != nil {
				t.Fatal(err)
			}
			if err := eng.Start(e.ctx); err != nil {
				t.Fatal(err)
			}
			eventually(t, 20*time.Second, "the stream to crash", func() bool { return state(t, eng, "lc") == kstream.StreamCrashed })
			if got := e.committed("lc")[0]; got > bad {
				t.Fatalf("committed %d after record %d failed: the failed record and those after it are lost", got, bad)
			}
		})
	}
}

// Item 1: under PartitionConcurrency a rebalance waits only for the
// handlers running, not for every record queued on the lanes, and no
// record is handled twice across it.
func TestConcurrencyRebalanceDoesNotWaitForQueuedRecords(t *testing.T) {
	const parts, n = 2, 1000
	e := newEnv(t, parts, n)
	l := &ledger{seen: map[[2]int64]int{}}
	handler := func(_ context.Context, rec kstream.Record[string]) error {
		time.Sleep(20 * time.Millisecond)
		l.add(rec.Partition, rec.Offset)
		return nil
	}
	opts := kstream.ClientOptions(kgo.HeartbeatInterval(100*time.Millisecond), kgo.RebalanceTimeout(60*time.Second))
	engA := e.engine(opts)
	engA.Add(e.engineStream(e.topic, "rq", kstream.Name("a"), kstream.PartitionConcurrency(2)).Handle(handler))
	if err := engA.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "a to handle records of both partitions", func() bool { return l.distinct() >= 20 })
	engB := e.engine(opts)
	var assigned atomic.Bool
	b := e.engineStream(e.topic, "rq", kstream.Name("b"), kstream.Listener(kstream.ListenerFuncs{
		Assigned: func(context.Context, kstream.AnyStream, map[string][]int32) { assigned.Store(true) },
	})).Handle(handler)
	engB.Add(b)
	joined := time.Now()
	if err := engB.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	// Before the fix, a's lanes held up to 1000 queued records at 20 ms
	// each (about 10 s per lane) before the group could rebalance.
	eventually(t, 4*time.Second, "b to get a partition while a's lanes hold queued records", assigned.Load)
	t.Logf("b assigned %v after it started", time.Since(joined).Round(time.Millisecond))
	for _, eng := range []*kstream.Engine{engA, engB} {
		if err := eng.Stop(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.dups) > 0 {
		t.Fatalf("%d records handled twice across the rebalance, e.g. %v", len(l.dups), l.dups[0])
	}
}

// Item 16: under KeyConcurrency, keyless records of different partitions
// run in parallel (each partition in order); they all shared one lane.
func TestKeyConcurrencySpreadsKeylessRecordsByPartition(t *testing.T) {
	e := newEnv(t, 4, 8) // keyless, 2 per partition
	eng := e.engine()
	var g gauge
	release := make(chan struct{})
	var once sync.Once
	log := &orderLog{seq: map[string][]int64{}}
	eng.Add(e.engineStream(e.topic, "kl", kstream.KeyConcurrency(4)).Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		g.enter()
		defer g.leave()
		if g.now.Load() >= 2 {
			once.Do(func() { close(release) })
		}
		select {
		case <-release:
		case <-time.After(3 * time.Second):
		}
		log.add(fmt.Sprint("partition ", rec.Partition), rec.Offset)
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "8 records handled", func() bool { return log.count() == 8 })
	if p := g.peak.Load(); p < 2 {
		t.Fatalf("at most %d keyless records ran at once, want them spread over partitions", p)
	}
	log.checkIncreasing(t)
}

// Item 8: kstreams_commits_total counts the commits before a revoke and
// on Close.
func TestCommitsTotalCountsRevokeAndCloseCommits(t *testing.T) {
	e := newEnv(t, 2, 20)
	reg := prometheus.NewRegistry()
	noAuto := kstream.ClientOptions(kgo.AutoCommitInterval(time.Hour))
	a := e.stream(kstream.Group("cc"), kstream.Name("cc-a"), kstream.Metrics(reg), noAuto)
	if err := a.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	take(t, e.ctx, a, 5)
	commits := func() float64 {
		return series(t, reg, "kstreams_commits_total", map[string]string{"stream": "cc-a"})[""]
	}
	if got := commits(); got != 0 {
		t.Fatalf("commits = %v before any commit", got)
	}
	// A second member joins: a's revoke commits what it processed.
	b := e.stream(kstream.Group("cc"), kstream.Name("cc-b"), noAuto)
	if err := b.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(e.ctx)
	go func() {
		for range b.Records(ctx) {
		}
	}()
	defer cancel()
	actx, stopA := context.WithCancel(e.ctx)
	ranged := make(chan struct{})
	go func() {
		defer close(ranged)
		for range a.Records(actx) {
		}
	}()
	eventually(t, 20*time.Second, "a to give a partition to b", func() bool { return len(a.Assignment()[e.topic]) == 1 })
	stopA()
	<-ranged
	if got := commits(); got < 1 {
		t.Fatalf("commits = %v after a revoke that committed", got)
	}
	before := commits()
	t.Logf("commits after revoke: %v", before)
	e.produce(20, 30)
	take(t, e.ctx, a, 2) // one more processed record to commit on Close
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := commits(); got != before+1 {
		t.Fatalf("commits = %v after Close, want %v", got, before+1)
	}
}
