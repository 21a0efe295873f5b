package kstreamtest_test

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// An injected commit failure is what Commit returns; the next commit, with
// the fault used up, succeeds.
func TestFailCommitSeenByCommit(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []kstream.Option
	}{
		{"manual commit", []kstream.Option{kstream.ManualCommit()}},
		{"default mode", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const topic, group = "t", "g"
			c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 1))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := kstreamtest.ProduceValues(ctx, c, topic, 1, codec.String(), values(0, 3)...); err != nil {
				t.Fatal(err)
			}
			s := kstreamtest.NewStream(t, c, codec.String(), append(tc.opts, kstream.Topics(topic), kstream.Group(group),
				kstream.ClientOptions(kgo.AutoCommitInterval(time.Hour)))...)
			if err := s.Open(ctx); err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, err := range s.Records(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				if n++; n == 3 {
					break
				}
			}

			f := c.FailCommit(t, group, kerr.RebalanceInProgress, 1)
			err := s.Commit(ctx)
			if !errors.Is(err, kerr.RebalanceInProgress) {
				t.Fatalf("Commit with a commit fault = %v, want %v", err, kerr.RebalanceInProgress)
			}
			if f.Hits() != 1 {
				t.Errorf("fault hits = %d, want 1", f.Hits())
			}
			if err := s.Commit(ctx); err != nil {
				t.Fatalf("Commit once the fault is used up: %v", err)
			}
			// The third record was broken on and given back: not committed.
			c.WaitCommitted(t, group, kstreamtest.Offsets{topic: {0: 2}}, 5*time.Second)
		})
	}
}

// Fetch faults with a retriable error are retried by franz-go: the stream
// reads everything anyway, after the fault has been hit.
func TestFailFetchIsRetried(t *testing.T) {
	const topic = "t"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 2))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kstreamtest.ProduceValues(ctx, c, topic, 2, codec.String(), values(0, 10)...); err != nil {
		t.Fatal(err)
	}
	f := c.FailFetch(t, topic, kerr.NotLeaderForPartition, 3)
	var ledger kstreamtest.Ledger
	s := kstreamtest.NewStream(t, c, codec.String(), kstream.Topics(topic))
	consume(ctx, s, func(r kstream.Record[string]) { ledger.Add(r.Topic, r.Partition, r.Offset) })
	ledger.Wait(t, 10, 10*time.Second)
	f.WaitHits(t, 3, time.Second)
	ledger.AssertAtLeastOnce(t, c.Produced(t, topic))
}

// A retriable produce error is retried by the producer; a fatal one is
// returned.
func TestFailProduce(t *testing.T) {
	const topic = "t"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	f := c.FailProduce(t, topic, kerr.NotLeaderForPartition, 2)
	if err := c.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte("a")}); err != nil {
		t.Fatalf("Produce through a retriable fault: %v", err)
	}
	if f.Hits() != 2 {
		t.Errorf("retriable fault hits = %d, want 2", f.Hits())
	}

	c.FailProduce(t, "", kerr.MessageTooLarge, 1)
	if err := c.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte("b")}); !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("Produce through a fatal fault = %v, want %v", err, kerr.MessageTooLarge)
	}
	if ends, _ := c.EndOffsets(ctx, topic); !maps.Equal(ends, map[int32]int64{0: 1}) {
		t.Errorf("end offsets %v, want only the first record written", ends)
	}
}

// A failed heartbeat makes the group rebalance: kerr.RebalanceInProgress
// makes the member rejoin, so the group's generation moves on.
func TestFailHeartbeatForcesRebalance(t *testing.T) {
	const topic, group = "t", "g"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 2))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := kstreamtest.NewStream(t, c, codec.String(), kstream.Topics(topic), kstream.Group(group))
	consume(ctx, s, func(kstream.Record[string]) {})
	c.WaitGroupStable(t, group, 1, 10*time.Second)
	before := c.Fake().GroupInfo(group).Epoch

	f := c.FailHeartbeat(t, group, kerr.RebalanceInProgress, 1)
	f.WaitHits(t, 1, 5*time.Second)
	kstreamtest.WaitFor(t, 5*time.Second, "a new generation of the group", func() bool {
		gi := c.Fake().GroupInfo(group)
		return gi.State == "Stable" && gi.Epoch > before
	})
	c.WaitGroupStable(t, group, 1, 10*time.Second)
}

// FailRequests covers any kind of request.
func TestFailRequests(t *testing.T) {
	c := kstreamtest.NewCluster(t, kstreamtest.Topic("t", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := c.FailRequests(t, kmsg.OffsetFetch, kerr.GroupAuthorizationFailed, kstreamtest.UntilHealed)
	for range 2 {
		if _, err := c.Committed(ctx, "g"); !errors.Is(err, kerr.GroupAuthorizationFailed) {
			t.Fatalf("Committed with a fault = %v, want %v", err, kerr.GroupAuthorizationFailed)
		}
	}
	f.Heal()
	if _, err := c.Committed(ctx, "g"); err != nil {
		t.Fatalf("Committed after Heal: %v", err)
	}
	if f.Hits() != 2 {
		t.Errorf("hits = %d, want 2", f.Hits())
	}
}

// A stalled broker answers nothing until healed; the others go on.
func TestStallBroker(t *testing.T) {
	c := kstreamtest.NewCluster(t, kstreamtest.NumBrokers(2))
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ask := func(node int32, d time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		_, err := cl.Broker(int(node)).Request(ctx, kmsg.NewPtrApiVersionsRequest())
		return err
	}
	if err := ask(1, 5*time.Second); err != nil { // learn the brokers
		t.Fatal(err)
	}

	s := c.StallBroker(t, 1)
	if err := ask(1, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request to the stalled broker = %v, want a timeout", err)
	}
	if err := ask(0, 5*time.Second); err != nil {
		t.Fatalf("request to the other broker: %v", err)
	}
	if s.Held() == 0 {
		t.Error("Held() = 0 after a request to the stalled broker")
	}
	s.Heal()
	if err := ask(1, 5*time.Second); err != nil {
		t.Fatalf("request to the healed broker: %v", err)
	}
}

// On a real cluster the fault levers fail the test instead of doing nothing.
func TestFaultLeversNeedInProcessCluster(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "127.0.0.1:1")
	c, err := kstreamtest.Start() // connects lazily: no broker is needed
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.InProcess() {
		t.Fatal("InProcess() with KAFKA_BROKERS set")
	}
	for name, lever := range map[string]func(tb testing.TB){
		"FailFetch":     func(tb testing.TB) { c.FailFetch(tb, "t", kerr.UnknownServerError, 1) },
		"FailProduce":   func(tb testing.TB) { c.FailProduce(tb, "t", kerr.UnknownServerError, 1) },
		"FailCommit":    func(tb testing.TB) { c.FailCommit(tb, "g", kerr.UnknownServerError, 1) },
		"FailHeartbeat": func(tb testing.TB) { c.FailHeartbeat(tb, "g", kerr.UnknownServerError, 1) },
		"FailRequests":  func(tb testing.TB) { c.FailRequests(tb, kmsg.Fetch, kerr.UnknownServerError, 1) },
		"StallBroker":   func(tb testing.TB) { c.StallBroker(tb, 0) },
	} {
		t.Run(name, func(t *testing.T) {
			r := check(t, lever)
			wantFailure(t, r, name+" needs the in-process cluster", "127.0.0.1:1")
		})
	}
}

// A count of 0 is a mistake, not "one request".
func TestFailCountZeroIsAnError(t *testing.T) {
	c := kstreamtest.NewCluster(t)
	r := check(t, func(tb testing.TB) { c.FailCommit(tb, "g", kerr.UnknownServerError, 0) })
	wantFailure(t, r, "count 0")
}
