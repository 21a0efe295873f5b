package faults

import (
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// Regression tests for SDK bugs these scenarios found (see
// docs/reliability-faults.md); each failed before its fix.

// Fixed bug: Engine.Stop does not honour its deadline when the broker
// hangs. The stream's session close commits with DefaultCloseTimeout (30s)
// instead of Stop's context, then franz-go's Client.Close waits for the
// group leave, whose requests to the hung broker time out one by one; at
// Stop's deadline forceClose calls Stream.Close, which waits for that close
// in progress. Stop(3s) took 2m1s to 2m11s in our runs.
func TestStopDeadlineOnHungBroker(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "engine Stop(3s) while the broker stays stalled", 4)
	sc.monitor()
	sc.produce(0, n)
	eng := startSlowEngine(t, sc)
	sc.waitHandled(n/4, 20*time.Second)

	st := sc.c.StallBroker(t, -1)
	defer st.Heal()
	time.Sleep(200 * time.Millisecond)
	const deadline = 3 * time.Second
	began := time.Now()
	serr := sc.stop(eng, deadline)
	took := time.Since(began)
	// Stop's contract: handlers get until the deadline, then a second
	// more, then the streams are closed under them.
	if took > deadline+2*time.Second {
		t.Errorf("Stop with a %v deadline took %v while the broker hung (returned %v)", deadline, took, serr)
	}
	st.Heal()
	sc.setOutcome("Stop returned after %v with %q", took.Round(time.Millisecond), shorten(serr))
	sc.finishPartial()
}

// Fixed bug: Stream.Close on a hung broker takes far longer than
// DefaultCloseTimeout: the final commit is bounded by it (30s), but the
// LeaveGroup and client shutdown after it are not. Close took 1m12s to 2m2s
// in our runs.
func TestCloseOnHungBroker(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "stream Close while the broker stays stalled", 4)
	sc.monitor()
	sc.delay = time.Millisecond
	sc.produce(0, n)
	s := sc.stream()
	l := sc.consume(s)
	sc.waitHandled(n/4, 20*time.Second)

	st := sc.c.StallBroker(t, -1)
	defer st.Heal()
	time.Sleep(200 * time.Millisecond)
	began := time.Now()
	cerr := sc.close(s)
	took := time.Since(began)
	if took > kstream.DefaultCloseTimeout+5*time.Second {
		t.Errorf("Close took %v while the broker hung, more than DefaultCloseTimeout (%v) + 5s (returned %v)", took, kstream.DefaultCloseTimeout, cerr)
	}
	l.wait(t, 10*time.Second)
	st.Heal()
	sc.setOutcome("Close returned after %v with %q", took.Round(time.Millisecond), shorten(cerr))
	sc.finishPartial()
}

// Fixed bug: a *FetchError for the group as a whole is documented to have
// an empty Topic and Partition -1, but has Partition 0: franz-go injects
// group errors as a fake fetch of topic "" partition 0
// (consumer_group.go: addFakeReadyForDraining("", 0, ...)) and the stream
// passes the partition through (session.go, poll: FetchError{Topic: topic,
// Partition: partition}).
func TestGroupFetchErrorPartition(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "group FetchError partition", 1)
	sc.produce(0, 10)
	s := sc.stream()
	l := sc.consume(s)
	sc.waitHandled(10, 20*time.Second)
	sc.c.FailHeartbeat(t, sc.group, kerr.GroupAuthorizationFailed, kstreamtest.UntilHealed)
	l.wait(t, 20*time.Second)
	fe := l.fatalErr()
	if fe == nil || !errors.Is(fe, kerr.GroupAuthorizationFailed) {
		t.Fatalf("the range yielded %v, want a fatal *FetchError wrapping GROUP_AUTHORIZATION_FAILED", l.errors())
	}
	if fe.Topic != "" || fe.Partition != -1 {
		t.Errorf("group-level FetchError has Topic %q Partition %d, documented: empty Topic and Partition -1", fe.Topic, fe.Partition)
	}
}
