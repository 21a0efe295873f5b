package kstream_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// batchReads counts the record batches a client has read from fetch
// responses.
type batchReads struct{ n atomic.Int64 }

func (h *batchReads) OnFetchBatchRead(kgo.BrokerMetadata, string, int32, kgo.FetchBatchMetrics) {
	h.n.Add(1)
}

// A stream without MaxPollRecords takes the whole response from its client,
// so franz-go fetches the next one while the loop body still works on the
// first record (franz-go fetches again only once a response is taken whole).
// Each response here carries one batch of 2000 records, more than
// DefaultMaxPollRecords: a stream that took 500 at a time would leave the
// second batch unfetched until the loop had reached the first batch's end.
func TestStreamFetchesNextResponseWhileLoopWorks(t *testing.T) {
	const topic, batch = "prefetch", 2000
	c, err := kstreamtest.Start(kstreamtest.Topic(topic, 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for b := range 3 {
		recs := make([]*kgo.Record, batch)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: topic, Value: []byte{byte(b)}}
		}
		if err := c.Client().ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	h := &batchReads{}
	s, err := kstream.NewStream(codec.Bytes(), kstream.Brokers(c.Brokers()...), kstream.Topics(topic),
		kstream.ClientOptions(kgo.WithHooks(h), kgo.FetchMaxPartitionBytes(1)))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rec, err := range s.Records(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			// Still in the first record's body: the second response
			// must arrive all the same.
			for h.n.Load() < 2 {
				select {
				case <-ctx.Done():
					t.Fatalf("the second batch was not fetched while the loop held record %d (batches read: %d)", rec.Offset, h.n.Load())
				case <-time.After(time.Millisecond):
				}
			}
		}
		if n++; n == 3*batch {
			break
		}
	}
	if n != 3*batch {
		t.Fatalf("read %d records, want %d", n, 3*batch)
	}
}
