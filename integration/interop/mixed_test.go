//go:build interop

package interop

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// groupProtocol returns the protocol (assignor) the coordinator chose for
// group.
func groupProtocol(t *testing.T, c *kstreamtest.Cluster, group string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := c.Admin().DescribeGroups(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	return d[group].Protocol
}

// producer writes v<i> to partition i%parts, in order, a few records every
// few milliseconds, until stopped.
type producer struct {
	n    atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func startProducer(t *testing.T, c *kstreamtest.Cluster, topic string, parts int) *producer {
	p := &producer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for i := 0; ; {
			select {
			case <-p.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			recs := make([]*kgo.Record, 0, 8)
			for range 8 {
				recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % parts), Value: []byte(fmt.Sprintf("v%d", i))})
				i++
			}
			if err := c.Produce(context.Background(), recs...); err != nil {
				t.Errorf("produce: %v", err)
				return
			}
			p.n.Store(int64(i))
		}
	}()
	t.Cleanup(p.halt)
	return p
}

// halt stops the producer and returns how many records it wrote.
func (p *producer) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// streamMember runs a stream of group on topic in a range of its own, adding
// what it processes to ledger.
type streamMember struct {
	s    *kstream.Stream[string]
	n    atomic.Int64
	err  error
	loop sync.WaitGroup
}

func startStream(t *testing.T, c *kstreamtest.Cluster, group, topic string, parts int, ledger *kstreamtest.Ledger) *streamMember {
	sm := &streamMember{s: kstreamtest.NewStream(t, c, codec.String(), kstream.Topics(topic), kstream.Group(group))}
	sm.loop.Go(func() {
		for rec, err := range sm.s.Records(t.Context()) {
			if err != nil {
				sm.err = err
				return
			}
			if want := fmt.Sprintf("v%d", int(rec.Offset)*parts+int(rec.Partition)); rec.Value != want {
				t.Errorf("stream read %d@%d = %q, want %q", rec.Partition, rec.Offset, rec.Value, want)
			}
			ledger.Add(rec.Topic, rec.Partition, rec.Offset)
			sm.n.Add(1)
		}
	})
	return sm
}

// leave closes the stream (it commits and leaves the group) and checks its
// range ended without an error.
func (sm *streamMember) leave(t *testing.T) {
	t.Helper()
	if err := sm.s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	sm.loop.Wait()
	if sm.err != nil {
		t.Errorf("the stream's range: %v", sm.err)
	}
}

// A stream with the default balancers shares a group with an
// aiokafka-compatible member (a franz-go client offering only roundrobin,
// committing what it processed before a revoke and when it leaves) and a
// kcat member (librdkafka's defaults: range, roundrobin), while a producer
// writes all along. The group runs roundrobin, eagerly, and every member
// gets partitions. Then, each gracefully while records flow: kcat leaves
// (after a set number of messages), the stream leaves, a second stream
// joins, the aiokafka member leaves, and the stream, alone, runs
// cooperative-sticky again. Every record is processed, and none twice.
func TestMixedGroupAiokafkaKcatStream(t *testing.T) {
	kcat(t)
	const parts = 6
	const topic, group = "mixed", "g-mixed"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, parts))
	var all kstreamtest.Ledger

	// The aiokafka-compatible member first, then a producer, then the others
	// join while records flow.
	aio := c.AddMember(t, group, []string{topic}, kstreamtest.RecordTo(&all), kstreamtest.MemberClientOptions(kgo.Balancers(kgo.RoundRobinBalancer())))
	c.WaitGroupStable(t, group, 1, 20*time.Second)
	prod := startProducer(t, c, topic, parts)
	s1 := startStream(t, c, group, topic, parts, &all)
	c.WaitGroupStable(t, group, 2, 20*time.Second)

	// kcat leaves by itself, gracefully, after kcatCount messages: stopped
	// by a signal while records flow it may lose one (see stop).
	const kcatCount = 120
	k := startKcat(t, c, group, topic, parts, &all, []string{"-c", fmt.Sprint(kcatCount)})
	st := c.WaitGroupStable(t, group, 3, 20*time.Second)
	for _, m := range st.Members {
		if len(m.Assignment[topic]) == 0 {
			t.Fatalf("a member of the mixed group owns nothing: %s", st)
		}
	}
	if got := groupProtocol(t, c, group); got != "roundrobin" {
		t.Errorf("the mixed group runs %q, want roundrobin (the one protocol all three offer)", got)
	}
	// progress waits until each member named has processed more.
	progress := func(what string, counters ...func() int64) {
		t.Helper()
		before := make([]int64, len(counters))
		for i, f := range counters {
			before[i] = f()
		}
		kstreamtest.WaitFor(t, 20*time.Second, what, func() bool {
			for i, f := range counters {
				if f() <= before[i] {
					return false
				}
			}
			return true
		})
	}
	progress("the aiokafka member and the stream to consume while the group is shared", aio.Processed, s1.n.Load)

	kstreamtest.WaitFor(t, 30*time.Second, "kcat to leave after its last message", k.exited)
	k.stop(t)
	if got := k.consumed(); got != kcatCount {
		t.Errorf("kcat consumed %d messages, want %d", got, kcatCount)
	}
	c.WaitGroupStable(t, group, 2, 20*time.Second)
	progress("the aiokafka member and the stream to consume after kcat left", aio.Processed, s1.n.Load)

	s1.leave(t)
	c.WaitGroupStable(t, group, 1, 20*time.Second)
	progress("the aiokafka member to consume alone", aio.Processed)

	s2 := startStream(t, c, group, topic, parts, &all)
	c.WaitGroupStable(t, group, 2, 20*time.Second)
	progress("the aiokafka member and a second stream to consume", aio.Processed, s2.n.Load)

	if err := aio.Leave(); err != nil {
		t.Fatalf("the aiokafka member leaving: %v", err)
	}
	c.WaitGroupStable(t, group, 1, 20*time.Second)
	kstreamtest.WaitFor(t, 10*time.Second, "the stream to own every partition", func() bool { return len(s2.s.Assignment()[topic]) == parts })
	if got := groupProtocol(t, c, group); got != "cooperative-sticky" {
		t.Errorf("with only the stream left, the group runs %q, want cooperative-sticky", got)
	}
	progress("the stream to consume alone", s2.n.Load)

	prod.halt()
	n := int(prod.n.Load())
	wctx, wcancel := context.WithTimeout(t.Context(), 30*time.Second)
	if err := all.Await(wctx, n); err != nil {
		t.Errorf("%v", err) // the ledger checks below say which
	} else {
		c.WaitCaughtUp(t, group, 20*time.Second, topic)
	}
	wcancel()
	s2.leave(t)
	all.AssertAtLeastOnce(t, c.Produced(t, topic))
	all.AssertNoDuplicates(t)
	t.Logf("%d records: the aiokafka member processed %d, kcat %d, the first stream %d, the second %d",
		n, aio.Processed(), k.consumed(), s1.n.Load(), s2.n.Load())
	if k.stderr.Len() > 0 {
		t.Logf("kcat stderr:\n%s", k.stderr.String())
	}
}
