package schemaregistry_test

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gokstreams/kstreams/codec/schemaregistry"
	"github.com/gokstreams/kstreams/codec/schemaregistry/internal/testpb"
)

func testOrder() *testpb.Order {
	return &testpb.Order{
		Id:       7,
		Customer: "ada",
		Items:    []*testpb.Order_Item{{Sku: "book", Quantity: 2, Price: &testpb.Money{Currency: "EUR", Units: 25}}},
		Labels:   map[string]string{"channel": "web"},
		PlacedAt: timestamppb.New(time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)),
		Status:   testpb.Status_PLACED,
		Note:     proto.String("gift"),
		Payment:  &testpb.Order_Card{Card: "4111"},
		Coupon:   "SPRING",
		Audits:   []*testpb.Order_Audit{{By: "ops"}},
	}
}

// protoSerde is franz-go's Serde set up for one message type at an ID and
// message index: the independent reading and writing of the wire format.
func protoSerde[T proto.Message](id int, v T, index ...int) *sr.Serde {
	var s sr.Serde
	s.Register(id, v, sr.Index(index...),
		sr.EncodeFn(func(v any) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }),
		sr.DecodeFn(func(b []byte, v any) error { return proto.Unmarshal(b, v.(proto.Message)) }))
	return &s
}

func TestProtobufRoundTripAndWireFormat(t *testing.T) {
	reg := newRegistry(t)
	cl := reg.client(t)
	c, err := schemaregistry.Protobuf[*testpb.Order](cl, "orders-value", schemaregistry.AutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	in := testOrder()
	b, err := c.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	// The imported file was registered first, under its path, and is
	// referenced; the well-known timestamp.proto is not.
	dep, ok := reg.GetSchema("shop/money.proto", 1)
	if !ok || dep.Type != sr.TypeProtobuf {
		t.Fatalf("shop/money.proto not registered as a Protobuf schema: %+v", dep)
	}
	ss, ok := reg.GetSchema("orders-value", 1)
	if !ok {
		t.Fatal("orders-value version 1 not registered")
	}
	wantRefs := []sr.SchemaReference{{Name: "shop/money.proto", Subject: "shop/money.proto", Version: 1}}
	if diff := cmp.Diff(wantRefs, ss.References); diff != "" {
		t.Fatalf("references (-want +got):\n%s", diff)
	}

	// By hand: magic byte, ID, the one-byte index list of the first
	// message, then the message as proto.Marshal writes it.
	if b[0] != 0 || int(binary.BigEndian.Uint32(b[1:5])) != ss.ID || b[5] != 0 {
		t.Fatalf("header % x, want 00, ID %d, index byte 00", b[:6], ss.ID)
	}
	var direct testpb.Order
	if err := proto.Unmarshal(b[6:], &direct); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, &direct, protocmp.Transform()); diff != "" {
		t.Fatalf("proto.Unmarshal of the payload (-sent +read):\n%s", diff)
	}
	// franz-go's Serde reads it and writes the same.
	serde := protoSerde(ss.ID, &testpb.Order{}, 0)
	var viaSerde testpb.Order
	if err := serde.Decode(b, &viaSerde); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, &viaSerde, protocmp.Transform()); diff != "" {
		t.Fatalf("sr.Serde read back (-sent +read):\n%s", diff)
	}
	sb, err := serde.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sb[:6], b[:6]) {
		t.Fatalf("sr.Serde header % x, codec header % x", sb[:6], b[:6])
	}
	got, err := c.Decode(sb)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, got, protocmp.Transform()); diff != "" {
		t.Fatalf("Decode of sr.Serde's bytes (-sent +decoded):\n%s", diff)
	}
}

// Messages other than a file's first carry their index path; Serde, given
// the same path, agrees byte for byte.
func TestProtobufMessageIndexes(t *testing.T) {
	reg := newRegistry(t)
	cl := reg.client(t)
	t.Run("second message", func(t *testing.T) {
		c, err := schemaregistry.Protobuf[*testpb.Refund](cl, "orders", schemaregistry.Strategy(schemaregistry.TopicRecordName), schemaregistry.AutoRegister())
		if err != nil {
			t.Fatal(err)
		}
		in := &testpb.Refund{OrderId: 7, Reason: &testpb.Refund_Reason{Text: "late"}, History: map[int32]*testpb.Refund_Reason{1: {Text: "x"}}}
		b, err := c.Encode(in)
		if err != nil {
			t.Fatal(err)
		}
		ss, ok := reg.GetSchema("orders-kstreams.test.shop.Refund", 1)
		if !ok {
			t.Fatal("TopicRecordName did not register under orders-kstreams.test.shop.Refund")
		}
		// Count 1, index 1, as zigzag varints.
		if want := []byte{0, 0, 0, 0, byte(ss.ID), 2, 2}; !bytes.Equal(b[:7], want) {
			t.Fatalf("header % x, want % x", b[:7], want)
		}
		sb, err := protoSerde(ss.ID, &testpb.Refund{}, 1).Encode(in)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sb[:7], b[:7]) {
			t.Fatalf("sr.Serde header % x, codec header % x", sb[:7], b[:7])
		}
		got, err := c.Decode(sb)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(in, got, protocmp.Transform()); diff != "" {
			t.Fatalf("(-sent +decoded):\n%s", diff)
		}
	})
	t.Run("nested message after a map field", func(t *testing.T) {
		c, err := schemaregistry.Protobuf[*testpb.Order_Audit](cl, "", schemaregistry.Strategy(schemaregistry.RecordName), schemaregistry.AutoRegister())
		if err != nil {
			t.Fatal(err)
		}
		in := &testpb.Order_Audit{By: "ops"}
		b, err := c.Encode(in)
		if err != nil {
			t.Fatal(err)
		}
		ss, ok := reg.GetSchema("kstreams.test.shop.Order.Audit", 1)
		if !ok {
			t.Fatal("RecordName did not register under kstreams.test.shop.Order.Audit")
		}
		// Order is [0]; in it Item is 0, LabelsEntry 1, Audit 2: [0, 2].
		if want := []byte{0, 0, 0, 0, byte(ss.ID), 4, 0, 4}; !bytes.Equal(b[:8], want) {
			t.Fatalf("header % x, want % x", b[:8], want)
		}
		var out testpb.Order_Audit
		if err := protoSerde(ss.ID, &testpb.Order_Audit{}, 0, 2).Decode(b, &out); err != nil || out.By != "ops" {
			t.Fatalf("sr.Serde with index [0 2]: %v, %v", &out, err)
		}
	})
}

//go:embed internal/testpb/order_v1.binpb
var orderV1Set []byte

// orderV1Desc is version 1 of Order (no coupon field), as a descriptor of
// its own registry: the producer of the evolution tests.
func orderV1Desc(t testing.TB) protoreflect.MessageDescriptor {
	t.Helper()
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(orderV1Set, &set); err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatal(err)
	}
	d, err := files.FindDescriptorByName("kstreams.test.shop.Order")
	if err != nil {
		t.Fatal(err)
	}
	return d.(protoreflect.MessageDescriptor)
}

func TestProtobufEvolutionBothWays(t *testing.T) {
	reg := newRegistry(t)
	cl := reg.client(t)
	md := orderV1Desc(t)
	if md.Fields().ByName("coupon") != nil {
		t.Fatal("the v1 descriptor has coupon")
	}
	v1, err := schemaregistry.Protobuf[*dynamicpb.Message](cl, "orders-value", schemaregistry.MessageDescriptor(md), schemaregistry.AutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	v2, err := schemaregistry.Protobuf[*testpb.Order](cl, "orders-value", schemaregistry.AutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	old := dynamicpb.NewMessage(md)
	old.Set(md.Fields().ByName("id"), protoreflect.ValueOfInt64(1))
	old.Set(md.Fields().ByName("customer"), protoreflect.ValueOfString("ada"))
	oldBytes, err := v1.Encode(old)
	if err != nil {
		t.Fatal(err)
	}
	newBytes, err := v2.Encode(testOrder())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(oldBytes[1:5], newBytes[1:5]) {
		t.Fatal("v1 and v2 written with the same schema ID")
	}
	if _, ok := reg.GetSchema("orders-value", 2); !ok {
		t.Fatal("v2 not registered as version 2")
	}

	// v2 reads v1: the new field is empty.
	got, err := v2.Decode(oldBytes)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&testpb.Order{Id: 1, Customer: "ada"}, got, protocmp.Transform()); diff != "" {
		t.Fatalf("v1 record read by v2 (-want +got):\n%s", diff)
	}
	// v1 reads v2: the new field is kept as an unknown field, so that
	// writing the message again loses nothing.
	back, err := v1.Decode(newBytes)
	if err != nil {
		t.Fatal(err)
	}
	if back.Get(md.Fields().ByName("customer")).String() != "ada" || len(back.GetUnknown()) == 0 {
		t.Fatalf("v2 record read by v1: %v, unknown fields % x", back, back.GetUnknown())
	}
	again, err := v1.Encode(back)
	if err != nil {
		t.Fatal(err)
	}
	round, err := v2.Decode(again)
	if err != nil {
		t.Fatal(err)
	}
	if round.GetCoupon() != "SPRING" {
		t.Fatalf("coupon lost through a v1 reader and writer: %v", round)
	}
}

func TestProtobufBadInput(t *testing.T) {
	reg := newRegistry(t)
	cl := reg.client(t)
	const subject = "orders-value"
	c, err := schemaregistry.Protobuf[*testpb.Order](cl, subject, schemaregistry.AutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	valid, err := c.Encode(testOrder())
	if err != nil {
		t.Fatal(err)
	}
	id := int(valid[4])
	avroID := reg.register(t, "avro-value", sr.Schema{Schema: orderV1Schema})
	hdr := func(id int, rest ...byte) []byte { return append([]byte{0, 0, 0, 0, byte(id)}, rest...) }
	for _, tc := range []struct {
		name string
		in   []byte
		id   int
		want error
	}{
		{"wrong magic byte", []byte{8, 7, 18, 3}, 0, schemaregistry.ErrMagicByte},
		{"truncated header", []byte{0, 0}, 0, schemaregistry.ErrTruncated},
		{"no message indexes", hdr(id), id, schemaregistry.ErrTruncated},
		{"indexes cut short", hdr(id, 4, 0), id, schemaregistry.ErrTruncated},
		{"negative index count", hdr(id, 1, 0), id, schemaregistry.ErrBadIndexes},
		{"negative index", hdr(id, 2, 1), id, schemaregistry.ErrBadIndexes},
		{"unknown schema ID", hdr(99, 0, 8, 1), 99, schemaregistry.ErrUnknownSchema},
		{"another message of the schema", hdr(id, 2, 2, 8, 1), id, schemaregistry.ErrSchemaMismatch},
		{"no message at the indexes", hdr(id, 2, 10, 8, 1), id, schemaregistry.ErrSchemaMismatch},
		{"schema of another format", hdr(avroID, 0, 8, 1), avroID, schemaregistry.ErrSchemaMismatch},
		{"not Protobuf", hdr(id, 0, 0xff, 0xff), id, schemaregistry.ErrInvalidValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := c.Decode(tc.in)
			badInput(t, err, subject, tc.id, tc.want)
			if v != nil {
				t.Fatalf("failed Decode returned %v, want nil", v)
			}
			if _, err := c.Decode(valid); err != nil {
				t.Fatalf("a good record after the bad one: %v", err)
			}
		})
	}
	_, err = c.Decode(hdr(id, 2, 2, 8, 1))
	if want := "message indexes [1] name message kstreams.test.shop.Refund in schema"; !contains(err, want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}

func contains(err error, s string) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte(s))
}

// Without AutoRegister the codec writes with the subject's latest version
// (or the one Version names), finding its message indexes there.
func TestProtobufLatestAndVersion(t *testing.T) {
	reg := newRegistry(t)
	cl := reg.client(t)
	// Version 1: a schema in which Order is the second message.
	v1 := reg.register(t, "orders-value", sr.Schema{Type: sr.TypeProtobuf, Schema: `syntax = "proto3";
package kstreams.test.shop;
message Other {}
message Order { int64 id = 1; }`})
	c, err := schemaregistry.Protobuf[*testpb.Order](cl, "orders-value")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Encode(&testpb.Order{Id: 5})
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0, 0, 0, 0, byte(v1), 2, 2}; !bytes.Equal(b[:7], want) {
		t.Fatalf("header % x, want % x: Order is message [1] of the registered schema", b[:7], want)
	}
	if got, err := c.Decode(b); err != nil || got.GetId() != 5 {
		t.Fatalf("Decode = %v, %v", got, err)
	}
	// A later version without Order: a codec pinned to it cannot encode.
	reg.register(t, "orders-value", sr.Schema{Type: sr.TypeProtobuf, Schema: `syntax = "proto3"; package kstreams.test.shop; message Other {}`})
	pinned, err := schemaregistry.Protobuf[*testpb.Order](cl, "orders-value", schemaregistry.Version(2))
	if err != nil {
		t.Fatal(err)
	}
	_, err = pinned.Encode(&testpb.Order{})
	badInput(t, err, "orders-value", 0, schemaregistry.ErrSchemaMismatch)
}

func TestProtobufOptions(t *testing.T) {
	cl := newRegistry(t).client(t)
	for _, tc := range []struct {
		name string
		err  func() error
	}{
		{"dynamic without descriptor", func() error {
			_, err := schemaregistry.Protobuf[*dynamicpb.Message](cl, "s")
			return err
		}},
		{"Schema", func() error {
			_, err := schemaregistry.Protobuf[*testpb.Order](cl, "s", schemaregistry.Schema("x"))
			return err
		}},
		{"descriptor of another type", func() error {
			_, err := schemaregistry.Protobuf[*testpb.Order](cl, "s", schemaregistry.MessageDescriptor((&testpb.Refund{}).ProtoReflect().Descriptor()))
			return err
		}},
		{"interface T", func() error {
			_, err := schemaregistry.Protobuf[proto.Message](cl, "s")
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			var e *schemaregistry.Error
			if !errors.As(err, &e) || e.Op != "setup" {
				t.Fatalf("err = %v, want a setup *Error", err)
			}
		})
	}
}
