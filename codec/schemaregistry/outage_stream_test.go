package schemaregistry_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/codec/schemaregistry"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// syncBuffer is a log destination the test reads while the stream writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The registry stopped and restarted mid-stream: records whose writer
// schema the stream has not seen yet wait, are never yielded as decode
// errors, and nothing is lost or skipped once the registry is back.
func TestStreamRegistryOutageLosesAndSkipsNothing(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	t.Setenv("SCHEMA_REGISTRY_URL", "")
	const topic, group, subject = "orders", "billing", "orders-value"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The producer's codecs, each used once while the registry is up, so
	// that they know their schema IDs.
	pcl := kstreamtest.NewRegistryClient(t, c)
	encV1, err := schemaregistry.Avro[orderV1](pcl, subject, schemaregistry.Schema(orderV1Schema), schemaregistry.AutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	encV2, err := schemaregistry.Avro[orderV2](pcl, subject, schemaregistry.Schema(orderV2Schema), schemaregistry.AutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	produce := func(from, to int, enc codec.Encoder[orderV2], enc1 codec.Encoder[orderV1]) {
		t.Helper()
		for i := from; i < to; i++ {
			var b []byte
			var err error
			if enc1 != nil {
				b, err = enc1.Encode(orderV1{ID: int64(i), Customer: fmt.Sprint("c", i), Amount: 1})
			} else {
				b, err = enc.Encode(orderV2{ID: int64(i), Customer: fmt.Sprint("c", i), Amount: 1, Currency: "USD"})
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Produce(ctx, &kgo.Record{Topic: topic, Value: b}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := encV2.Encode(orderV2{ID: -1}); err != nil { // learn v2's ID now
		t.Fatal(err)
	}
	produce(0, 5, nil, encV1)

	// The stream's codec has a client (and a cache) of its own.
	dec, err := schemaregistry.Avro[orderV2](kstreamtest.NewRegistryClient(t, c), subject, schemaregistry.Schema(orderV2Schema))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	s := kstreamtest.NewStream(t, c, codec.Decoder[orderV2](dec), kstream.Topics(topic), kstream.Group(group),
		kstream.Logger(slog.New(slog.NewTextHandler(logs, nil))))
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	type result struct {
		id  int64
		err error
	}
	results := make(chan result, 16)
	rctx, stop := context.WithCancel(ctx)
	ranged := make(chan struct{})
	go func() {
		defer close(ranged)
		for rec, err := range s.Records(rctx) {
			results <- result{rec.Value.ID, err}
		}
	}()
	next := func() result {
		t.Helper()
		select {
		case r := <-results:
			return r
		case <-ctx.Done():
			t.Fatal("no record")
		}
		return result{}
	}
	for i := range 5 {
		if r := next(); r.err != nil || r.id != int64(i) {
			t.Fatalf("record %d: %+v", i, r)
		}
	}

	outage := c.StopRegistry(t)
	produce(5, 10, encV2, nil) // a writer schema the stream has not seen
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(logs.String(), "decoder unavailable") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the stream did not retry the record while the registry was down; logs:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case r := <-results:
		t.Fatalf("yielded %+v while the registry was down", r)
	default:
	}
	outage.Restart()
	for i := 5; i < 10; i++ {
		if r := next(); r.err != nil || r.id != int64(i) {
			t.Fatalf("record %d after the outage: %+v", i, r)
		}
	}
	stop()
	<-ranged
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c.WaitCommitted(t, group, kstreamtest.Offsets{topic: {0: 10}}, 10*time.Second)
}
