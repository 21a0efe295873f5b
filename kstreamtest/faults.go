package kstreamtest

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// UntilHealed, as the count of a Fail lever, fails every matching request
// until Heal is called.
const UntilHealed = -1

// Fault is a fault injected into the in-process cluster: matching requests
// are answered with a Kafka error instead of being served. It is removed when
// it has failed its count of requests, when Heal is called, or when the test
// ends. Its methods are safe for concurrent use.
type Fault struct {
	what string
	h    *kfake.FaultHandle
}

// requireFake fails t when the cluster is not the in-process one: faults
// and stalls are kfake hooks, and a test that relies on one must not pass
// silently without it.
func (c *Cluster) requireFake(t testing.TB, lever string) {
	t.Helper()
	if c.fake == nil {
		t.Fatalf("kstreamtest: %s needs the in-process cluster, but this test runs against the cluster in KAFKA_BROKERS (%s); skip it there with: if !c.InProcess() { t.Skip(...) }",
			lever, strings.Join(c.brokers, ","))
	}
}

// Inject installs a kfake fault as it is, for what the Fail levers do not
// cover (a partition, a node, a When filter), and removes it when t ends. It
// fails t on a real cluster.
func (c *Cluster) Inject(t testing.TB, f kfake.Fault) *Fault {
	t.Helper()
	c.requireFake(t, "Inject")
	return c.inject(t, "fault", f)
}

func (c *Cluster) inject(t testing.TB, what string, f kfake.Fault) *Fault {
	flt := &Fault{what: what, h: c.fake.Fault(f)}
	t.Cleanup(flt.Heal)
	return flt
}

// failN checks a Fail lever's count and converts it to kfake's.
func failN(t testing.TB, lever string, n int) int {
	t.Helper()
	if n == 0 || n < UntilHealed {
		t.Fatalf("kstreamtest: %s: count %d: want a number of requests > 0, or UntilHealed", lever, n)
	}
	return n
}

// FailRequests makes the next n requests of the given kind (kmsg.Fetch,
// kmsg.OffsetCommit, ...) to any broker fail with err, or every one until
// Heal if n is UntilHealed. Requests that carry topics, partitions or groups
// get err on each of them. It fails t on a real cluster.
func (c *Cluster) FailRequests(t testing.TB, key kmsg.Key, err *kerr.Error, n int) *Fault {
	t.Helper()
	c.requireFake(t, "FailRequests")
	return c.inject(t, key.Name()+" requests", kfake.Fault{
		Keys:  []kmsg.Key{key},
		Err:   err,
		Count: failN(t, "FailRequests", n),
	})
}

// FailFetch makes the next n fetch requests that read topic (any topic if
// topic is "") fail with err on the partitions of that topic. franz-go
// retries retriable errors (kerr.NotLeaderForPartition, for instance) by
// itself after a metadata refresh, so the consumer sees only a delay. It
// fails t on a real cluster.
func (c *Cluster) FailFetch(t testing.TB, topic string, err *kerr.Error, n int) *Fault {
	t.Helper()
	c.requireFake(t, "FailFetch")
	return c.inject(t, "fetch requests", kfake.Fault{
		Keys:  []kmsg.Key{kmsg.Fetch},
		Topic: topic,
		Err:   err,
		Count: failN(t, "FailFetch", n),
	})
}

// FailProduce makes the next n produce requests that write to topic (any
// topic if topic is "") fail with err. The kit's own Produce helpers go
// through the faults too. It fails t on a real cluster.
func (c *Cluster) FailProduce(t testing.TB, topic string, err *kerr.Error, n int) *Fault {
	t.Helper()
	c.requireFake(t, "FailProduce")
	return c.inject(t, "produce requests", kfake.Fault{
		Keys:  []kmsg.Key{kmsg.Produce},
		Topic: topic,
		Err:   err,
		Count: failN(t, "FailProduce", n),
	})
}

// FailCommit makes the next n offset commits of group (of any group if group
// is "") fail with err on every partition they commit. A stream's Commit
// returns the error; franz-go retries only the coordinator errors
// (kerr.CoordinatorNotAvailable, kerr.NotCoordinator,
// kerr.CoordinatorLoadInProgress) by itself. It fails t on a real cluster.
func (c *Cluster) FailCommit(t testing.TB, group string, err *kerr.Error, n int) *Fault {
	t.Helper()
	c.requireFake(t, "FailCommit")
	return c.inject(t, "offset commits", kfake.Fault{
		Keys:  []kmsg.Key{kmsg.OffsetCommit},
		Group: group,
		Err:   err,
		Count: failN(t, "FailCommit", n),
	})
}

// FailHeartbeat makes the next n heartbeats of group's members (of any
// group if group is "") fail with err. kerr.RebalanceInProgress makes the
// members rejoin, a rebalance without a membership change;
// kerr.UnknownMemberID makes a member drop its partitions (they are lost,
// not revoked) and join again as a new member. Both classic heartbeats and
// KIP-848 ConsumerGroupHeartbeat requests match. It fails t on a real
// cluster.
func (c *Cluster) FailHeartbeat(t testing.TB, group string, err *kerr.Error, n int) *Fault {
	t.Helper()
	c.requireFake(t, "FailHeartbeat")
	return c.inject(t, "heartbeats", kfake.Fault{
		Keys:  []kmsg.Key{kmsg.Heartbeat, kmsg.ConsumerGroupHeartbeat},
		Group: group,
		Err:   err,
		Count: failN(t, "FailHeartbeat", n),
	})
}

// Heal removes the fault: requests are served again. It is idempotent.
func (f *Fault) Heal() { f.h.Remove() }

// Hits returns how many requests the fault has failed so far.
func (f *Fault) Hits() int { return f.h.Hits() }

// WaitHits waits until the fault has failed at least n requests, so that a
// test knows the client under test met it, and fails t if that takes longer
// than timeout.
func (f *Fault) WaitHits(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := f.h.Wait(ctx, n); err != nil {
		t.Fatalf("kstreamtest: the fault on %s failed %d request(s) in %v, want %d", f.what, f.Hits(), timeout, n)
	}
}

// Stall holds every request to a broker unanswered, as a broker that hangs
// (a long GC pause, a full disk, a network partition that drops packets)
// does. Clients see requests time out, not errors. Its methods are safe for
// concurrent use.
type Stall struct {
	healed   chan struct{}
	healOnce sync.Once
	held     atomic.Int64
}

// StallBroker stalls the broker with the given node ID (0 to NumBrokers-1;
// a negative node stalls every broker) until Heal, or the end of the test.
// Requests already held are then served. Everything that talks to the
// broker stalls, the kit's own Produce and admin requests too; the kit's
// group helpers (DescribeGroup, WaitGroupStable, the commit monitor) ask the
// in-process cluster directly and keep working. Group sessions on a stalled
// coordinator expire, as they would on a real hung broker. It fails t on a
// real cluster.
func (c *Cluster) StallBroker(t testing.TB, node int32) *Stall {
	t.Helper()
	c.requireFake(t, "StallBroker")
	s := &Stall{healed: make(chan struct{})}
	fake := c.fake
	fake.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		select {
		case <-s.healed:
			fake.DropControl()
			return nil, nil, false
		default:
		}
		if node >= 0 && fake.CurrentNode() != node {
			return nil, nil, false
		}
		s.held.Add(1)
		fake.SleepControl(func() { <-s.healed })
		return nil, nil, false // served normally once healed
	})
	t.Cleanup(s.Heal)
	return s
}

// Heal releases the held requests and lets the broker serve again. It is
// idempotent.
func (s *Stall) Heal() { s.healOnce.Do(func() { close(s.healed) }) }

// Held returns how many requests the stall has held so far.
func (s *Stall) Held() int { return int(s.held.Load()) }
