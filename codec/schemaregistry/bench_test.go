package schemaregistry_test

import (
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"google.golang.org/protobuf/proto"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/codec/schemaregistry"
	"github.com/gokstreams/kstreams/codec/schemaregistry/internal/testpb"
)

// Decoding through a codec against the same library called directly on
// the same bytes (the codec's input less its header): the codec's cost is
// the header, the cache lookup and the check of the writer's schema.
//
//	go test -run '^$' -bench Decode -benchmem -count 10 ./codec/schemaregistry
//
// The Interleaved benchmarks alternate the two in one loop and report the
// ratio; docs/codecs.md has the figures.

type benchAvro struct {
	codec   codec.Codec[orderV2]
	schema  avro.Schema
	value   []byte
	payload []byte
}

func newBenchAvro(tb testing.TB) benchAvro {
	reg := newRegistry(tb)
	c, err := schemaregistry.Avro[orderV2](reg.client(tb), "s", schemaregistry.Schema(orderV2Schema), schemaregistry.AutoRegister())
	if err != nil {
		tb.Fatal(err)
	}
	b, err := c.Encode(orderV2{ID: 123456, Customer: "ada lovelace", Amount: 12.5, Currency: "GBP", Note: ptr("leave at the door")})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Decode(b); err != nil { // the writer's schema, cached
		tb.Fatal(err)
	}
	return benchAvro{c, avro.MustParse(orderV2Schema), b, b[5:]}
}

type benchProto struct {
	codec   codec.Codec[*testpb.Order]
	value   []byte
	payload []byte
}

func newBenchProto(tb testing.TB) benchProto {
	reg := newRegistry(tb)
	c, err := schemaregistry.Protobuf[*testpb.Order](reg.client(tb), "s", schemaregistry.AutoRegister())
	if err != nil {
		tb.Fatal(err)
	}
	b, err := c.Encode(testOrder())
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Decode(b); err != nil {
		tb.Fatal(err)
	}
	return benchProto{c, b, b[6:]}
}

func BenchmarkAvroDecode(b *testing.B) {
	s := newBenchAvro(b)
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(s.value)))
		for b.Loop() {
			if _, err := s.codec.Decode(s.value); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hamba-avro", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(s.value)))
		for b.Loop() {
			var v orderV2
			if err := avro.Unmarshal(s.schema, s.payload, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkProtobufDecode(b *testing.B) {
	s := newBenchProto(b)
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(s.value)))
		for b.Loop() {
			if _, err := s.codec.Decode(s.value); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto-unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(s.value)))
		for b.Loop() {
			v := new(testpb.Order)
			if err := proto.Unmarshal(s.payload, v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAvroEncode(b *testing.B) {
	s := newBenchAvro(b)
	v := orderV2{ID: 1, Customer: "ada", Amount: 2, Currency: "EUR"}
	app := s.codec.(codec.AppendEncoder[orderV2])
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = app.AppendEncode(buf[:0], v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProtobufEncode(b *testing.B) {
	s := newBenchProto(b)
	v := testOrder()
	app := s.codec.(codec.AppendEncoder[*testpb.Order])
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = app.AppendEncode(buf[:0], v); err != nil {
			b.Fatal(err)
		}
	}
}

// interleaved times decode through the codec and with the library
// directly in alternating batches of 64 records (taking turns at going
// first), so that a change of load
// on the machine during the run weighs on both alike, and reports the
// codec's throughput as a fraction of the library's ("x-library", the
// figure the targets are stated in) beside both times per record.
func interleaved(b *testing.B, viaCodec, direct func()) {
	const batch = 64
	var tc, td time.Duration
	first, second, t1st, t2nd := viaCodec, direct, &tc, &td
	for b.Loop() {
		t0 := time.Now()
		for range batch {
			first()
		}
		t1 := time.Now()
		for range batch {
			second()
		}
		*t1st += t1.Sub(t0)
		*t2nd += time.Since(t1)
		// Take turns at going first.
		first, second, t1st, t2nd = second, first, t2nd, t1st
	}
	n := float64(b.N * batch)
	b.ReportMetric(float64(tc.Nanoseconds())/n, "codec-ns/rec")
	b.ReportMetric(float64(td.Nanoseconds())/n, "library-ns/rec")
	b.ReportMetric(float64(td)/float64(tc), "x-library")
}

func BenchmarkAvroDecodeInterleaved(b *testing.B) {
	s := newBenchAvro(b)
	interleaved(b,
		func() {
			if _, err := s.codec.Decode(s.value); err != nil {
				b.Fatal(err)
			}
		},
		func() {
			var v orderV2
			if err := avro.Unmarshal(s.schema, s.payload, &v); err != nil {
				b.Fatal(err)
			}
		})
}

func BenchmarkProtobufDecodeInterleaved(b *testing.B) {
	s := newBenchProto(b)
	interleaved(b,
		func() {
			if _, err := s.codec.Decode(s.value); err != nil {
				b.Fatal(err)
			}
		},
		func() {
			if err := proto.Unmarshal(s.payload, new(testpb.Order)); err != nil {
				b.Fatal(err)
			}
		})
}

// The codecs allocate, per decoded record, exactly what the library called
// directly does: the header, the cache and the checks allocate nothing.
func TestDecodeAllocatesWhatTheLibraryDoes(t *testing.T) {
	a := newBenchAvro(t)
	codecAllocs := testing.AllocsPerRun(200, func() { a.codec.Decode(a.value) })
	direct := testing.AllocsPerRun(200, func() {
		var v orderV2
		avro.Unmarshal(a.schema, a.payload, &v)
	})
	if codecAllocs > direct {
		t.Errorf("Avro: %v allocations per decode through the codec, %v with hamba/avro directly", codecAllocs, direct)
	}
	p := newBenchProto(t)
	codecAllocs = testing.AllocsPerRun(200, func() { p.codec.Decode(p.value) })
	direct = testing.AllocsPerRun(200, func() { proto.Unmarshal(p.payload, new(testpb.Order)) })
	if codecAllocs > direct {
		t.Errorf("Protobuf: %v allocations per decode through the codec, %v with proto.Unmarshal directly", codecAllocs, direct)
	}
}
