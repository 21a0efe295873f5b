package kstream_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// readBack reads the record at (topic, partition, offset) with a plain
// franz-go client.
func readBack(t *testing.T, e *env, topic string, partition int32, offset int64) *kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.c.Brokers()...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(offset)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("reading back %s/%d@%d: %v", topic, partition, offset, err)
		}
		if recs := fs.Records(); len(recs) > 0 {
			return recs[0]
		}
	}
}

func TestSendMetadataReadBack(t *testing.T) {
	e := newEnv(t, 3, 0)
	eng := e.engine()
	if _, err := eng.Send(e.ctx, e.topic, []byte("early")); !errors.Is(err, kstream.ErrEngineNotStarted) {
		t.Fatalf("Send before Start = %v, want ErrEngineNotStarted", err)
	}
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	ts := time.UnixMilli(1700000000123)
	md, err := eng.Send(e.ctx, e.topic, []byte("hello"),
		kstream.WithKey([]byte("k1")), kstream.WithHeader("h1", []byte("x")), kstream.WithHeader("h2", nil),
		kstream.ToPartition(2), kstream.WithTimestamp(ts))
	if err != nil {
		t.Fatal(err)
	}
	if md.Topic != e.topic || md.Partition != 2 || md.Offset != 0 || !md.Timestamp.Equal(ts) {
		t.Fatalf("metadata %+v", md)
	}
	r := readBack(t, e, md.Topic, md.Partition, md.Offset)
	if string(r.Key) != "k1" || string(r.Value) != "hello" || !r.Timestamp.Equal(ts) || len(r.Headers) != 2 ||
		r.Headers[0].Key != "h1" || string(r.Headers[0].Value) != "x" || r.Headers[1].Key != "h2" {
		t.Fatalf("read back %+v", r)
	}
	// Without ToPartition, equal keys land on one partition.
	parts := map[int32]bool{}
	for i := range 5 {
		md, err := eng.Send(e.ctx, e.topic, []byte(strconv.Itoa(i)), kstream.WithKey([]byte("same")))
		if err != nil {
			t.Fatal(err)
		}
		parts[md.Partition] = true
	}
	if len(parts) != 1 {
		t.Fatalf("records with one key went to partitions %v", parts)
	}
	if _, err := eng.Send(e.ctx, e.topic, []byte("x"), kstream.ToPartition(9)); err == nil {
		t.Fatal("Send to a partition the topic does not have succeeded")
	}
}

func TestTypedProducerAndBatch(t *testing.T) {
	e := newEnv(t, 1, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	p := kstream.NewProducer(eng, e.topic, codec.JSON[order]())
	md, err := p.Send(e.ctx, []byte("o1"), order{ID: 1, Amount: 9.5})
	if err != nil {
		t.Fatal(err)
	}
	mds, err := p.SendBatch(e.ctx, kstream.Message[order]{Key: []byte("o2"), Value: order{ID: 2}}, kstream.Message[order]{Value: order{ID: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if md.Offset != 0 || len(mds) != 2 || mds[0].Offset != 1 || mds[1].Offset != 2 {
		t.Fatalf("offsets %d then %+v", md.Offset, mds)
	}
	s, err := kstream.NewStream(codec.JSON[order](), kstream.Brokers(e.c.Brokers()...), kstream.Topics(e.topic), kstream.Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	for rec, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.Value.ID)
		if len(ids) == 3 {
			break
		}
	}
	if !slices.Equal(ids, []int{1, 2, 3}) {
		t.Fatalf("read back ids %v", ids)
	}
	bad := kstream.NewProducer(eng, e.topic, codec.JSON[chan int]())
	if _, err := bad.Send(e.ctx, nil, make(chan int)); err == nil {
		t.Fatal("encoding a channel as JSON succeeded")
	}
}

// A broker that stops answering produce requests: Send returns by its
// deadline.
func TestSendHonoursDeadlineWhenBrokerStalls(t *testing.T) {
	e := newEnv(t, 1, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	fake := e.c.Fake()
	if fake == nil {
		t.Fatal("needs the in-process cluster; unset KAFKA_BROKERS")
	}
	release := make(chan struct{})
	fake.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		fake.KeepControl()
		fake.SleepControl(func() { <-release })
		return nil, nil, false
	})
	ctx, cancel := context.WithTimeout(e.ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := eng.Send(ctx, e.topic, []byte("stalled"))
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send = %v, want the deadline", err)
	}
	if took > 2*time.Second {
		t.Fatalf("Send returned after %v, deadline was 300ms", took)
	}
	close(release)
	fake.DropControl()
}

// A Send whose record is not the first of its batch still returns by its
// deadline: franz-go cancels a batch by the context of its first record
// only, so Send waits for its record itself.
func TestSendHonoursDeadlineBehindAnotherRecord(t *testing.T) {
	e := newEnv(t, 1, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Send(e.ctx, e.topic, []byte("before")); err != nil {
		t.Fatal(err)
	}
	stall := e.c.StallBroker(t, -1)
	long, cancelLong := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancelLong()
	// The first record goes out and is held; the second waits in the next
	// batch, whose first record it is; Send's record joins that batch.
	eng.SendAsync(long, e.topic, []byte("held"), nil)
	eng.SendAsync(long, e.topic, []byte("first of the next batch"), nil)
	ctx, cancel := context.WithTimeout(e.ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := eng.Send(ctx, e.topic, []byte("behind"))
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send = %v, want the deadline", err)
	}
	if took > 3*time.Second {
		t.Fatalf("Send returned after %v, deadline was 300ms", took)
	}
	stall.Heal()
	if err := eng.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
}
