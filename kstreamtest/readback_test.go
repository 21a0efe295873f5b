package kstreamtest_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstreamtest"
)

type item struct {
	N int `json:"n"`
}

func TestWaitRecordsAndReadBack(t *testing.T) {
	const topic = "items"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 3))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var in []item
	for i := range 7 {
		in = append(in, item{i})
	}
	if err := kstreamtest.ProduceValues(ctx, c, topic, 3, codec.JSON[item](), in...); err != nil {
		t.Fatal(err)
	}

	ends := c.WaitRecords(t, topic, 7, 5*time.Second)
	if want := map[int32]int64{0: 3, 1: 2, 2: 2}; !maps.Equal(ends, want) {
		t.Errorf("WaitRecords = %v, want %v", ends, want)
	}
	recs := kstreamtest.ReadRecords(t, c, topic, codec.JSON[item](), 7, 5*time.Second)
	if len(recs) != 7 {
		t.Fatalf("ReadRecords returned %d records, want 7", len(recs))
	}
	// Sorted by partition, then offset: value i is on partition i%3 at
	// offset i/3.
	want := []int{0, 3, 6, 1, 4, 2, 5}
	for i, r := range recs {
		if r.Value.N != want[i] || r.Offset != int64(want[i]/3) || r.Partition != int32(want[i]%3) {
			t.Errorf("record %d = %s/%d@%d %+v, want value %d", i, r.Topic, r.Partition, r.Offset, r.Value, want[i])
		}
	}
	if p := c.Produced(t, topic); !maps.Equal(p[topic], ends) {
		t.Errorf("Produced = %v, want %v", p, ends)
	}
}

func TestWaitRecordsFailsClearly(t *testing.T) {
	const topic = "items"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 2))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kstreamtest.ProduceValues(ctx, c, topic, 2, codec.String(), values(0, 3)...); err != nil {
		t.Fatal(err)
	}
	r := check(t, func(tb testing.TB) { c.WaitRecords(tb, topic, 5, 200*time.Millisecond) })
	wantFailure(t, r, `topic "items" does not hold 5 record(s)`, "after 200ms", "last seen: 3 record(s)", "items[0:2 1:1]")

	r = check(t, func(tb testing.TB) { kstreamtest.ReadRecords(tb, c, topic, codec.String(), 5, 300*time.Millisecond) })
	wantFailure(t, r, `read 3 record(s) of topic "items" in 300ms, want 5`)

	r = check(t, func(tb testing.TB) { kstreamtest.ReadRecords(tb, c, topic, codec.JSON[item](), 1, 5*time.Second) })
	wantFailure(t, r, "decode items/")
}

func TestLagAndCommits(t *testing.T) {
	const topic, group = "t", "g"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 2))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kstreamtest.ProduceValues(ctx, c, topic, 2, codec.String(), values(0, 10)...); err != nil {
		t.Fatal(err)
	}
	commit := func(p int32, at int64) {
		t.Helper()
		var offs kadm.Offsets
		offs.Add(kadm.Offset{Topic: topic, Partition: p, At: at, LeaderEpoch: -1})
		if _, err := c.Admin().CommitOffsets(ctx, group, offs); err != nil {
			t.Fatal(err)
		}
	}

	lag, err := c.Lag(ctx, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	if want := (kstreamtest.Offsets{topic: {0: 5, 1: 5}}); lag.String() != want.String() {
		t.Errorf("Lag before any commit = %v, want %v", lag, want)
	}

	commit(0, 3)
	lag, err = c.Lag(ctx, group) // the topics the group committed on
	if err != nil {
		t.Fatal(err)
	}
	if want := (kstreamtest.Offsets{topic: {0: 2, 1: 5}}); lag.String() != want.String() {
		t.Errorf("Lag = %v, want %v", lag, want)
	}
	if lag.Total() != 7 {
		t.Errorf("Total() = %d, want 7", lag.Total())
	}

	got := c.WaitCommitted(t, group, kstreamtest.Offsets{topic: {0: 3}}, time.Second)
	if !maps.Equal(got[topic], map[int32]int64{0: 3}) {
		t.Errorf("WaitCommitted = %v", got)
	}
	r := check(t, func(tb testing.TB) {
		c.WaitCommitted(tb, group, kstreamtest.Offsets{topic: {0: 4, 1: 1}}, 200*time.Millisecond)
	})
	wantFailure(t, r, `group "g" has not committed`, "t/0 at 3, want 4", "t/1 has no commit, want 1")
	r = check(t, func(tb testing.TB) { c.WaitCaughtUp(tb, group, 200*time.Millisecond, topic) })
	wantFailure(t, r, `group "g" has not caught up on [t]`, "lag: t[0:2 1:5]")

	commit(0, 5)
	commit(1, 5)
	c.WaitCaughtUp(t, group, time.Second, topic)
}
