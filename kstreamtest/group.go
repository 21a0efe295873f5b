package kstreamtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
)

// GroupState is a snapshot of a consumer group as its coordinator sees it.
type GroupState struct {
	Group string
	// State is Kafka's name for the group's state: Empty, PreparingRebalance,
	// CompletingRebalance, Stable or Dead (a group that does not exist).
	State   string
	Members []GroupMember // sorted by ID
}

// GroupMember is one member of a GroupState.
type GroupMember struct {
	ID       string
	ClientID string
	// Topics are the topics the member subscribed to.
	Topics []string
	// Assignment is what the member was assigned, by topic, each list
	// sorted.
	Assignment map[string][]int32
}

// Owner returns the ID of the member that is assigned the partition, or ""
// if none is.
func (g GroupState) Owner(topic string, partition int32) string {
	for _, m := range g.Members {
		if slices.Contains(m.Assignment[topic], partition) {
			return m.ID
		}
	}
	return ""
}

// String describes the group in one line, for failure messages.
func (g GroupState) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "group %q %s with %d member(s)", g.Group, g.State, len(g.Members))
	for i, m := range g.Members {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s (%s) owns %s", m.ID, m.ClientID, fmtAssignment(m.Assignment))
	}
	return b.String()
}

func fmtAssignment(a map[string][]int32) string {
	if len(a) == 0 {
		return "nothing"
	}
	var parts []string
	for _, t := range slices.Sorted(maps.Keys(a)) {
		parts = append(parts, fmt.Sprintf("%s%v", t, a[t]))
	}
	return strings.Join(parts, " ")
}

// DescribeGroup returns the group's state. On the in-process cluster it asks
// kfake directly, without a request, so it works while a broker is stalled or
// requests are failing; on a real cluster it sends DescribeGroups.
func (c *Cluster) DescribeGroup(ctx context.Context, group string) (GroupState, error) {
	if c.fake != nil {
		return fromGroupInfo(group, c.fake.GroupInfo(group)), nil
	}
	described, err := c.admin.DescribeGroups(ctx, group)
	if err != nil {
		return GroupState{}, fmt.Errorf("kstreamtest: describe group %q: %w", group, err)
	}
	d, ok := described[group]
	if !ok || d.Err != nil {
		if !ok || errors.Is(d.Err, kerr.GroupIDNotFound) {
			return GroupState{Group: group, State: "Dead"}, nil
		}
		return GroupState{}, fmt.Errorf("kstreamtest: describe group %q: %w", group, d.Err)
	}
	g := GroupState{Group: group, State: d.State}
	for _, m := range d.Members {
		gm := GroupMember{ID: m.MemberID, ClientID: m.ClientID, Assignment: make(map[string][]int32)}
		if meta, ok := m.Join.AsConsumer(); ok {
			gm.Topics = slices.Clone(meta.Topics)
		}
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range a.Topics {
				gm.Assignment[t.Topic] = slices.Sorted(slices.Values(t.Partitions))
			}
		}
		g.Members = append(g.Members, gm)
	}
	slices.SortFunc(g.Members, func(a, b GroupMember) int { return strings.Compare(a.ID, b.ID) })
	return g, nil
}

func fromGroupInfo(group string, gi *kfake.GroupInfo) GroupState {
	if gi == nil {
		return GroupState{Group: group, State: "Dead"}
	}
	g := GroupState{Group: group, State: gi.State}
	for _, m := range gi.Members {
		gm := GroupMember{
			ID:         m.MemberID,
			ClientID:   m.ClientID,
			Topics:     slices.Clone(m.SubscribedTopics),
			Assignment: make(map[string][]int32, len(m.Assignment)),
		}
		for t, ps := range m.Assignment {
			gm.Assignment[t] = slices.Sorted(slices.Values(ps))
		}
		g.Members = append(g.Members, gm)
	}
	return g
}

// AwaitGroupStable waits until group is Stable with the given number of
// members (any number if members < 0) and every partition of the topics its
// members subscribe to is assigned, and returns its state. The last condition
// matters with the cooperative-sticky balancer, whose rebalance passes through
// a first Stable state with the moving partitions unassigned.
//
// Stable is the coordinator's view: a member's client learns its assignment
// a moment later, so check a stream's Assignment with WaitFor.
//
// It returns an error when ctx is done first, saying what it waited for and
// the group state it saw last.
func (c *Cluster) AwaitGroupStable(ctx context.Context, group string, members int) (GroupState, error) {
	want := fmt.Sprintf("Stable with %d member(s)", members)
	if members < 0 {
		want = "Stable"
	}
	var last GroupState
	var lastErr error
	var unassigned []string
	for {
		g, err := c.DescribeGroup(ctx, group)
		if err == nil {
			last, lastErr = g, nil
			if g.State == "Stable" && (members < 0 || len(g.Members) == members) {
				unassigned, err = c.unassigned(ctx, g)
				if err == nil && len(unassigned) == 0 {
					return g, nil
				}
			}
		}
		if err != nil && ctx.Err() == nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("kstreamtest: group %q not %s with every partition assigned (%v); last seen: %v", group, want, ctx.Err(), last)
			if len(unassigned) > 0 {
				msg += "; unassigned: " + strings.Join(unassigned, " ")
			}
			if lastErr != nil {
				msg += fmt.Sprintf("; last error: %v", lastErr)
			}
			return last, fmt.Errorf("%s", msg)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// unassigned lists the partitions of the group's subscribed topics that no
// member is assigned, as "topic/partition".
func (c *Cluster) unassigned(ctx context.Context, g GroupState) ([]string, error) {
	topics := make(map[string]bool)
	for _, m := range g.Members {
		for _, t := range m.Topics {
			topics[t] = true
		}
	}
	var out []string
	for _, t := range slices.Sorted(maps.Keys(topics)) {
		n, err := c.partitions(ctx, t)
		if err != nil {
			return nil, err
		}
		for p := range n {
			if g.Owner(t, p) == "" {
				out = append(out, fmt.Sprintf("%s/%d", t, p))
			}
		}
	}
	return out, nil
}

// partitions returns how many partitions topic has (0 if it does not exist).
func (c *Cluster) partitions(ctx context.Context, topic string) (int32, error) {
	if c.fake != nil {
		// kfake answers LeaderFor without a request, so this works while a
		// broker is stalled.
		var n int32
		for c.fake.LeaderFor(topic, n) >= 0 {
			n++
		}
		return n, nil
	}
	md, err := c.admin.Metadata(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("kstreamtest: metadata of %q: %w", topic, err)
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil {
		return 0, nil
	}
	return int32(len(td.Partitions)), nil
}

// WaitGroupStable is AwaitGroupStable for tests: it waits at most timeout
// and fails t with what it expected and the group state it last saw.
func (c *Cluster) WaitGroupStable(t testing.TB, group string, members int, timeout time.Duration) GroupState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	g, err := c.AwaitGroupStable(ctx, group, members)
	if err != nil {
		t.Fatalf("after %v: %v", timeout, err)
	}
	return g
}

// WaitFor polls cond every 10ms until it returns true, and fails t if it has
// not after timeout, with "timed out after <timeout> waiting for <what>".
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("kstreamtest: timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
