package kstream_test

import (
	"bytes"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/gokstreams/kstreams/kstream"
)

// An engine's producer compresses batches with snappy by default (what
// docs/interop.md tells kafkajs users), and
// ClientOptions(kgo.ProducerBatchCompression(...)) changes the codec. The
// codec is read from the record batches the broker receives.
func TestEngineProducerCompression(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []kstream.Option
		want int16 // the codec bits of a batch's attributes
	}{
		{"default", nil, 2},
		{"gzip", []kstream.Option{kstream.ClientOptions(kgo.ProducerBatchCompression(kgo.GzipCompression()))}, 1},
		{"none", []kstream.Option{kstream.ClientOptions(kgo.ProducerBatchCompression(kgo.NoCompression()))}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1, 0)
			fake := e.c.Fake()
			if fake == nil {
				t.Fatal("this test reads produce requests and needs the in-process cluster; unset KAFKA_BROKERS")
			}
			var mu sync.Mutex
			var codecs []int16
			fake.ControlKey(kmsg.Produce.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
				fake.KeepControl()
				for _, tp := range req.(*kmsg.ProduceRequest).Topics {
					for _, p := range tp.Partitions {
						var b kmsg.RecordBatch
						if err := b.ReadFrom(p.Records); err != nil {
							t.Errorf("reading a produced batch: %v", err)
							continue
						}
						mu.Lock()
						codecs = append(codecs, b.Attributes&0x07)
						mu.Unlock()
					}
				}
				return nil, nil, false
			})
			eng := e.engine(tc.opts...)
			if err := eng.Start(e.ctx); err != nil {
				t.Fatal(err)
			}
			// Compressible, so that compressing makes the batch smaller
			// (franz-go sends a batch uncompressed otherwise).
			if _, err := eng.Send(e.ctx, e.topic, bytes.Repeat([]byte("kstreams "), 200)); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(codecs) == 0 {
				t.Fatal("no produce request reached the broker")
			}
			for _, c := range codecs {
				if c != tc.want {
					t.Errorf("a batch was produced with codec %d, want %d (0 none, 1 gzip, 2 snappy)", c, tc.want)
				}
			}
		})
	}
}
