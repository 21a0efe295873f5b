package kstreamtest_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

func TestLedgerCatchesDuplicate(t *testing.T) {
	var l kstreamtest.Ledger
	for o := range int64(4) {
		l.Add("t", 0, o)
	}
	l.Add("t", 0, 2) // processed again
	if err := l.CheckAtLeastOnce(kstreamtest.Offsets{"t": {0: 4}}); err != nil {
		t.Errorf("CheckAtLeastOnce with every offset processed: %v", err)
	}
	err := l.CheckNoDuplicates()
	if err == nil || !strings.Contains(err.Error(), "1 record(s) processed more than once: t/0@2 (2 times)") {
		t.Errorf("CheckNoDuplicates = %v, want it to name t/0@2", err)
	}
	if l.Count() != 4 || l.Total() != 5 || l.Times("t", 0, 2) != 2 {
		t.Errorf("Count, Total, Times = %d, %d, %d; want 4, 5, 2", l.Count(), l.Total(), l.Times("t", 0, 2))
	}
	r := check(t, func(tb testing.TB) { l.AssertNoDuplicates(tb) })
	wantFailure(t, r, "t/0@2 (2 times)")
	if r.fatal != "" {
		t.Errorf("AssertNoDuplicates stopped the test (%q); it should only report, so that other checks run", r.fatal)
	}
}

func TestLedgerCatchesGap(t *testing.T) {
	var l kstreamtest.Ledger
	for _, o := range []int64{0, 1, 5} {
		l.Add("t", 0, o)
	}
	l.Add("t", 1, 0)
	l.Add("other", 0, 9) // not in produced: not looked at
	produced := kstreamtest.Offsets{"t": {0: 8, 1: 1}}
	err := l.CheckAtLeastOnce(produced)
	if err == nil {
		t.Fatal("CheckAtLeastOnce with offsets 2-4, 6 and 7 missing returned nil")
	}
	for _, want := range []string{"5 produced record(s) never processed", "t/0@2-4", "t/0@6-7"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CheckAtLeastOnce = %v, want it to mention %q", err, want)
		}
	}
	if err := l.CheckNoDuplicates(); err != nil {
		t.Errorf("CheckNoDuplicates: %v", err)
	}
	r := check(t, func(tb testing.TB) { l.AssertAtLeastOnce(tb, produced) })
	wantFailure(t, r, "t/0@2-4")

	// A partition never processed at all is a gap too.
	r = check(t, func(tb testing.TB) { l.AssertAtLeastOnce(tb, kstreamtest.Offsets{"t": {2: 1}}) })
	wantFailure(t, r, "t/2@0")
}

func TestLedgerPasses(t *testing.T) {
	var l kstreamtest.Ledger
	var wg sync.WaitGroup
	for p := range int32(8) { // concurrent members
		wg.Go(func() {
			for o := range int64(100) {
				l.Add("t", p, o)
			}
		})
	}
	wg.Wait()
	produced := kstreamtest.Offsets{"t": {}}
	for p := range int32(8) {
		produced["t"][p] = 100
	}
	r := check(t, func(tb testing.TB) {
		l.AssertAtLeastOnce(tb, produced)
		l.AssertNoDuplicates(tb)
	})
	if r.Failed() {
		t.Errorf("the checks failed on a clean ledger:\n%s", r.messages())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := l.Await(ctx, 800); err != nil {
		t.Error(err)
	}
	r = check(t, func(tb testing.TB) { l.Wait(tb, 801, 50*time.Millisecond) })
	wantFailure(t, r, "800 distinct record(s) processed, want 801")
}

// The commit monitor sees a committed offset go backwards.
func TestCommitMonitor(t *testing.T) {
	const topic = "t"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 2))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	commit := func(group string, p int32, at int64) {
		t.Helper()
		var offs kadm.Offsets
		offs.Add(kadm.Offset{Topic: topic, Partition: p, At: at, LeaderEpoch: -1})
		if _, err := c.Admin().CommitOffsets(ctx, group, offs); err != nil {
			t.Fatal(err)
		}
	}
	seen := func(m *kstreamtest.CommitMonitor, p int32, at int64) {
		t.Helper()
		kstreamtest.WaitFor(t, 5*time.Second, "the monitor to see the commit", func() bool {
			o, ok := m.Seen()[topic][p]
			return ok && o == at
		})
	}

	good := c.MonitorCommits(t, "good")
	for _, at := range []int64{1, 2, 5} {
		commit("good", 0, at)
		seen(good, 0, at)
	}
	commit("good", 1, 3)
	seen(good, 1, 3)
	good.Stop()
	if err := good.CheckMonotonic(); err != nil {
		t.Errorf("CheckMonotonic on commits that only went forward: %v", err)
	}

	bad := c.MonitorCommits(t, "bad")
	commit("bad", 0, 5)
	seen(bad, 0, 5)
	commit("bad", 0, 3)
	seen(bad, 0, 3)
	err := bad.CheckMonotonic()
	if err == nil || !strings.Contains(err.Error(), "t/0 went from 5 back to 3") {
		t.Errorf("CheckMonotonic = %v, want it to report t/0 going from 5 back to 3", err)
	}
	r := check(t, func(tb testing.TB) { bad.AssertMonotonic(tb) })
	wantFailure(t, r, `committed offsets of group "bad" went backwards`)
}

// Track on a HandleBatches stream records every record of each batch.
func TestTrackOnBatches(t *testing.T) {
	const topic = "t"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 2))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kstreamtest.ProduceValues(ctx, c, topic, 2, codec.String(), values(0, 10)...); err != nil {
		t.Fatal(err)
	}
	var ledger kstreamtest.Ledger
	eng := kstreamtest.NewEngine(t, c)
	s := kstreamtest.NewStream(t, c, codec.String(), kstream.Topics(topic), kstream.Group("tb"))
	s.HandleBatches(3, 50*time.Millisecond, func(context.Context, []kstream.Record[string]) error { return nil }, kstreamtest.Track[string](&ledger))
	if err := eng.Add(s); err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c.WaitCaughtUp(t, "tb", 10*time.Second, topic)
	ledger.AssertAtLeastOnce(t, c.Produced(t, topic))
	if n := ledger.Count(); n != 10 {
		t.Fatalf("ledger holds %d records, want 10", n)
	}
}
