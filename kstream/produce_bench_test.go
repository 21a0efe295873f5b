package kstream_test

// Producing one record at a time, waiting for each acknowledgement: raw
// franz-go ProduceSync against Engine.Send and Producer.Send, in one process
// with an in-process cluster. Run with
//
//	go test -run '^$' -bench 'BenchmarkSend' -benchmem ./kstream
//	go test -run '^$' -bench 'BenchmarkSend/engine' -benchmem -memprofile mem.out ./kstream
//
// One op is one record: a round trip to the in-process broker. Allocations
// are the process's (-benchmem), so they include the broker's work for the
// request, which is the same for every client: only the differences between
// sub-benchmarks are the clients' own. The sends take a context with a
// deadline, as benchcompare's do (franz-go then watches it on every
// request of the engine's producer, which allows franz-go to cancel
// idempotent produce requests); engine-background takes one that cannot
// end.
//
// BenchmarkSendAsync does the same pipelined: franz-go Produce with a
// callback against Engine.SendAsync and Producer.SendAsync, with one Flush
// at the end of each b.N. Its allocs/record metric is the process's
// allocations per record including the Flush, as a fraction.
//
// For the client's allocations alone, run the broker in a process of its
// own and point the benchmark at it:
//
//	go run ./integration/cmd/kfakeserver   # prints BROKERS host:port
//	KAFKA_BROKERS=host:port go test -run '^$' -bench 'BenchmarkSend' -benchmem ./kstream

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

const sendBenchPartitions = 6

func sendBenchCluster(b *testing.B) (brokers []string, topic string) {
	b.Helper()
	topic = fmt.Sprintf("bench-send-%d-%d", benchRunID, benchGroupSeq.Add(1))
	c, err := kstreamtest.Start(kstreamtest.Topic(topic, sendBenchPartitions))
	if err != nil {
		b.Fatalf("start cluster: %v", err)
	}
	b.Cleanup(c.Close)
	return c.Brokers(), topic
}

func sendBenchEngine(b *testing.B, brokers []string) *kstream.Engine {
	b.Helper()
	eng, err := kstream.NewEngine(kstream.Brokers(brokers...),
		kstream.Logger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), benchSessionLimit)
	defer cancel()
	if err := eng.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := eng.Stop(ctx); err != nil {
			b.Errorf("Stop: %v", err)
		}
	})
	return eng
}

func BenchmarkSend(b *testing.B) {
	brokers, topic := sendBenchCluster(b)
	value := make([]byte, benchValueSize)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()

	b.Run("franz-go", func(b *testing.B) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: value}).FirstErr(); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: value}).FirstErr(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("engine", func(b *testing.B) {
		eng := sendBenchEngine(b, brokers)
		if _, err := eng.Send(ctx, topic, value); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := eng.Send(ctx, topic, value); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("engine-background", func(b *testing.B) {
		// A context that cannot end: franz-go has nothing to watch.
		eng := sendBenchEngine(b, brokers)
		bg := context.Background()
		if _, err := eng.Send(bg, topic, value); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := eng.Send(bg, topic, value); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("engine-key", func(b *testing.B) {
		eng := sendBenchEngine(b, brokers)
		key := []byte("key")
		if _, err := eng.Send(ctx, topic, value, kstream.WithKey(key)); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := eng.Send(ctx, topic, value, kstream.WithKey(key)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("engine-partition", func(b *testing.B) {
		eng := sendBenchEngine(b, brokers)
		if _, err := eng.Send(ctx, topic, value, kstream.ToPartition(1)); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := eng.Send(ctx, topic, value, kstream.ToPartition(1)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("producer", func(b *testing.B) {
		eng := sendBenchEngine(b, brokers)
		p := kstream.NewProducer(eng, topic, codec.Bytes())
		if _, err := p.Send(ctx, nil, value); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Send(ctx, nil, value); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// allocsPerRecord reports the process's allocations per op from ms0 on,
// as a fraction: -benchmem rounds allocs/op to an integer.
func allocsPerRecord(b *testing.B, ms0 *runtime.MemStats) {
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N), "allocs/record")
}

func BenchmarkSendAsync(b *testing.B) {
	brokers, topic := sendBenchCluster(b)
	value := make([]byte, benchValueSize)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	var failed atomic.Int64

	// franz-go with its defaults (a 10 ms linger, 50 000 buffered records,
	// sticky partitioning), and with the engine's producer settings (no
	// linger, 10 000, adaptive uniform bytes): the SendAsync target's
	// baseline.
	franz := func(b *testing.B, opts ...kgo.Opt) {
		cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(brokers...))...)
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: value}).FirstErr(); err != nil {
			b.Fatal(err)
		}
		cb := func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
			}
		}
		b.ReportAllocs()
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		for b.Loop() {
			cl.Produce(ctx, &kgo.Record{Topic: topic, Value: value}, cb)
		}
		if err := cl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		allocsPerRecord(b, &ms0)
	}
	b.Run("franz-go", func(b *testing.B) { franz(b) })
	b.Run("franz-go-engine", func(b *testing.B) {
		franz(b, kgo.ProducerLinger(0), kgo.MaxBufferedRecords(kstream.DefaultMaxBufferedRecords),
			kgo.RecordPartitioner(kgo.UniformBytesPartitioner(64<<10, true, true, nil)))
	})
	done := func(_ kstream.RecordMetadata, err error) {
		if err != nil {
			failed.Add(1)
		}
	}
	// kstream runs send once per record, then flushes eng.
	kstreamRun := func(b *testing.B, eng *kstream.Engine, send func()) {
		b.ReportAllocs()
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		for b.Loop() {
			send()
		}
		if err := eng.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		allocsPerRecord(b, &ms0)
	}
	b.Run("engine", func(b *testing.B) {
		eng := sendBenchEngine(b, brokers)
		if _, err := eng.Send(ctx, topic, value); err != nil {
			b.Fatal(err)
		}
		kstreamRun(b, eng, func() { eng.SendAsync(ctx, topic, value, done) })
	})
	// engine-bg: under a context that cannot end, a record is not
	// attached to a context watch.
	b.Run("engine-bg", func(b *testing.B) {
		eng := sendBenchEngine(b, brokers)
		if _, err := eng.Send(ctx, topic, value); err != nil {
			b.Fatal(err)
		}
		kstreamRun(b, eng, func() { eng.SendAsync(context.Background(), topic, value, done) })
	})
	b.Run("producer", func(b *testing.B) {
		eng := sendBenchEngine(b, brokers)
		p := kstream.NewProducer(eng, topic, codec.Bytes())
		if _, err := p.Send(ctx, nil, value); err != nil {
			b.Fatal(err)
		}
		kstreamRun(b, eng, func() { p.SendAsync(ctx, nil, value, done) })
	})
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d sends failed", n)
	}
}
