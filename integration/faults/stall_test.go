package faults

import (
	"context"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// stallFor is how long a stalled broker hangs: longer than the test session
// timeout (1s), so that the group session expires as it would on a real
// hung coordinator.
const stallFor = 2500 * time.Millisecond

// A broker that hangs (every request held unanswered) for longer than the
// session timeout, while records keep being produced: the member's session
// expires, its partitions are lost, and after the heal it joins again and
// resumes from the last commit. Records handled since that commit come
// again; none is lost.
func TestStalledBroker(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "broker stalled 2.5s (> session timeout) mid-stream", 4)
	sc.monitor()
	sc.produce(0, n/4)
	s := sc.stream()
	l := sc.consume(s)
	sc.waitHandled(n/4, 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)

	// A producer that keeps writing, 25 records every 20ms; its requests
	// hang with the broker and go through after the heal.
	produced := make(chan error, 1)
	go func() {
		for i := n / 4; i < n; i += 25 {
			if err := sc.cluster().Produce(sc.ctx, sc.records(i, i+25)...); err != nil {
				produced <- err
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		produced <- nil
	}()
	time.Sleep(300 * time.Millisecond)
	st := sc.c.StallBroker(t, -1)
	time.Sleep(stallFor)
	during := sc.led().Count()
	st.Heal()
	if err := <-produced; err != nil {
		t.Fatalf("producing around the stall: %v", err)
	}

	sc.waitHandled(n, 30*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	if err := sc.close(s); err != nil {
		t.Errorf("Close: %v", err)
	}
	l.wait(t, 10*time.Second)
	if during >= n {
		t.Errorf("the stream handled everything while the broker hung")
	}
	sc.setOutcome("%d requests held; %d error(s) yielded; resumed after heal", st.Held(), len(l.errors()))
	sc.finish(false)
}

// Stopping an engine while the broker hangs, the broker coming back before
// Stop's deadline: Stop waits for it, commits what it can and returns.
// Whatever was handled since the last commit is repeated by the next
// engine; nothing is lost.
func TestStopDuringShortStall(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "engine Stop(10s) while the broker is stalled; heals after 2s", 4)
	sc.monitor()
	sc.produce(0, n)
	start := func() *kstream.Engine { return startSlowEngine(t, sc) }
	eng := start()
	sc.waitHandled(n/4, 20*time.Second)

	st := sc.c.StallBroker(t, -1)
	time.Sleep(200 * time.Millisecond)
	stopped := make(chan error, 1)
	began := time.Now()
	go func() { stopped <- sc.stop(eng, 10*time.Second) }()
	time.Sleep(2 * time.Second)
	st.Heal()
	serr := <-stopped
	took := time.Since(began)
	if took > 10*time.Second+2*time.Second {
		t.Errorf("Stop with a 10s deadline took %v", took)
	}

	eng2 := start()
	sc.waitHandled(n, 30*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	if err := sc.stop(eng2, 10*time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
	sc.setOutcome("Stop returned %v after it began (%v after the heal) with %q; a new engine finished",
		took.Round(time.Millisecond), (took - 2*time.Second).Round(time.Millisecond), shorten(serr))
	sc.finish(false)
}

// startSlowEngine starts an engine with a Handle stream of the scenario
// that takes a millisecond per record and tracks what it handled.
func startSlowEngine(t *testing.T, sc *scenario) *kstream.Engine {
	t.Helper()
	eng := kstreamtest.NewEngine(t, sc.c, kstream.Logger(sc.log))
	s := sc.stream()
	s.Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		time.Sleep(time.Millisecond)
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
	return eng
}
