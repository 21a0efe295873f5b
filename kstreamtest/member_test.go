package kstreamtest_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

func values(from, to int) []string {
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("v%d", i))
	}
	return out
}

func owned(a map[string][]int32, topic string) []int32 { return slices.Sorted(slices.Values(a[topic])) }

// A crashed member sends no LeaveGroup: the group keeps it until its
// session times out, and only then do its partitions move to the other
// member, which processes what was produced to them meanwhile.
func TestCrashedMemberPartitionsMoveAfterSessionTimeout(t *testing.T) {
	const topic, group = "orders", "billing"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 4))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var ledger kstreamtest.Ledger
	s := kstreamtest.NewStream(t, c, codec.String(), kstream.Topics(topic), kstream.Group(group))
	consume(ctx, s, func(r kstream.Record[string]) { ledger.Add(r.Topic, r.Partition, r.Offset) })
	c.WaitGroupStable(t, group, 1, 10*time.Second)

	m := c.AddMember(t, group, []string{topic}, kstreamtest.RecordTo(&ledger))
	g := c.WaitGroupStable(t, group, 2, 10*time.Second)
	kstreamtest.WaitFor(t, 5*time.Second, "the member and the stream to share the partitions", func() bool {
		return len(m.Assignment()[topic]) > 0 && len(s.Assignment()[topic]) > 0 && len(m.Assignment()[topic])+len(s.Assignment()[topic]) == 4
	})
	id := m.ID()
	if g.Owner(topic, m.Assignment()[topic][0]) != id {
		t.Fatalf("group state %v does not show member %s owning %v", g, id, m.Assignment())
	}

	crashed := time.Now()
	m.Crash()
	// No LeaveGroup was sent: the coordinator still counts the member.
	after, err := c.DescribeGroup(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(after.Members, func(gm kstreamtest.GroupMember) bool { return gm.ID == id }) {
		t.Fatalf("right after Crash the crashed member %s is gone from the group (%v): it must not have left", id, after)
	}
	// Records produced now go partly to the crashed member's partitions.
	if err := kstreamtest.ProduceValues(ctx, c, topic, 4, codec.String(), values(0, 40)...); err != nil {
		t.Fatal(err)
	}

	c.WaitGroupStable(t, group, 1, 10*time.Second)
	if took, min := time.Since(crashed), c.SessionTimeout()-300*time.Millisecond; took < min {
		t.Errorf("the crashed member was removed after %v, before its session timed out (%v)", took, c.SessionTimeout())
	}
	kstreamtest.WaitFor(t, 5*time.Second, "the stream to own all 4 partitions", func() bool {
		return slices.Equal(owned(s.Assignment(), topic), []int32{0, 1, 2, 3})
	})
	ledger.Wait(t, 40, 10*time.Second)
	ledger.AssertAtLeastOnce(t, c.Produced(t, topic))
	ledger.AssertNoDuplicates(t)
}

// Leave sends LeaveGroup: the group empties at once, well before the session
// timeout, and what the member processed is committed.
func TestMemberLeaveCommitsAndLeavesAtOnce(t *testing.T) {
	const topic, group = "t", "g"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 2))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kstreamtest.ProduceValues(ctx, c, topic, 2, codec.String(), values(0, 10)...); err != nil {
		t.Fatal(err)
	}
	var ledger kstreamtest.Ledger
	m := c.AddMember(t, group, []string{topic}, kstreamtest.RecordTo(&ledger))
	ledger.Wait(t, 10, 10*time.Second)

	left := time.Now()
	if err := m.Leave(); err != nil {
		t.Fatal(err)
	}
	g, err := c.DescribeGroup(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Members) != 0 {
		t.Errorf("after Leave: %v, want no members", g)
	}
	if took := time.Since(left); took >= c.SessionTimeout() {
		t.Errorf("Leave took %v, as long as a session timeout", took)
	}
	got, err := c.Committed(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int32]int64{0: 5, 1: 5}; !maps.Equal(got[topic], want) {
		t.Errorf("committed %v, want %v", got[topic], want)
	}
	if m.Processed() != 10 {
		t.Errorf("Processed() = %d, want 10", m.Processed())
	}
}

// Crash on a stream built by NewStream cuts its connections before closing
// it: nothing it processed is committed, so the next member processes
// everything again. Leave, on the contrary, commits: nothing is repeated.
func TestCrashStream(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stop     func(t *testing.T, s *kstream.Stream[string])
		wantDups int
	}{
		{"crash", func(t *testing.T, s *kstream.Stream[string]) { kstreamtest.Crash(t, s) }, 10},
		{"leave", func(t *testing.T, s *kstream.Stream[string]) { kstreamtest.Leave(t, s) }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const topic, group = "t", "g"
			c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 2))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := kstreamtest.ProduceValues(ctx, c, topic, 2, codec.String(), values(0, 10)...); err != nil {
				t.Fatal(err)
			}
			var ledger kstreamtest.Ledger
			// No periodic commit during the test: only Close (or a revoke)
			// would commit.
			s := kstreamtest.NewStream(t, c, codec.String(), kstream.Topics(topic), kstream.Group(group),
				kstream.ClientOptions(kgo.AutoCommitInterval(time.Hour)))
			done := consume(ctx, s, func(r kstream.Record[string]) { ledger.Add(r.Topic, r.Partition, r.Offset) })
			ledger.Wait(t, 10, 10*time.Second)

			tc.stop(t, s)
			select {
			case <-done: // the range ended; an error from the cut is allowed
			case <-time.After(10 * time.Second):
				t.Fatal("the stream's range did not end after it stopped")
			}
			got, err := c.Committed(ctx, group)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantDups > 0 && len(got) != 0 {
				t.Fatalf("a crashed stream committed %v", got)
			}

			m := c.AddMember(t, group, []string{topic}, kstreamtest.RecordTo(&ledger))
			c.WaitGroupStable(t, group, 1, 10*time.Second)
			c.WaitCaughtUp(t, group, 10*time.Second, topic)
			ledger.AssertAtLeastOnce(t, c.Produced(t, topic))
			if dups := ledger.Total() - ledger.Count(); dups != tc.wantDups {
				t.Errorf("%d record(s) processed twice, want %d (member processed %d)", dups, tc.wantDups, m.Processed())
			}
		})
	}
}

// A member added to a stream's group takes some of its partitions.
func TestAddMemberTakesPartitions(t *testing.T) {
	const topic, group = "t", "g"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 4))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := kstreamtest.NewStream(t, c, codec.String(), kstream.Topics(topic), kstream.Group(group))
	consume(ctx, s, func(kstream.Record[string]) {})
	c.WaitGroupStable(t, group, 1, 10*time.Second)
	kstreamtest.WaitFor(t, 5*time.Second, "the stream to own all 4 partitions", func() bool {
		return len(s.Assignment()[topic]) == 4
	})

	m := c.AddMember(t, group, []string{topic})
	g := c.WaitGroupStable(t, group, 2, 10*time.Second)
	kstreamtest.WaitFor(t, 5*time.Second, "the partitions to be split 2 and 2", func() bool {
		return len(s.Assignment()[topic]) == 2 && len(m.Assignment()[topic]) == 2
	})
	for _, p := range m.Assignment()[topic] {
		if g.Owner(topic, p) != m.ID() {
			t.Errorf("partition %d: member owns it, group state says %q owns it (%v)", p, g.Owner(topic, p), g)
		}
	}
}

// WaitGroupStable's failure says what it waited for and what it saw.
func TestWaitGroupStableFailsClearly(t *testing.T) {
	const topic, group = "t", "g"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 2))
	c.AddMember(t, group, []string{topic})
	c.WaitGroupStable(t, group, 1, 10*time.Second)
	r := check(t, func(tb testing.TB) { c.WaitGroupStable(tb, group, 2, 300*time.Millisecond) })
	wantFailure(t, r, `group "g" not Stable with 2 member(s)`, "after 300ms", "Stable with 1 member(s)", "owns t[0 1]")
}
