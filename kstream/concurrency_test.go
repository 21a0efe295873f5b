package kstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// gauge tracks how many handlers run at once.
type gauge struct{ now, peak atomic.Int32 }

func (g *gauge) enter() {
	n := g.now.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (g *gauge) leave() { g.now.Add(-1) }

// orderLog records, per lane key, the offsets handled in order.
type orderLog struct {
	mu  sync.Mutex
	seq map[string][]int64
	n   int
}

func (o *orderLog) add(key string, off int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seq[key] = append(o.seq[key], off)
	o.n++
}

func (o *orderLog) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n
}

func (o *orderLog) checkIncreasing(t *testing.T) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, offs := range o.seq {
		for i := 1; i < len(offs); i++ {
			if offs[i] <= offs[i-1] {
				t.Fatalf("%s handled out of order: %v", k, offs)
			}
		}
	}
}

func TestPartitionConcurrency(t *testing.T) {
	e := newEnv(t, 4, 80) // 20 per partition
	eng := e.engine()
	var g gauge
	log := &orderLog{seq: map[string][]int64{}}
	eng.Add(e.engineStream(e.topic, "pc", kstream.PartitionConcurrency(3)).Handle(func(_ context.Context, rec kstream.Record[string]) error {
		g.enter()
		defer g.leave()
		time.Sleep(2 * time.Millisecond)
		log.add(fmt.Sprint("partition ", rec.Partition), rec.Offset)
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "80 records handled", func() bool { return log.count() == 80 })
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	log.checkIncreasing(t)
	if p := g.peak.Load(); p < 2 || p > 3 {
		t.Fatalf("at most %d handlers ran at once, want 2 or 3 (bounded by 3)", p)
	}
	e.wantCommitted("pc", map[int32]int64{0: 20, 1: 20, 2: 20, 3: 20})
}

func TestKeyConcurrencyOnOnePartition(t *testing.T) {
	e := newEnv(t, 1, 0)
	var recs []*kgo.Record
	for i := range 40 {
		// 20 keys: lanes are a seeded hash of the key, and with few keys
		// they could all share one lane (5 keys: 1 run in 256).
		recs = append(recs, &kgo.Record{Topic: e.topic, Key: []byte(fmt.Sprint("k", i%20)), Value: []byte(fmt.Sprint(i))})
	}
	if err := e.c.Produce(e.ctx, recs...); err != nil {
		t.Fatal(err)
	}
	eng := e.engine()
	var g gauge
	log := &orderLog{seq: map[string][]int64{}}
	eng.Add(e.engineStream(e.topic, "kc", kstream.KeyConcurrency(4)).Handle(func(_ context.Context, rec kstream.Record[string]) error {
		g.enter()
		defer g.leave()
		time.Sleep(2 * time.Millisecond)
		log.add("key "+string(rec.Key), rec.Offset)
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "40 records handled", func() bool { return log.count() == 40 })
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	log.checkIncreasing(t)
	if p := g.peak.Load(); p < 2 || p > 4 {
		t.Fatalf("peak concurrency %d on one partition, want 2..4", p)
	}
	e.wantCommitted("kc", map[int32]int64{0: 40})
}

// A slow record holds its partition's commit back while later records
// finish; the commit moves on only when it is done.
func TestConcurrencyCommitsBelowLowestUnfinished(t *testing.T) {
	e := newEnv(t, 1, 0)
	var recs []*kgo.Record
	// 40 keys: lanes are a seeded hash of the key, so with 10 keys, in
	// about one run in a hundred fewer than 3 of the 7 records after offset
	// 2 fell outside its lane.
	for i := range 40 {
		recs = append(recs, &kgo.Record{Topic: e.topic, Key: []byte(fmt.Sprint("k", i)), Value: []byte(fmt.Sprint(i))})
	}
	if err := e.c.Produce(e.ctx, recs...); err != nil {
		t.Fatal(err)
	}
	eng := e.engine(kstream.ClientOptions(kgo.AutoCommitInterval(100 * time.Millisecond)))
	release := make(chan struct{})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	var laterDone atomic.Int32 // records after offset 2 handled
	eng.Add(e.engineStream(e.topic, "low", kstream.KeyConcurrency(4)).Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		if rec.Offset == 2 {
			<-release
		}
		if rec.Offset > 2 {
			laterDone.Add(1)
		}
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	// Records with keys in other lanes than offset 2's finish; those in its
	// lane wait behind it.
	eventually(t, 20*time.Second, "records after offset 2 to finish", func() bool { return laterDone.Load() >= 3 })
	eventually(t, 20*time.Second, "the commit to reach 2", func() bool { return e.committed("low")[0] == 2 })
	for range 5 { // several autocommit intervals: it never passes 2
		time.Sleep(120 * time.Millisecond)
		if got := e.committed("low")[0]; got != 2 {
			t.Fatalf("committed %d while offset 2 is unfinished", got)
		}
	}
	releaseOnce.Do(func() { close(release) })
	eventually(t, 20*time.Second, "the commit to reach 40", func() bool { return e.committed("low")[0] == 40 })
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrencyFailureStopsBeforeTheFailedRecord(t *testing.T) {
	e := newEnv(t, 2, 20) // 10 per partition
	eng := e.engine()
	eng.Add(e.engineStream(e.topic, "fail", kstream.PartitionConcurrency(2)).Handle(func(_ context.Context, rec kstream.Record[string]) error {
		if rec.Partition == 0 && rec.Offset == 4 {
			return errBoom
		}
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the crash", func() bool { return state(t, eng, "fail") == kstream.StreamCrashed })
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.committed("fail")[0]; got != 4 {
		t.Fatalf("partition 0 committed %d, want 4: never past the failed record", got)
	}
}

func TestConcurrencyRebalanceNoDuplicates(t *testing.T) {
	const parts, first, total = 6, 300, 600
	e := newEnv(t, parts, first)
	l := &ledger{seen: map[[2]int64]int{}}
	handler := func(_ context.Context, rec kstream.Record[string]) error {
		time.Sleep(time.Millisecond)
		l.add(rec.Partition, rec.Offset)
		return nil
	}
	engA := e.engine(kstream.ClientOptions(kgo.HeartbeatInterval(100 * time.Millisecond)))
	engA.Add(e.engineStream(e.topic, "crb", kstream.Name("a"), kstream.PartitionConcurrency(6)).Handle(handler))
	if err := engA.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a to handle the first records", func() bool { return l.distinct() == first })
	engB := e.engine(kstream.ClientOptions(kgo.HeartbeatInterval(100 * time.Millisecond)))
	engB.Add(e.engineStream(e.topic, "crb", kstream.Name("b"), kstream.KeyConcurrency(4)).Handle(handler))
	if err := engB.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.produce(first, total)
	eventually(t, 30*time.Second, "all records handled", func() bool { return l.distinct() == total })
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

func TestConcurrencyOptions(t *testing.T) {
	e := newEnv(t, 1, 0)
	eng := e.engine()
	s := e.engineStream(e.topic, "f", kstream.PartitionConcurrency(2)).Func(func(context.Context, *kstream.Stream[string]) error { return nil })
	if err := eng.Add(s); !errors.Is(err, kstream.ErrInvalidOption) {
		t.Fatalf("Add of a Func stream with PartitionConcurrency = %v, want ErrInvalidOption", err)
	}
	if _, err := kstream.NewStream(codec.String(), kstream.Topics("a"), kstream.PartitionConcurrency(2), kstream.KeyConcurrency(2)); !errors.Is(err, kstream.ErrInvalidOption) {
		t.Fatalf("both concurrencies: %v", err)
	}
	if _, err := kstream.NewStream(codec.String(), kstream.Topics("a"), kstream.KeyConcurrency(0)); !errors.Is(err, kstream.ErrInvalidOption) {
		t.Fatalf("KeyConcurrency(0): %v", err)
	}
}
