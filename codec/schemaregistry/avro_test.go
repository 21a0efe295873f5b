package schemaregistry_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/codec/schemaregistry"
)

const orderV1Schema = `{"type":"record","name":"Order","namespace":"shop","fields":[
	{"name":"id","type":"long"},
	{"name":"customer","type":"string"},
	{"name":"amount","type":"double"}]}`

// Version 2 adds two fields with defaults: backward and forward compatible.
const orderV2Schema = `{"type":"record","name":"Order","namespace":"shop","fields":[
	{"name":"id","type":"long"},
	{"name":"customer","type":"string"},
	{"name":"amount","type":"double"},
	{"name":"currency","type":"string","default":"EUR"},
	{"name":"note","type":["null","string"],"default":null}]}`

// amount changed from double to string: neither way compatible.
const orderBadSchema = `{"type":"record","name":"Order","namespace":"shop","fields":[
	{"name":"id","type":"long"},
	{"name":"customer","type":"string"},
	{"name":"amount","type":"string"}]}`

type orderV1 struct {
	ID       int64   `avro:"id"`
	Customer string  `avro:"customer"`
	Amount   float64 `avro:"amount"`
}

type orderV2 struct {
	ID       int64   `avro:"id"`
	Customer string  `avro:"customer"`
	Amount   float64 `avro:"amount"`
	Currency string  `avro:"currency"`
	Note     *string `avro:"note"`
}

func ptr[T any](v T) *T { return &v }

func TestAvroRoundTripAndWireFormat(t *testing.T) {
	reg := newRegistry(t)
	cl := reg.client(t)
	c, err := schemaregistry.Avro[orderV2](cl, "orders-value", schemaregistry.Schema(orderV2Schema), schemaregistry.AutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	in := orderV2{ID: 7, Customer: "ada", Amount: 12.5, Currency: "GBP", Note: ptr("gift")}
	b, err := c.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	ss, ok := reg.GetSchema("orders-value", 1)
	if !ok {
		t.Fatal("Encode with AutoRegister did not register the schema as version 1 of orders-value")
	}

	// The bytes, read without the codec: the header by hand, the value by
	// hamba/avro with the schema as registered; and by franz-go's Serde.
	if b[0] != 0 || int(binary.BigEndian.Uint32(b[1:5])) != ss.ID {
		t.Fatalf("header % x, want magic byte 0 and schema ID %d", b[:5], ss.ID)
	}
	schema := avro.MustParse(ss.Schema.Schema)
	var direct orderV2
	if err := avro.Unmarshal(schema, b[5:], &direct); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, direct); diff != "" {
		t.Fatalf("hamba/avro read back (-sent +read):\n%s", diff)
	}
	var serde sr.Serde
	serde.Register(ss.ID, orderV2{},
		sr.EncodeFn(func(v any) ([]byte, error) { return avro.Marshal(schema, v) }),
		sr.DecodeFn(func(b []byte, v any) error { return avro.Unmarshal(schema, b, v) }))
	var viaSerde orderV2
	if err := serde.Decode(b, &viaSerde); err != nil {
		t.Fatalf("sr.Serde.Decode of the codec's bytes: %v", err)
	}
	if diff := cmp.Diff(in, viaSerde); diff != "" {
		t.Fatalf("sr.Serde read back (-sent +read):\n%s", diff)
	}
	// The other way: what sr.Serde writes, the codec reads.
	other := orderV2{ID: 8, Customer: "grace", Amount: 1, Currency: "EUR"}
	sb, err := serde.Encode(other)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sb[:5], b[:5]) {
		t.Fatalf("sr.Serde header % x, codec header % x", sb[:5], b[:5])
	}
	got, err := c.Decode(sb)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(other, got); diff != "" {
		t.Fatalf("Decode of sr.Serde's bytes (-sent +decoded):\n%s", diff)
	}
	// And the codec's own round trip, appending.
	app, err := c.(codec.AppendEncoder[orderV2]).AppendEncode([]byte("prefix"), in)
	if err != nil || !bytes.Equal(app[6:], b) || string(app[:6]) != "prefix" {
		t.Fatalf("AppendEncode = %q, %v; want the prefix then the Encode bytes", app, err)
	}
	back, err := c.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, back); diff != "" {
		t.Fatalf("round trip (-sent +decoded):\n%s", diff)
	}
}

// Records written with an older schema decode into the newer T with the
// new fields' defaults, and records written with the newer schema decode
// into the older T with the new fields dropped.
func TestAvroEvolutionBothWays(t *testing.T) {
	reg := newRegistry(t)
	cl := reg.client(t)
	v1, err := schemaregistry.Avro[orderV1](cl, "orders-value", schemaregistry.Schema(orderV1Schema), schemaregistry.AutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	v2, err := schemaregistry.Avro[orderV2](cl, "orders-value", schemaregistry.Schema(orderV2Schema), schemaregistry.AutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	old, err := v1.Encode(orderV1{ID: 1, Customer: "ada", Amount: 3})
	if err != nil {
		t.Fatal(err)
	}
	newer, err := v2.Encode(orderV2{ID: 2, Customer: "grace", Amount: 4, Currency: "USD", Note: ptr("rush")})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(old[:5], newer[:5]) {
		t.Fatalf("both versions written with schema ID % x", old[1:5])
	}

	gotOld, err := v2.Decode(old)
	if err != nil {
		t.Fatalf("v2 reader, v1 record: %v", err)
	}
	if diff := cmp.Diff(orderV2{ID: 1, Customer: "ada", Amount: 3, Currency: "EUR"}, gotOld); diff != "" {
		t.Fatalf("v1 record read as v2 (-want +got):\n%s", diff)
	}
	gotNew, err := v1.Decode(newer)
	if err != nil {
		t.Fatalf("v1 reader, v2 record: %v", err)
	}
	if diff := cmp.Diff(orderV1{ID: 2, Customer: "grace", Amount: 4}, gotNew); diff != "" {
		t.Fatalf("v2 record read as v1 (-want +got):\n%s", diff)
	}

	// Without Schema the reader's schema is the subject's latest version
	// (v2 now): the v1 record gets v2's defaults.
	latest, err := schemaregistry.Avro[orderV2](cl, "orders-value")
	if err != nil {
		t.Fatal(err)
	}
	got, err := latest.Decode(old)
	if err != nil || got.Currency != "EUR" {
		t.Fatalf("latest-version reader: %+v, %v", got, err)
	}
	// And it encodes with the latest version's ID.
	b, err := latest.Encode(orderV2{ID: 3, Customer: "x", Currency: "EUR"})
	if err != nil || !bytes.Equal(b[:5], newer[:5]) {
		t.Fatalf("latest-version writer header % x (%v), want % x", b[:min(5, len(b))], err, newer[:5])
	}
	// Version pins an older version for writing.
	pinned, err := schemaregistry.Avro[orderV1](cl, "orders-value", schemaregistry.Version(1))
	if err != nil {
		t.Fatal(err)
	}
	b, err = pinned.Encode(orderV1{ID: 4})
	if err != nil || !bytes.Equal(b[:5], old[:5]) {
		t.Fatalf("Version(1) writer header % x (%v), want % x", b[:min(5, len(b))], err, old[:5])
	}
}

// badInput checks that err is the codec's *Error naming the subject and
// ID, wraps want, and is not unavailable.
func badInput(t *testing.T, err error, subject string, id int, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one wrapping %v", want)
	}
	var e *schemaregistry.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *schemaregistry.Error", err, err)
	}
	if e.Subject != subject || e.ID != id {
		t.Fatalf("error %q names subject %q ID %d, want %q and %d", err, e.Subject, e.ID, subject, id)
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %q does not wrap %v", err, want)
	}
	if errors.Is(err, codec.ErrUnavailable) {
		t.Fatalf("a bad record's error %q wraps codec.ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), subject) || (id != 0 && !strings.Contains(err.Error(), "schema ID "+strconv.Itoa(id))) {
		t.Fatalf("message %q does not name the subject and ID", err)
	}
}

func TestAvroBadInput(t *testing.T) {
	reg := newRegistry(t)
	lookups := countLookups(reg)
	cl := reg.client(t)
	const subject = "orders-value"
	good := reg.register(t, subject, sr.Schema{Schema: orderV1Schema})
	bad := reg.register(t, "other-value", sr.Schema{Schema: orderBadSchema})
	jsonID := reg.register(t, "json-value", sr.Schema{Schema: `{"type":"object"}`, Type: sr.TypeJSON})
	c, err := schemaregistry.Avro[orderV1](cl, subject, schemaregistry.Schema(orderV1Schema))
	if err != nil {
		t.Fatal(err)
	}
	valid := append([]byte{0, 0, 0, 0, byte(good)}, mustAvro(t, orderV1Schema, orderV1{ID: 1, Customer: "a", Amount: 2})...)
	if _, err := c.Decode(valid); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		id   int
		want error
	}{
		{"empty", []byte{}, 0, schemaregistry.ErrTruncated},
		{"wrong magic byte", []byte(`{"id":1}`), 0, schemaregistry.ErrMagicByte},
		{"truncated header", []byte{0, 0, 0}, 0, schemaregistry.ErrTruncated},
		{"unknown schema ID", []byte{0, 0, 0, 3, 231, 2}, 999, schemaregistry.ErrUnknownSchema},
		{"truncated payload", valid[:len(valid)-3], good, schemaregistry.ErrInvalidValue},
		{"schema does not resolve", append([]byte{0, 0, 0, 0, byte(bad)}, valid[5:]...), bad, schemaregistry.ErrSchemaMismatch},
		{"schema of another format", []byte{0, 0, 0, 0, byte(jsonID), '{', '}'}, jsonID, schemaregistry.ErrSchemaMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := c.Decode(tc.in)
			badInput(t, err, subject, tc.id, tc.want)
			if v != (orderV1{}) {
				t.Fatalf("failed Decode returned %+v, want the zero value", v)
			}
			// The next record decodes: nothing is left broken.
			if _, err := c.Decode(valid); err != nil {
				t.Fatalf("a good record after the bad one: %v", err)
			}
		})
	}
	// Lookups by ID: the good one once, the unknown one each time it was
	// met (it may be registered later), the others once (an ID's schema
	// never changes).
	before := lookups()
	for range 10 {
		c.Decode(valid)
		c.Decode(append([]byte{0, 0, 0, 0, byte(bad)}, valid[5:]...))
	}
	if got := lookups(); got != before {
		t.Fatalf("%d more lookups by ID for IDs already seen, want none", got-before)
	}
}

func mustAvro(t testing.TB, schema string, v any) []byte {
	t.Helper()
	b, err := avro.Marshal(avro.MustParse(schema), v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Goroutines decoding records of a new ID at the same time share one
// lookup.
func TestAvroConcurrentDecodeSharesLookups(t *testing.T) {
	reg := newRegistry(t)
	lookups := countLookups(reg)
	id1 := reg.register(t, "s", sr.Schema{Schema: orderV1Schema})
	id2 := reg.register(t, "s", sr.Schema{Schema: orderV2Schema})
	c, err := schemaregistry.Avro[orderV2](reg.client(t), "s", schemaregistry.Schema(orderV2Schema))
	if err != nil {
		t.Fatal(err)
	}
	recs := [][]byte{
		append([]byte{0, 0, 0, 0, byte(id1)}, mustAvro(t, orderV1Schema, orderV1{ID: 1})...),
		append([]byte{0, 0, 0, 0, byte(id2)}, mustAvro(t, orderV2Schema, orderV2{ID: 2, Currency: "X"})...),
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				v, err := c.Decode(recs[(g+i)%2])
				if err != nil || v.ID != int64((g+i)%2+1) {
					t.Errorf("Decode = %+v, %v", v, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := lookups(); got != 2 {
		t.Fatalf("%d lookups by ID for 2 IDs", got)
	}
}
