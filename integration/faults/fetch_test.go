package faults

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// n is how many records a broker-fault scenario produces: half before the
// fault, half while it lasts.
const n = 2000

// A retriable fetch error (the leader moved) is franz-go's business: it
// refreshes metadata and fetches again. The loop sees nothing but a delay,
// nothing is lost and, with no rebalance, nothing is repeated.
func TestFetchRetriable(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "fetch NOT_LEADER_FOR_PARTITION until healed", 4)
	sc.monitor()
	sc.produce(0, n/2)
	s := sc.stream()
	l := sc.consume(s)
	sc.waitHandled(n/2, 20*time.Second)

	f := sc.c.FailFetch(t, sc.topic, kerr.NotLeaderForPartition, kstreamtest.UntilHealed)
	sc.produce(n/2, n)
	f.WaitHits(t, 3, 10*time.Second)
	time.Sleep(time.Second)
	stuck := sc.led().Count()
	f.Heal()

	sc.waitHandled(n, 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	if err := sc.close(s); err != nil {
		t.Errorf("Close: %v", err)
	}
	l.wait(t, 10*time.Second)
	if errs := l.errors(); len(errs) != 0 {
		t.Errorf("the range yielded %d error(s) for a retriable fault, want none: %v", len(errs), errs)
	}
	if stuck >= n {
		t.Errorf("the stream handled all %d records while every fetch failed", stuck)
	}
	sc.setOutcome("%d fetches failed; no error yielded; caught up after heal", f.Hits())
	sc.finish(true)
}

// A fetch error franz-go does not retry and that is not fatal
// (UNKNOWN_SERVER_ERROR) is yielded as a non-fatal *FetchError naming the
// partition. The body continues, franz-go fetches the same offset again, and
// once the broker answers the stream goes on where it was.
func TestFetchNonRetriable(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "fetch UNKNOWN_SERVER_ERROR x5", 4)
	sc.monitor()
	sc.produce(0, n/2)
	s := sc.stream()
	l := sc.consume(s)
	sc.waitHandled(n/2, 20*time.Second)

	f := sc.c.FailFetch(t, sc.topic, kerr.UnknownServerError, 5)
	sc.produce(n/2, n)
	f.WaitHits(t, 5, 10*time.Second)

	sc.waitHandled(n, 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	if err := sc.close(s); err != nil {
		t.Errorf("Close: %v", err)
	}
	l.wait(t, 10*time.Second)
	errs := l.errors()
	if len(errs) == 0 {
		t.Errorf("the range yielded no error for %d failed fetches", f.Hits())
	}
	for _, err := range errs {
		var fe *kstream.FetchError
		if !errors.As(err, &fe) || fe.Fatal || !errors.Is(err, kerr.UnknownServerError) || fe.Topic != sc.topic || fe.Partition < 0 {
			t.Errorf("yielded %v (%T), want a non-fatal *FetchError of topic %q wrapping UNKNOWN_SERVER_ERROR", err, err, sc.topic)
		}
	}
	sc.setOutcome("%d non-fatal FetchError(s) yielded, e.g. %q; the range went on", len(errs), firstErr(errs))
	sc.finish(true)
}

// A fatal fetch error (TOPIC_AUTHORIZATION_FAILED) ends the range with one
// fatal *FetchError, the last value it yields. Close commits what was
// handled, nothing more; once the ACL is fixed a new member of the group
// carries on from there without loss or repeats.
func TestFetchFatal(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "fetch TOPIC_AUTHORIZATION_FAILED (fatal), then a new member", 4)
	sc.monitor()
	sc.produce(0, n/2)
	s := sc.stream()
	l := sc.consume(s)
	sc.waitHandled(n/2, 20*time.Second)
	sc.waitCaughtUp(20 * time.Second) // so that the second half is what is left

	f := sc.c.FailFetch(t, sc.topic, kerr.TopicAuthorizationFailed, kstreamtest.UntilHealed)
	sc.produce(n/2, n)
	l.wait(t, 20*time.Second) // the fatal error ends the range by itself
	fe := l.fatalErr()
	errs := l.errors()
	if fe == nil || len(errs) != 1 {
		t.Fatalf("the range yielded %v, want exactly one fatal *FetchError", errs)
	}
	if !errors.Is(fe, kerr.TopicAuthorizationFailed) || fe.Topic != sc.topic {
		t.Errorf("fatal error %v: want TOPIC_AUTHORIZATION_FAILED on topic %q", fe, sc.topic)
	}
	handledBefore := sc.led().Count()
	if err := sc.close(s); err != nil {
		t.Errorf("Close after the fatal error: %v", err)
	}
	f.Heal()

	// A new member of the group (the application restarted) resumes from
	// the commits.
	s2 := sc.stream()
	l2 := sc.consume(s2)
	sc.waitHandled(n, 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	if err := sc.close(s2); err != nil {
		t.Errorf("Close: %v", err)
	}
	l2.wait(t, 10*time.Second)
	if errs := l2.errors(); len(errs) != 0 {
		t.Errorf("after the heal the range yielded %v", errs)
	}
	sc.setOutcome("range ended with one fatal FetchError %q after %d records; a new member finished", fe.Error(), handledBefore)
	sc.finish(true)
}

// The same fatal error in an engine with ErrorPolicyRestart: each attempt
// crashes on the fatal FetchError, the engine restarts the stream with
// backoff, and once the error is gone the stream carries on by itself.
func TestFetchFatalEngineRestart(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "fetch TOPIC_AUTHORIZATION_FAILED, engine ErrorPolicyRestart", 4)
	sc.monitor()
	sc.produce(0, n/2)
	eng := kstreamtest.NewEngine(t, sc.c, kstream.Logger(sc.log), kstream.OnError(kstream.ErrorPolicyRestart))
	s := sc.stream(kstream.Name("restarting"))
	s.Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		if want := sc.expectedValue(rec.Partition, rec.Offset); rec.Value != want {
			t.Errorf("record %d/%d has value %q, want %q", rec.Partition, rec.Offset, rec.Value, want)
		}
		return nil
	}, kstreamtest.Track[string](sc.led()))
	if err := eng.Add(s); err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(sc.ctx); err != nil {
		t.Fatal(err)
	}
	sc.waitHandled(n/2, 20*time.Second)

	f := sc.c.FailFetch(t, sc.topic, kerr.TopicAuthorizationFailed, kstreamtest.UntilHealed)
	sc.produce(n/2, n)
	var last error
	kstreamtest.WaitFor(t, 20*time.Second, "the stream to crash on the fatal fetch error", func() bool {
		h, _ := eng.StreamHealth("restarting")
		last = h.LastErr
		return h.LastErr != nil
	})
	var fe *kstream.FetchError
	if !errors.As(last, &fe) || !fe.Fatal || !errors.Is(last, kerr.TopicAuthorizationFailed) {
		t.Errorf("crash error %v (%T), want a fatal *FetchError wrapping TOPIC_AUTHORIZATION_FAILED", last, last)
	}
	time.Sleep(time.Second) // let it restart and crash again at least once
	f.Heal()

	sc.waitHandled(n, 30*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	h, _ := eng.StreamHealth("restarting")
	if h.State != kstream.StreamRunning || h.Restarts == 0 {
		t.Errorf("after the heal the stream is %v with %d restart(s), want running after at least one restart", h.State, h.Restarts)
	}
	if err := sc.stop(eng, 10*time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
	sc.setOutcome("crashed with the fatal FetchError, restarted %d time(s), recovered after heal", h.Restarts)
	sc.finish(false)
}

func firstErr(errs []error) string {
	if len(errs) == 0 {
		return ""
	}
	return errs[0].Error()
}
