package kstreamtest_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// Everything the kit starts for a test is gone once the test's cleanups
// have run: members, streams, engines, monitors, faults and stalls.
func TestNoGoroutineOutlivesTheTest(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Run("every lever", func(t *testing.T) {
		const topic, group = "t", "g"
		c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 2), kstreamtest.NumBrokers(2))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := kstreamtest.ProduceValues(ctx, c, topic, 2, codec.String(), values(0, 10)...); err != nil {
			t.Fatal(err)
		}
		c.MonitorCommits(t, group)
		c.FailFetch(t, topic, kerr.NotLeaderForPartition, 1)
		var ledger kstreamtest.Ledger
		s := kstreamtest.NewStream(t, c, codec.String(), kstream.Topics(topic), kstream.Group(group))
		consume(ctx, s, func(r kstream.Record[string]) { ledger.Add(r.Topic, r.Partition, r.Offset) })
		c.AddMember(t, group, []string{topic}, kstreamtest.RecordTo(&ledger))
		crashed := c.AddMember(t, group, []string{topic})
		c.WaitGroupStable(t, group, 3, 10*time.Second)
		crashed.Crash()
		kstreamtest.Crash(t, s)

		eng := kstreamtest.NewEngine(t, c)
		es := kstreamtest.NewStream(t, c, codec.String(), kstream.Topics(topic), kstream.Group("other"))
		es.Handle(func(context.Context, kstream.Record[string]) error { return nil }, kstreamtest.Track[string](&ledger))
		if err := eng.Add(es); err != nil {
			t.Fatal(err)
		}
		if err := eng.Start(ctx); err != nil {
			t.Fatal(err)
		}
		c.WaitCaughtUp(t, "other", 10*time.Second, topic)

		st := c.StallBroker(t, 1)
		kstreamtest.WaitFor(t, 5*time.Second, "a request to the stalled broker", func() bool { return st.Held() > 0 })
		// Left stalled: the end of the test heals it.
	})
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines alive after the test, %d before:\n%s", runtime.NumGoroutine(), base, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
