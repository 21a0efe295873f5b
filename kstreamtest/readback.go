package kstreamtest

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// Offsets are offsets by topic and partition: end offsets, committed offsets
// or lags. The maps Committed returns convert to it as they are.
type Offsets map[string]map[int32]int64

// String formats o as "topic[partition:offset ...]", sorted, for failure
// messages.
func (o Offsets) String() string {
	if len(o) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, t := range slices.Sorted(maps.Keys(o)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(t)
		b.WriteByte('[')
		for j, p := range slices.Sorted(maps.Keys(o[t])) {
			if j > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%d:%d", p, o[t][p])
		}
		b.WriteByte(']')
	}
	return b.String()
}

// Total returns the sum of all offsets in o: with lags, the records left.
func (o Offsets) Total() int64 {
	var n int64
	for _, ps := range o {
		for _, v := range ps {
			n += v
		}
	}
	return n
}

func (o Offsets) set(topic string, p int32, v int64) {
	if o[topic] == nil {
		o[topic] = make(map[int32]int64)
	}
	o[topic][p] = v
}

// listOffsets returns the start or end offsets of every partition of topics,
// failing if a topic does not exist.
func (c *Cluster) listOffsets(ctx context.Context, end bool, topics ...string) (Offsets, error) {
	var (
		resp kadm.ListedOffsets
		err  error
	)
	if end {
		resp, err = c.admin.ListEndOffsets(ctx, topics...)
	} else {
		resp, err = c.admin.ListStartOffsets(ctx, topics...)
	}
	if err != nil {
		return nil, fmt.Errorf("kstreamtest: list offsets of %v: %w", topics, err)
	}
	out := make(Offsets)
	var perr error
	resp.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			perr = fmt.Errorf("kstreamtest: list offsets of %s/%d: %w", o.Topic, o.Partition, o.Err)
			return
		}
		out.set(o.Topic, o.Partition, o.Offset)
	})
	if perr != nil {
		return nil, perr
	}
	for _, t := range topics {
		if len(out[t]) == 0 {
			return nil, fmt.Errorf("kstreamtest: topic %q does not exist", t)
		}
	}
	return out, nil
}

// AwaitRecords waits until topic holds at least n records, counted as the
// sum over its partitions of end offset minus start offset (so transaction
// markers count), and returns its end offsets. It returns an error when ctx
// is done first, with what it saw last.
func (c *Cluster) AwaitRecords(ctx context.Context, topic string, n int64) (map[int32]int64, error) {
	seen := "nothing (no answer yet)"
	for {
		starts, err := c.listOffsets(ctx, false, topic)
		var ends Offsets
		if err == nil {
			ends, err = c.listOffsets(ctx, true, topic)
		}
		switch {
		case err != nil && ctx.Err() != nil:
			// The deadline cut the request short: keep what was seen before.
		case err != nil:
			seen = err.Error()
		default:
			var held int64
			for p, e := range ends[topic] {
				held += e - starts[topic][p]
			}
			if held >= n {
				return ends[topic], nil
			}
			seen = fmt.Sprintf("%d record(s), end offsets %v", held, ends)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("kstreamtest: topic %q does not hold %d record(s) (%v); last seen: %s", topic, n, ctx.Err(), seen)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// WaitRecords is AwaitRecords for tests: it waits at most timeout and fails
// t with how many records it saw.
func (c *Cluster) WaitRecords(t testing.TB, topic string, n int64, timeout time.Duration) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ends, err := c.AwaitRecords(ctx, topic, n)
	if err != nil {
		t.Fatalf("after %v: %v", timeout, err)
	}
	return ends
}

// Produced returns the end offsets of topics: for each partition, the offset
// after its last record, so that every offset below it was produced. It is
// what Ledger.AssertAtLeastOnce checks against. It fails t if a topic does
// not exist.
func (c *Cluster) Produced(t testing.TB, topics ...string) Offsets {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := c.listOffsets(ctx, true, topics...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return ends
}

// ReadRecords reads topic from the start of each partition, with a client of
// its own outside any group, until it has read n records, decoding each value
// with dec. It returns every record it has read by then (at least n; exactly
// n when the topic holds n), sorted by partition and offset. It fails t if
// fewer than n records arrive within timeout, or a value does not decode.
func ReadRecords[T any](t testing.TB, c *Cluster, topic string, dec codec.Decoder[T], n int, timeout time.Duration) []kstream.Record[T] {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(c.brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(250 * time.Millisecond),
	}, c.secure...)...)
	if err != nil {
		t.Fatalf("kstreamtest: ReadRecords: client: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []kstream.Record[T]
	perPartition := make(map[int32]int)
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("kstreamtest: ReadRecords: read %d record(s) of topic %q in %v, want %d (per partition: %v)", len(out), topic, timeout, n, perPartition)
		}
		var rerr error
		fs.EachError(func(_ string, _ int32, err error) {
			if rerr == nil {
				rerr = err
			}
		})
		if rerr != nil {
			t.Logf("kstreamtest: ReadRecords: fetch error (retrying): %v", rerr)
		}
		var derr error
		fs.EachRecord(func(r *kgo.Record) {
			v, err := dec.Decode(r.Value)
			if err != nil && derr == nil {
				derr = fmt.Errorf("kstreamtest: ReadRecords: decode %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			perPartition[r.Partition]++
			out = append(out, kstream.Record[T]{
				Topic:     r.Topic,
				Partition: r.Partition,
				Offset:    r.Offset,
				Key:       r.Key,
				Value:     v,
				Headers:   r.Headers,
				Timestamp: r.Timestamp,
				Raw:       r,
			})
		})
		if derr != nil {
			t.Fatalf("%v", derr)
		}
	}
	slices.SortFunc(out, func(a, b kstream.Record[T]) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	return out
}

// committed returns the group's commits; on the in-process cluster it asks
// kfake directly, so that it works while a broker is stalled.
func (c *Cluster) committed(ctx context.Context, group string) (Offsets, error) {
	if c.fake == nil {
		return c.Committed(ctx, group)
	}
	out := make(Offsets)
	if gi := c.fake.GroupInfo(group); gi != nil {
		for t, ps := range gi.Commits {
			for p, gc := range ps {
				if gc.Offset >= 0 {
					out.set(t, p, gc.Offset)
				}
			}
		}
	}
	return out, nil
}

// Lag returns, for each partition of topics, how many records group has yet
// to commit: the end offset minus the committed offset, or minus the start
// offset for a partition the group never committed. Without topics, it
// covers the topics the group has commits on.
func (c *Cluster) Lag(ctx context.Context, group string, topics ...string) (Offsets, error) {
	committed, err := c.committed(ctx, group)
	if err != nil {
		return nil, err
	}
	if len(topics) == 0 {
		topics = slices.Sorted(maps.Keys(committed))
		if len(topics) == 0 {
			return Offsets{}, nil
		}
	}
	return c.lag(ctx, committed, topics)
}

func (c *Cluster) lag(ctx context.Context, committed Offsets, topics []string) (Offsets, error) {
	starts, err := c.listOffsets(ctx, false, topics...)
	if err != nil {
		return nil, err
	}
	ends, err := c.listOffsets(ctx, true, topics...)
	if err != nil {
		return nil, err
	}
	out := make(Offsets)
	for t, ps := range ends {
		for p, end := range ps {
			from, ok := committed[t][p]
			if !ok {
				from = starts[t][p]
			}
			out.set(t, p, max(end-from, 0))
		}
	}
	return out, nil
}

// AwaitCommitted waits until group has committed, on each partition in want,
// at least the offset given there, and returns the group's commits. It
// returns an error when ctx is done first, naming the partitions behind.
func (c *Cluster) AwaitCommitted(ctx context.Context, group string, want Offsets) (Offsets, error) {
	var last Offsets
	var lastErr error
	for {
		got, err := c.committed(ctx, group)
		switch {
		case err != nil && ctx.Err() != nil:
		case err != nil:
			lastErr = err
		default:
			last = got
			if len(behind(got, want)) == 0 {
				return got, nil
			}
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("kstreamtest: group %q has not committed %v (%v); committed: %v", group, want, ctx.Err(), last)
			if b := behind(last, want); len(b) > 0 {
				msg += "; behind: " + strings.Join(b, ", ")
			}
			if lastErr != nil {
				msg += fmt.Sprintf("; last error: %v", lastErr)
			}
			return last, fmt.Errorf("%s", msg)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// behind lists the partitions of want on which got is lower.
func behind(got, want Offsets) []string {
	var out []string
	for _, t := range slices.Sorted(maps.Keys(want)) {
		for _, p := range slices.Sorted(maps.Keys(want[t])) {
			g, ok := got[t][p]
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("%s/%d has no commit, want %d", t, p, want[t][p]))
			case g < want[t][p]:
				out = append(out, fmt.Sprintf("%s/%d at %d, want %d", t, p, g, want[t][p]))
			}
		}
	}
	return out
}

// WaitCommitted is AwaitCommitted for tests: it waits at most timeout and
// fails t naming the partitions behind.
func (c *Cluster) WaitCommitted(t testing.TB, group string, want Offsets, timeout time.Duration) Offsets {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	got, err := c.AwaitCommitted(ctx, group, want)
	if err != nil {
		t.Fatalf("after %v: %v", timeout, err)
	}
	return got
}

// AwaitCaughtUp waits until group's lag on every partition of topics is zero
// (it has committed up to the end offsets, which are read again on every
// check), and returns its commits. A partition that holds no records needs no
// commit.
func (c *Cluster) AwaitCaughtUp(ctx context.Context, group string, topics ...string) (Offsets, error) {
	if len(topics) == 0 {
		return nil, fmt.Errorf("kstreamtest: AwaitCaughtUp of group %q: no topics given", group)
	}
	var last, lastLag Offsets
	var lastErr error
	for {
		got, err := c.committed(ctx, group)
		var lag Offsets
		if err == nil {
			lag, err = c.lag(ctx, got, topics)
		}
		switch {
		case err != nil && ctx.Err() != nil:
		case err != nil:
			lastErr = err
		default:
			last, lastLag = got, lag
			if lag.Total() == 0 {
				return got, nil
			}
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("kstreamtest: group %q has not caught up on %v (%v); committed: %v; lag: %v", group, topics, ctx.Err(), last, lastLag)
			if lastErr != nil {
				msg += fmt.Sprintf("; last error: %v", lastErr)
			}
			return last, fmt.Errorf("%s", msg)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// WaitCaughtUp is AwaitCaughtUp for tests: it waits at most timeout and fails
// t with the group's commits and lag.
func (c *Cluster) WaitCaughtUp(t testing.TB, group string, timeout time.Duration, topics ...string) Offsets {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	got, err := c.AwaitCaughtUp(ctx, group, topics...)
	if err != nil {
		t.Fatalf("after %v: %v", timeout, err)
	}
	return got
}
