package kstream_test

import (
	"context"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// BenchmarkEmit is what Emit costs on top of franz-go's Produce: b.N
// records emitted from one record in hand of a range body (default mode and
// ExactlyOnce, each to its source's partition number), against b.N records
// produced with a promise by a franz-go client with the stream's producer
// settings. One op is one record; the produce path itself (buffering,
// requests, acknowledgements against the in-process broker) is in both.
//
//	go test -run '^$' -bench BenchmarkEmit -benchtime 200000x ./kstream
func BenchmarkEmit(b *testing.B) {
	brokers, topic := sendBenchCluster(b)
	out := topic
	value := make([]byte, benchValueSize)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	seed, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	if err := seed.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Value: value}).FirstErr(); err != nil {
		b.Fatal(err)
	}
	seed.Close()
	var failed atomic.Int64

	b.Run("franz-go", func(b *testing.B) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		cb := func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
			}
		}
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		for b.Loop() {
			cl.Produce(ctx, &kgo.Record{Topic: out, Partition: 0, Value: value}, cb)
		}
		if err := cl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		allocsPerRecord(b, &ms0)
	})
	for _, mode := range []string{"default", "exactly-once"} {
		b.Run(mode, func(b *testing.B) {
			opts := []kstream.Option{kstream.Brokers(brokers...), kstream.Topics(topic),
				kstream.Group("emit-bench-" + mode + "-" + b.Name()), kstream.Logger(slog.New(slog.DiscardHandler))}
			if mode == "exactly-once" {
				opts = append(opts, kstream.ExactlyOnce())
			}
			s, err := kstream.NewStream(codec.Bytes(), opts...)
			if err != nil {
				b.Fatal(err)
			}
			var ms0 runtime.MemStats
			for rec, err := range s.Records(ctx) {
				if err != nil {
					b.Fatal(err)
				}
				runtime.ReadMemStats(&ms0)
				for b.Loop() {
					if err := s.Emit(ctx, out, value, kstream.ToPartition(rec.Partition)); err != nil {
						b.Fatal(err)
					}
				}
				break
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			allocsPerRecord(b, &ms0)
		})
	}
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d records failed", n)
	}
}
