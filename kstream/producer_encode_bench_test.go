package kstream_test

// What encoding costs a Producer: Producer[string] with codec.String (whose
// Encode allocates the value's bytes, and which is a codec.AppendEncoder)
// against Producer[[]byte] with codec.Bytes (whose Encode returns the
// value as it is), both for Send and for SendAsync. Run with
//
//	go test -run '^$' -bench 'BenchmarkSendEncode' -benchmem ./kstream
//
// These figures decided whether Producer uses codec.AppendEncoder (see
// docs/decisions.md).

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

func BenchmarkSendEncode(b *testing.B) {
	brokers, topic := sendBenchCluster(b)
	bytesValue := make([]byte, benchValueSize)
	stringValue := strings.Repeat("x", benchValueSize)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	var failed atomic.Int64
	done := func(_ kstream.RecordMetadata, err error) {
		if err != nil {
			failed.Add(1)
		}
	}

	b.Run("send-bytes", func(b *testing.B) {
		p := kstream.NewProducer(sendBenchEngine(b, brokers), topic, codec.Bytes())
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Send(ctx, nil, bytesValue); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("send-string", func(b *testing.B) {
		p := kstream.NewProducer(sendBenchEngine(b, brokers), topic, codec.String())
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Send(ctx, nil, stringValue); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("async-bytes", func(b *testing.B) {
		eng := sendBenchEngine(b, brokers)
		p := kstream.NewProducer(eng, topic, codec.Bytes())
		b.ReportAllocs()
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		for b.Loop() {
			p.SendAsync(ctx, nil, bytesValue, done)
		}
		if err := eng.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		allocsPerRecord(b, &ms0)
	})
	b.Run("async-string", func(b *testing.B) {
		eng := sendBenchEngine(b, brokers)
		p := kstream.NewProducer(eng, topic, codec.String())
		b.ReportAllocs()
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		for b.Loop() {
			p.SendAsync(ctx, nil, stringValue, done)
		}
		if err := eng.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		allocsPerRecord(b, &ms0)
	})
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d sends failed", n)
	}
}
