package faults

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/gokstreams/kstreams/kstreamtest"
)

// Offset commits failing with a coordinator error are retried by franz-go;
// the marks stay, so the first commit after the heal covers everything
// handled meanwhile. Nothing is lost or repeated.
func TestCommitRetriable(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "commit COORDINATOR_NOT_AVAILABLE until healed", 4)
	sc.monitor()
	sc.produce(0, n/2)
	s := sc.stream()
	l := sc.consume(s)
	sc.waitHandled(n/2, 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)

	f := sc.c.FailCommit(t, sc.group, kerr.CoordinatorNotAvailable, kstreamtest.UntilHealed)
	sc.produce(n/2, n)
	sc.waitHandled(n, 20*time.Second)
	f.WaitHits(t, 1, 10*time.Second)
	if lag, err := sc.c.Lag(sc.ctx, sc.group, sc.topic); err != nil || lag.Total() == 0 {
		t.Errorf("while every commit failed the group's lag is %v (%v), want the second half uncommitted", lag, err)
	}
	f.Heal()

	sc.waitCaughtUp(20 * time.Second)
	if err := sc.close(s); err != nil {
		t.Errorf("Close: %v", err)
	}
	l.wait(t, 10*time.Second)
	if errs := l.errors(); len(errs) != 0 {
		t.Errorf("the range yielded %v", errs)
	}
	sc.setOutcome("%d commit(s) failed and were retried; caught up after heal; nothing yielded", f.Hits())
	sc.finish(true)
}

// Commits failing with an error franz-go does not retry
// (GROUP_AUTHORIZATION_FAILED): automatic commits fail and are logged, the
// stream goes on, and Close returns the final commit's error. A new member
// then gets everything handled since the last good commit again: repeats,
// no loss, and no commit past an unhandled record.
func TestCommitNonRetriableThenClose(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "commit GROUP_AUTHORIZATION_FAILED, Close during the fault, new member", 4)
	sc.monitor()
	sc.produce(0, n/2)
	s := sc.stream()
	l := sc.consume(s)
	sc.waitHandled(n/2, 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)

	f := sc.c.FailCommit(t, sc.group, kerr.GroupAuthorizationFailed, kstreamtest.UntilHealed)
	sc.produce(n/2, n)
	sc.waitHandled(n, 20*time.Second)
	f.WaitHits(t, 1, 10*time.Second)
	cerr := sc.close(s)
	if !errors.Is(cerr, kerr.GroupAuthorizationFailed) {
		t.Errorf("Close during the fault returned %v, want the final commit's GROUP_AUTHORIZATION_FAILED", cerr)
	}
	l.wait(t, 10*time.Second)
	if errs := l.errors(); len(errs) != 0 {
		t.Errorf("the range yielded %v; failed commits are logged, not yielded", errs)
	}
	f.Heal()

	s2 := sc.stream()
	l2 := sc.consume(s2)
	sc.waitCaughtUp(20 * time.Second)
	if err := sc.close(s2); err != nil {
		t.Errorf("Close: %v", err)
	}
	l2.wait(t, 10*time.Second)
	sc.setOutcome("Close returned %q; the next member repeated what was handled since the last good commit",
		shorten(cerr))
	sc.finish(false)
}

// A commit answered ILLEGAL_GENERATION makes franz-go rejoin the group (the
// member's generation is stale). The rejoin keeps the assignment, the marks
// are committed in the new generation, and nothing is lost.
func TestCommitIllegalGeneration(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "commit ILLEGAL_GENERATION x3 (rejoin)", 4)
	sc.monitor()
	sc.delay = 500 * time.Microsecond
	sc.produce(0, n/2)
	s := sc.stream()
	l := sc.consume(s)
	sc.waitHandled(n/4, 20*time.Second)

	f := sc.c.FailCommit(t, sc.group, kerr.IllegalGeneration, 3)
	sc.produce(n/2, n)
	f.WaitHits(t, 3, 20*time.Second)

	sc.waitHandled(n, 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	if err := sc.close(s); err != nil {
		t.Errorf("Close: %v", err)
	}
	l.wait(t, 10*time.Second)
	sc.setOutcome("3 commits refused; the member rejoined; range yielded %d error(s)", len(l.errors()))
	sc.finish(false)
}

// A heartbeat answered REBALANCE_IN_PROGRESS makes the members rejoin: a
// rebalance without a membership change. With the cooperative balancer no
// partition moves, so nothing is repeated.
func TestHeartbeatRebalanceInProgress(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "heartbeat REBALANCE_IN_PROGRESS x3", 4)
	sc.monitor()
	sc.delay = 500 * time.Microsecond
	sc.produce(0, n/2)
	s := sc.stream()
	l := sc.consume(s)
	sc.waitHandled(n/4, 20*time.Second)

	f := sc.c.FailHeartbeat(t, sc.group, kerr.RebalanceInProgress, 3)
	sc.produce(n/2, n)
	f.WaitHits(t, 3, 10*time.Second)

	sc.waitHandled(n, 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	if err := sc.close(s); err != nil {
		t.Errorf("Close: %v", err)
	}
	l.wait(t, 10*time.Second)
	if errs := l.errors(); len(errs) != 0 {
		t.Errorf("the range yielded %v", errs)
	}
	sc.setOutcome("3 heartbeats refused; rejoined; nothing yielded")
	sc.finish(true)
}

// A heartbeat answered UNKNOWN_MEMBER_ID means the coordinator forgot the
// member: its partitions are lost (not revoked, no commit possible) and it
// joins again as a new member, from the last commit. Records handled since
// then may come again; none is lost.
func TestHeartbeatUnknownMember(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "heartbeat UNKNOWN_MEMBER_ID x1 (partitions lost)", 4)
	sc.monitor()
	sc.delay = 500 * time.Microsecond
	sc.produce(0, n/2)
	s := sc.stream()
	l := sc.consume(s)
	sc.waitHandled(n/4, 20*time.Second)

	f := sc.c.FailHeartbeat(t, sc.group, kerr.UnknownMemberID, 1)
	sc.produce(n/2, n)
	f.WaitHits(t, 1, 10*time.Second)

	sc.waitHandled(n, 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	if err := sc.close(s); err != nil {
		t.Errorf("Close: %v", err)
	}
	l.wait(t, 10*time.Second)
	sc.setOutcome("member fenced, partitions lost and re-assigned; range yielded %d error(s)", len(l.errors()))
	sc.finish(false)
}

// A heartbeat answered GROUP_AUTHORIZATION_FAILED: the member may no longer
// use its group. The range ends with one fatal *FetchError; after the fix a
// new member resumes from the commits.
func TestHeartbeatGroupAuthorization(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "heartbeat GROUP_AUTHORIZATION_FAILED (fatal), then a new member", 4)
	sc.monitor()
	sc.produce(0, n/2)
	s := sc.stream()
	l := sc.consume(s)
	sc.waitHandled(n/2, 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)

	f := sc.c.FailHeartbeat(t, sc.group, kerr.GroupAuthorizationFailed, kstreamtest.UntilHealed)
	l.wait(t, 20*time.Second)
	fe := l.fatalErr()
	if fe == nil || !errors.Is(fe, kerr.GroupAuthorizationFailed) {
		t.Fatalf("the range yielded %v, want a fatal *FetchError wrapping GROUP_AUTHORIZATION_FAILED", l.errors())
	}
	if fe.Topic != "" {
		t.Errorf("a group error names topic %q, want none", fe.Topic)
	}
	cerr := sc.close(s)
	f.Heal()
	sc.produce(n/2, n)

	s2 := sc.stream()
	l2 := sc.consume(s2)
	sc.waitHandled(n, 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	if err := sc.close(s2); err != nil {
		t.Errorf("Close: %v", err)
	}
	l2.wait(t, 10*time.Second)
	sc.setOutcome("range ended with %d error(s), the last a fatal FetchError %q; Close returned %q; a new member finished",
		len(l.errors()), shorten(fe), shorten(cerr))
	sc.finish(true)
}

// shorten returns err's message without the stream-name prefix details, cut
// to a length that fits the report table.
func shorten(err error) string {
	if err == nil {
		return "<nil>"
	}
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
