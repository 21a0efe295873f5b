package schemaregistry_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/codec/schemaregistry"
	"github.com/gokstreams/kstreams/codec/schemaregistry/internal/testpb"
)

// Fuzz targets for decoding hostile values whose header names a known
// schema: the payload (and, for Protobuf, the message indexes) is fuzzed.
// `go test` runs them over their seeds; `make fuzz` fuzzes each for a
// bounded time.

// checkFuzzErr: a failed decode is a bad record (an *Error with one of the
// causes), never "unavailable", and returns the zero value.
func checkFuzzErr(t *testing.T, err error) {
	t.Helper()
	var e *schemaregistry.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *schemaregistry.Error", err, err)
	}
	if errors.Is(err, codec.ErrUnavailable) {
		t.Fatalf("a bad payload gave an unavailable error: %v", err)
	}
	for _, cause := range []error{schemaregistry.ErrInvalidValue, schemaregistry.ErrTruncated, schemaregistry.ErrBadIndexes, schemaregistry.ErrSchemaMismatch} {
		if errors.Is(err, cause) {
			return
		}
	}
	t.Fatalf("error %v has none of the bad-record causes", err)
}

// FuzzAvroPayload: any payload after a known schema ID decodes or fails as
// a bad record, without panicking; what decodes encodes and decodes back to
// the same value.
func FuzzAvroPayload(f *testing.F) {
	reg := newRegistry(f)
	id := reg.register(f, "s", sr.Schema{Schema: orderV2Schema})
	c, err := schemaregistry.Avro[orderV2](reg.client(f), "s")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(mustAvro(f, orderV2Schema, orderV2{ID: 1, Customer: "ada", Amount: 2, Currency: "EUR", Note: ptr("n")}))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	hdr := []byte{0, 0, 0, 0, byte(id)}
	f.Fuzz(func(t *testing.T, payload []byte) {
		v, err := c.Decode(append(hdr, payload...))
		if err != nil {
			checkFuzzErr(t, err)
			if diff := cmp.Diff(orderV2{}, v); diff != "" {
				t.Fatalf("failed Decode returned a value:\n%s", diff)
			}
			return
		}
		b, err := c.Encode(v)
		if err != nil {
			t.Fatalf("Encode of a decoded value %+v: %v", v, err)
		}
		back, err := c.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(v, back, cmpopts.EquateNaNs()); diff != "" {
			t.Fatalf("decode, encode, decode changed the value (-first +second):\n%s", diff)
		}
	})
}

// FuzzProtobufPayload: any message indexes and payload after a known
// schema ID decode or fail as a bad record; what decodes is what
// proto.Unmarshal reads from the payload.
func FuzzProtobufPayload(f *testing.F) {
	reg := newRegistry(f)
	c, err := schemaregistry.Protobuf[*testpb.Order](reg.client(f), "s", schemaregistry.AutoRegister())
	if err != nil {
		f.Fatal(err)
	}
	valid, err := c.Encode(testOrder())
	if err != nil {
		f.Fatal(err)
	}
	hdr := valid[:5]
	f.Add(valid[5:])
	f.Add([]byte{0})
	f.Add([]byte{2, 2, 8, 1})
	f.Add([]byte{4, 0, 4})
	f.Fuzz(func(t *testing.T, rest []byte) {
		v, err := c.Decode(append(hdr, rest...))
		if err != nil {
			checkFuzzErr(t, err)
			if v != nil {
				t.Fatalf("failed Decode returned %v", v)
			}
			return
		}
		// The indexes, read independently: a count of 0 (the short form of
		// [0]) or a count of 1 and the index 0; Order is the first message.
		n, l := binary.Varint(rest)
		payload := rest[max(l, 0):]
		if n == 1 {
			i, l2 := binary.Varint(payload)
			if i != 0 || l2 <= 0 {
				t.Fatalf("decoded with message index %d (% x), which does not name Order", i, rest)
			}
			payload = payload[l2:]
		} else if n != 0 || l <= 0 {
			t.Fatalf("decoded with %d message indexes (% x): Order's are [0]", n, rest)
		}
		var want testpb.Order
		if err := proto.Unmarshal(payload, &want); err != nil {
			t.Fatalf("Decode succeeded, proto.Unmarshal of the payload fails: %v", err)
		}
		if diff := cmp.Diff(&want, v, protocmp.Transform()); diff != "" {
			t.Fatalf("(-proto.Unmarshal +Decode):\n%s", diff)
		}
	})
}
