package faults

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// freePort returns a port that was free a moment ago, for a broker that
// must come back on the same address.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// The broker stops mid-stream and starts again a second later on the same
// port with the same data directory (kfake's DataDir): the records and the
// group's committed offsets survive, the stream's client reconnects by
// itself, and the stream carries on where it was. The second half of the
// records is produced to the restarted broker.
func TestBrokerRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fakeOpts := kstreamtest.FakeOptions(kfake.DataDir(dir), kfake.Ports(freePort(t)))
	sc := newScenario(t, "broker restart (DataDir, same port, down 1s) mid-stream", 4, fakeOpts)
	sc.monitor()
	sc.produce(0, n/2)
	s := sc.stream()
	l := sc.consume(s)
	sc.waitHandled(n/2, 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	before, err := sc.c.Committed(sc.ctx, sc.group)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := sc.c.EndOffsets(sc.ctx, sc.topic)
	if err != nil {
		t.Fatal(err)
	}

	sc.pauseMonitor()
	old := sc.c
	down := time.Now()
	old.Close()
	time.Sleep(time.Second)
	c2, err := kstreamtest.Start(fakeOpts)
	if err != nil {
		t.Fatalf("restarting the broker: %v", err)
	}
	t.Cleanup(c2.Close)
	restartTook := time.Since(down)
	sc.setCluster(c2)
	sc.monitor()

	// What the restarted broker remembers.
	after, err := c2.Committed(sc.ctx, sc.group)
	if err != nil {
		t.Fatal(err)
	}
	for p, off := range before[sc.topic] {
		if got := after[sc.topic][p]; got != off {
			t.Errorf("partition %d: committed offset %d before the restart, %d after", p, off, got)
		}
	}
	ends2, err := c2.EndOffsets(sc.ctx, sc.topic)
	if err != nil {
		t.Fatal(err)
	}
	for p, off := range ends {
		if ends2[p] != off {
			t.Errorf("partition %d: end offset %d before the restart, %d after", p, off, ends2[p])
		}
	}

	sc.produce(n/2, n)
	sc.waitHandled(n, 30*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	if err := sc.close(s); err != nil {
		t.Errorf("Close: %v", err)
	}
	l.wait(t, 10*time.Second)
	sc.setOutcome("broker down %v; commits and end offsets survived; the stream reconnected; range yielded %d error(s)",
		restartTook.Round(10*time.Millisecond), len(l.errors()))
	sc.finish(true)
}

// The topic is deleted and created again (a new topic ID) under a running
// stream. franz-go answers the old topic's fetches UNKNOWN_TOPIC_ID and
// never reads the new topic with the old cursor; kstream makes that a fatal
// *FetchError, the last value of the range. Kafka drops a deleted topic's
// commits, so a new member starts the new topic from its beginning (the
// default reset, Earliest) and reads every record produced to it.
func TestTopicRecreated(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "topic deleted and recreated under the stream, then a new member", 4)
	sc.monitor()
	sc.produce(0, n/2)
	s := sc.stream()
	l := sc.consume(s)

	// An engine whose producer writes to the topic before the recreation:
	// record n/2 (partition 0), then the kit writes the rest of the row.
	eng := kstreamtest.NewEngine(t, sc.c, kstream.Logger(sc.log))
	if err := eng.Start(sc.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Send(sc.ctx, sc.topic, []byte(value(n/2)), kstream.ToPartition(0)); err != nil {
		t.Fatalf("Send before the recreation: %v", err)
	}
	sc.produce(n/2+1, n/2+int(sc.parts))
	first := n/2 + int(sc.parts)
	sc.waitHandled(first, 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	old := sc.c.Produced(t, sc.topic)

	sc.pauseMonitor()
	fake := sc.c.Fake()
	if err := fake.DeleteTopic(sc.topic); err != nil {
		t.Fatal(err)
	}
	if err := fake.CreateTopic(sc.topic, sc.parts, nil); err != nil {
		t.Fatal(err)
	}

	// The engine's producer still knows the old topic ID: the first Send
	// fails, and makes the engine look the topic up again, so the next
	// Send writes record 0 of the new incarnation.
	_, sendErr := eng.Send(sc.ctx, sc.topic, []byte("after"), kstream.ToPartition(0))
	if !errors.Is(sendErr, kerr.UnknownTopicID) {
		t.Errorf("Send to the recreated topic through a producer that wrote to the old one returned %v, want UNKNOWN_TOPIC_ID", sendErr)
	}
	md, err := eng.Send(sc.ctx, sc.topic, []byte(value(0)), kstream.WithKey([]byte("k0")), kstream.ToPartition(0))
	if err != nil || md.Partition != 0 || md.Offset != 0 {
		t.Fatalf("the Send after the failed one = %+v, %v; want partition 0, offset 0 of the new topic", md, err)
	}
	if err := sc.stop(eng, 10*time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}

	// The kit's client, too, knows the old topic ID: write the rest of the
	// new incarnation with a new client.
	cl, err := kgo.NewClient(kgo.SeedBrokers(sc.c.Brokers()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(sc.ctx, sc.records(1, n/2)...).FirstErr(); err != nil {
		t.Fatalf("producing to the new incarnation with a new client: %v", err)
	}

	l.wait(t, 30*time.Second)
	fe := l.fatalErr()
	if fe == nil {
		t.Fatalf("the range over the recreated topic yielded %v, want a fatal *FetchError", l.errors())
	}
	if !errors.Is(fe, kerr.UnknownTopicID) && !errors.Is(fe, kerr.InconsistentTopicID) {
		t.Errorf("fatal error %v, want UNKNOWN_TOPIC_ID or INCONSISTENT_TOPIC_ID", fe)
	}
	if fe.Topic != sc.topic {
		t.Errorf("fatal error names topic %q, want %q", fe.Topic, sc.topic)
	}
	sc.led().AssertAtLeastOnce(t, old)
	sc.led().AssertNoDuplicates(t)
	if got := sc.led().Count(); got != first {
		t.Errorf("the old stream handled %d records, want the %d of the old incarnation", got, first)
	}
	cerr := sc.close(s)
	sc.newIncarnation(old.Total())

	committed, err := sc.c.Committed(sc.ctx, sc.group)
	if err != nil {
		t.Fatal(err)
	}
	if c := committed[sc.topic]; len(c) != 0 {
		t.Errorf("after the recreation the group has commits %v for the new topic; a new member would skip records", c)
	}

	sc.monitor()
	s2 := sc.stream()
	l2 := sc.consume(s2)
	sc.waitHandled(n/2, 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	if err := sc.close(s2); err != nil {
		t.Errorf("Close: %v", err)
	}
	l2.wait(t, 10*time.Second)
	if errs := l2.errors(); len(errs) != 0 {
		t.Errorf("the new member's range yielded %v", errs)
	}
	sc.setOutcome("old range ended with fatal %q (%d error(s)); its Close returned %q; the engine's first Send after it: %q, its next Send wrote the new topic's offset 0; a new member read the new topic from offset 0",
		shorten(fe), len(l.errors()), shorten(cerr), shorten(sendErr))
	sc.finish(true)
}
