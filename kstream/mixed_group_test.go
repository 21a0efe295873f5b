package kstream_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// classicStream is e.stream on the classic group protocol whatever
// KSTREAM_GROUP_PROTOCOL says: members of other clients join classic groups
// (kfake cannot mix classic and KIP-848 members in one group).
func (e *env) classicStream(opts ...kstream.Option) *kstream.Stream[string] {
	e.t.Helper()
	base := []kstream.Option{
		kstream.Brokers(e.c.Brokers()...),
		kstream.Topics(e.topic),
		kstream.Logger(testLogger(e.t)),
		kstream.ClientOptions(kgo.HeartbeatInterval(100*time.Millisecond), kgo.FetchMaxWait(200*time.Millisecond)),
	}
	s, err := kstream.NewStream(codec.String(), append(base, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// kafkajsRoundRobin is what kafkajs's default assigner offers: a round robin
// named RoundRobinAssigner, whose subscription says version 1 but carries
// only the version 0 fields (no owned partitions).
type kafkajsRoundRobin struct{ kgo.GroupBalancer }

func (kafkajsRoundRobin) ProtocolName() string { return "RoundRobinAssigner" }

func (kafkajsRoundRobin) JoinGroupMetadata(topics []string, _ map[string][]int32, _ int32) []byte {
	b := binary.BigEndian.AppendUint16(nil, 1) // version
	b = binary.BigEndian.AppendUint32(b, uint32(len(topics)))
	for _, t := range topics {
		b = binary.BigEndian.AppendUint16(b, uint16(len(t)))
		b = append(b, t...)
	}
	return binary.BigEndian.AppendUint32(b, 0) // empty user data
}

// groupProtocolName returns the protocol (assignor) the coordinator chose
// for group.
func groupProtocolName(t *testing.T, c *kstreamtest.Cluster, group string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := c.Admin().DescribeGroups(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	return d[group].Protocol
}

// A stream with the default balancers shares a group with a member of each
// other client's default assignors: aiokafka (roundrobin), librdkafka
// (range, roundrobin), Java (range, cooperative-sticky), kafkajs
// (RoundRobinAssigner), and another franz-go program (cooperative-sticky).
// Both members get partitions and consume, the group runs the protocol
// docs/interop.md names, no record is lost or processed twice, and once the
// other member has left, the stream's group is cooperative again (or still).
func TestDefaultBalancersShareGroup(t *testing.T) {
	for _, tc := range []struct {
		name      string
		balancers []kgo.GroupBalancer
		want      []string // the protocols the coordinator may choose
	}{
		{"aiokafka", []kgo.GroupBalancer{kgo.RoundRobinBalancer()}, []string{"roundrobin"}},
		{"librdkafka", []kgo.GroupBalancer{kgo.RangeBalancer(), kgo.RoundRobinBalancer()}, []string{"range"}},
		// One vote each: the coordinator may pick either.
		{"java", []kgo.GroupBalancer{kgo.RangeBalancer(), kgo.CooperativeStickyBalancer()}, []string{"range", "cooperative-sticky"}},
		{"kafkajs", []kgo.GroupBalancer{kafkajsRoundRobin{kgo.RoundRobinBalancer()}}, []string{"RoundRobinAssigner"}},
		{"franz-go", []kgo.GroupBalancer{kgo.CooperativeStickyBalancer()}, []string{"cooperative-sticky"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const parts = 4
			e := newEnv(t, parts, 0)
			group := "g-" + tc.name
			var all kstreamtest.Ledger
			m := e.c.AddMember(t, group, []string{e.topic}, kstreamtest.RecordTo(&all), kstreamtest.MemberClientOptions(kgo.Balancers(tc.balancers...)))
			e.c.WaitGroupStable(t, group, 1, 20*time.Second)

			s := e.classicStream(kstream.Group(group))
			ctx, cancel := context.WithCancel(e.ctx)
			defer cancel()
			var ours atomic.Int64
			loopDone := make(chan error, 1)
			go func() {
				for rec, err := range s.Records(ctx) {
					if err != nil {
						loopDone <- err
						return
					}
					all.Add(rec.Topic, rec.Partition, rec.Offset)
					ours.Add(1)
				}
				loopDone <- nil
			}()
			st := e.c.WaitGroupStable(t, group, 2, 20*time.Second)
			for _, gm := range st.Members {
				if len(gm.Assignment[e.topic]) == 0 {
					t.Fatalf("a member of the shared group owns nothing: %s", st)
				}
			}
			got := groupProtocolName(t, e.c, group)
			t.Logf("the group with a %s member runs %q", tc.name, got)
			if !slices.Contains(tc.want, got) {
				t.Errorf("the group runs %q, want one of %q", got, tc.want)
			}
			kstreamtest.WaitFor(t, 10*time.Second, "the stream to learn its assignment", func() bool { return len(s.Assignment()[e.topic]) > 0 })
			e.produce(0, 400)
			all.Wait(t, 400, 20*time.Second)
			if m.Processed() == 0 || ours.Load() == 0 {
				t.Errorf("while sharing, the %s member processed %d records and the stream %d; want both > 0", tc.name, m.Processed(), ours.Load())
			}

			if err := m.Leave(); err != nil {
				t.Fatalf("the %s member leaving: %v", tc.name, err)
			}
			e.c.WaitGroupStable(t, group, 1, 20*time.Second)
			kstreamtest.WaitFor(t, 10*time.Second, "the stream to own every partition", func() bool { return len(s.Assignment()[e.topic]) == parts })
			if got := groupProtocolName(t, e.c, group); got != "cooperative-sticky" {
				t.Errorf("with only the stream left, the group runs %q, want cooperative-sticky", got)
			}
			e.produce(400, 800)
			all.Wait(t, 800, 20*time.Second)
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if err := <-loopDone; err != nil {
				t.Errorf("the stream's range: %v", err)
			}
			all.AssertAtLeastOnce(t, e.c.Produced(t, e.topic))
			all.AssertNoDuplicates(t)
		})
	}
}

// joinCounter counts the JoinGroup requests for group that reach the
// in-process cluster.
type joinCounter struct {
	mu    sync.Mutex
	joins int
}

func countJoins(t *testing.T, c *kstreamtest.Cluster, group string) *joinCounter {
	t.Helper()
	fake := c.Fake()
	if fake == nil {
		t.Fatal("this test counts requests and needs the in-process cluster; unset KAFKA_BROKERS")
	}
	jc := &joinCounter{}
	fake.ControlKey(kmsg.JoinGroup.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		fake.KeepControl()
		if req.(*kmsg.JoinGroupRequest).Group == group {
			jc.mu.Lock()
			jc.joins++
			jc.mu.Unlock()
		}
		return nil, nil, false
	})
	return jc
}

func (jc *joinCounter) count() int {
	jc.mu.Lock()
	defer jc.mu.Unlock()
	return jc.joins
}

// Balancers given in ClientOptions replace the default ones: a stream told
// to offer only cooperative-sticky cannot join a group of roundrobin
// members, and its range yields one fatal *FetchError wrapping
// INCONSISTENT_GROUP_PROTOCOL. After that the stream's client stops
// joining (before, it retried until Close, logging each
// failure); the stream is still open, Close works, and opening it again
// joins.
func TestFatalGroupErrorStopsJoining(t *testing.T) {
	e := newEnv(t, 2, 10)
	const group = "g-inconsistent"
	m := e.c.AddMember(t, group, []string{e.topic}, kstreamtest.MemberClientOptions(kgo.Balancers(kgo.RoundRobinBalancer())))
	e.c.WaitGroupStable(t, group, 1, 20*time.Second)
	jc := countJoins(t, e.c, group)

	s := e.classicStream(kstream.Group(group), kstream.ClientOptions(
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		// Retries come fast, so that a client that keeps joining shows.
		kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }),
	))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var errs []error
	for rec, err := range s.Records(e.ctx) {
		if err == nil {
			t.Fatalf("yielded record %d from a group it could not join", rec.Offset)
		}
		errs = append(errs, err)
	}
	var fe *kstream.FetchError
	if len(errs) != 1 || !errors.As(errs[0], &fe) || !fe.Fatal || !errors.Is(fe, kerr.InconsistentGroupProtocol) {
		t.Fatalf("the range yielded %v, want one fatal *FetchError wrapping INCONSISTENT_GROUP_PROTOCOL", errs)
	}

	before := jc.count()
	// 50 retry backoffs: a client still trying joins many times meanwhile;
	// one join may have been in flight when the error was yielded.
	time.Sleep(time.Second)
	if after := jc.count(); after > before+1 {
		t.Errorf("the stream's client joined %d more time(s) in the second after the fatal error was yielded; want none", after-before)
	}
	if st := e.c.WaitGroupStable(t, group, 1, 10*time.Second); st.Members[0].ID != m.ID() {
		t.Errorf("the group is %s, want only the roundrobin member", st)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after the fatal error: %v", err)
	}
	t.Logf("JoinGroup requests for the group until the fatal error: %d", before)

	// Once the roundrobin member is gone (it consumed the first records),
	// opening the stream again joins.
	if err := m.Leave(); err != nil {
		t.Fatal(err)
	}
	e.produce(10, 20)
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := take(t, e.ctx, s, 10); len(got) != 10 {
		t.Fatalf("the reopened stream read %d records, want 10", len(got))
	}
}

// The tests' streams run the group protocol make test-kip848 asks for: with
// KSTREAM_GROUP_PROTOCOL=consumer, ClientOptions(kgo.ServerSideBalancer())
// on the default balancers makes the client speak KIP-848's
// ConsumerGroupHeartbeat and never JoinGroup (franz-go falls back to the
// classic protocol, silently, when the first balancer is neither sticky nor
// range); without it, the classic JoinGroup.
func TestStreamsRunTheChosenGroupProtocol(t *testing.T) {
	e := newEnv(t, 2, 4)
	fake := e.c.Fake()
	if fake == nil {
		t.Fatal("this test counts requests and needs the in-process cluster; unset KAFKA_BROKERS")
	}
	const group = "g-protocol"
	var joins, heartbeats atomic.Int64
	fake.ControlKey(kmsg.JoinGroup.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		fake.KeepControl()
		if req.(*kmsg.JoinGroupRequest).Group == group {
			joins.Add(1)
		}
		return nil, nil, false
	})
	fake.ControlKey(kmsg.ConsumerGroupHeartbeat.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		fake.KeepControl()
		if req.(*kmsg.ConsumerGroupHeartbeatRequest).Group == group {
			heartbeats.Add(1)
		}
		return nil, nil, false
	})
	s := e.stream(kstream.Group(group))
	take(t, e.ctx, s, 4)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	consumer := os.Getenv("KSTREAM_GROUP_PROTOCOL") == "consumer"
	t.Logf("KSTREAM_GROUP_PROTOCOL=%q: %d JoinGroup, %d ConsumerGroupHeartbeat", os.Getenv("KSTREAM_GROUP_PROTOCOL"), joins.Load(), heartbeats.Load())
	if consumer && (joins.Load() != 0 || heartbeats.Load() == 0) {
		t.Errorf("under the consumer protocol the stream sent %d JoinGroup and %d ConsumerGroupHeartbeat requests; want none and some", joins.Load(), heartbeats.Load())
	}
	if !consumer && (joins.Load() == 0 || heartbeats.Load() != 0) {
		t.Errorf("under the classic protocol the stream sent %d JoinGroup and %d ConsumerGroupHeartbeat requests; want some and none", joins.Load(), heartbeats.Load())
	}
}

// A group of streams runs cooperative-sticky; an aiokafka-compatible member
// (roundrobin only) joining while records flow downgrades it to eager
// roundrobin. No record is lost. Records may be processed twice in that
// one rebalance (docs/interop.md): the new member is assigned partitions
// the stream gives up only after the join, and starts from the last
// commit; the test reports how many, with franz-go's commit interval (5 s)
// and with 200 ms.
func TestDowngradeToEagerLosesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []kstream.Option
	}{
		{"default-interval", nil},
		{"interval-200ms", []kstream.Option{kstream.ClientOptions(kgo.AutoCommitInterval(200 * time.Millisecond))}},
	} {
		t.Run(tc.name, func(t *testing.T) { testDowngrade(t, tc.opts...) })
	}
}

func testDowngrade(t *testing.T, opts ...kstream.Option) {
	const parts = 4
	e := newEnv(t, parts, 0)
	const group = "g-downgrade"
	var all kstreamtest.Ledger
	s := e.classicStream(append([]kstream.Option{kstream.Group(group)}, opts...)...)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	loopDone := make(chan error, 1)
	go func() {
		for rec, err := range s.Records(ctx) {
			if err != nil {
				loopDone <- err
				return
			}
			all.Add(rec.Topic, rec.Partition, rec.Offset)
			time.Sleep(time.Millisecond) // a handler's work: records are in flight at the join
		}
		loopDone <- nil
	}()
	e.c.WaitGroupStable(t, group, 1, 20*time.Second)
	if got := groupProtocolName(t, e.c, group); got != "cooperative-sticky" {
		t.Fatalf("a group of one stream runs %q, want cooperative-sticky", got)
	}

	var produced atomic.Int64
	stop := make(chan struct{})
	prodDone := make(chan struct{})
	go func() {
		defer close(prodDone)
		for i := 0; ; i += 8 {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			e.produce(i, i+8)
			produced.Store(int64(i + 8))
		}
	}()
	eventually(t, 10*time.Second, "the stream to consume", func() bool { return all.Count() > 50 })
	m := e.c.AddMember(t, group, []string{e.topic}, kstreamtest.RecordTo(&all), kstreamtest.MemberClientOptions(kgo.Balancers(kgo.RoundRobinBalancer())))
	e.c.WaitGroupStable(t, group, 2, 20*time.Second)
	if got := groupProtocolName(t, e.c, group); got != "roundrobin" {
		t.Errorf("after the roundrobin member joined the group runs %q, want roundrobin", got)
	}
	before := m.Processed()
	eventually(t, 10*time.Second, "the roundrobin member to consume", func() bool { return m.Processed() > before+20 })
	close(stop)
	<-prodDone
	all.Wait(t, int(produced.Load()), 30*time.Second)
	e.c.WaitCaughtUp(t, group, 20*time.Second, e.topic)
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-loopDone; err != nil {
		t.Errorf("the stream's range: %v", err)
	}
	all.AssertAtLeastOnce(t, e.c.Produced(t, e.topic))
	t.Logf("%d records; %d processed twice across the downgrade", produced.Load(), all.Total()-all.Count())
}

// kgo.Balancers in ClientOptions replaces the default balancers: a group of
// one stream told range runs range, not cooperative-sticky.
func TestClientOptionsBalancersReplaceDefaults(t *testing.T) {
	e := newEnv(t, 2, 4)
	s := e.classicStream(kstream.Group("g-range"), kstream.ClientOptions(kgo.Balancers(kgo.RangeBalancer())))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	take(t, e.ctx, s, 4)
	if got := groupProtocolName(t, e.c, "g-range"); got != "range" {
		t.Errorf("the group runs %q, want range", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
