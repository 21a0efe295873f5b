package schemaregistry_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/gokstreams/kstreams/codec/schemaregistry"
	"github.com/gokstreams/kstreams/codec/schemaregistry/internal/testpb"
)

// Each strategy registers under the subject Confluent's serializers would
// use.
func TestSubjectStrategies(t *testing.T) {
	reg := newRegistry(t)
	cl := reg.client(t)
	for _, tc := range []struct {
		name    string
		build   func() (func() error, error)
		subject string
	}{
		{"as given", avroBuild(cl, "my-subject"), "my-subject"},
		{"topic name", avroBuild(cl, "orders", schemaregistry.Strategy(schemaregistry.TopicName)), "orders-value"},
		{"topic name, key", avroBuild(cl, "orders", schemaregistry.Strategy(schemaregistry.TopicName), schemaregistry.Key()), "orders-key"},
		{"record name", avroBuild(cl, "", schemaregistry.Strategy(schemaregistry.RecordName)), "shop.Order"},
		{"topic record name", avroBuild(cl, "orders", schemaregistry.Strategy(schemaregistry.TopicRecordName)), "orders-shop.Order"},
		{"protobuf record name", func() (func() error, error) {
			c, err := schemaregistry.Protobuf[*testpb.Money](cl, "", schemaregistry.Strategy(schemaregistry.RecordName), schemaregistry.AutoRegister())
			return func() error { _, err := c.Encode(&testpb.Money{}); return err }, err
		}, "kstreams.test.shop.Money"},
		{"json topic record name", func() (func() error, error) {
			c, err := schemaregistry.JSONSchema[person](cl, "people", schemaregistry.Strategy(schemaregistry.TopicRecordName), schemaregistry.Schema(`{"title":"Person","type":"object"}`), schemaregistry.AutoRegister())
			return func() error { _, err := c.Encode(person{Name: "x"}); return err }, err
		}, "people-Person"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			encode, err := tc.build()
			if err != nil {
				t.Fatal(err)
			}
			if err := encode(); err != nil {
				t.Fatal(err)
			}
			if !reg.SubjectExists(tc.subject) {
				t.Fatalf("nothing registered under %q", tc.subject)
			}
		})
	}
}

func avroBuild(cl *sr.Client, subject string, opts ...schemaregistry.Option) func() (func() error, error) {
	return func() (func() error, error) {
		opts := append([]schemaregistry.Option{schemaregistry.Schema(orderV1Schema), schemaregistry.AutoRegister()}, opts...)
		c, err := schemaregistry.Avro[orderV1](cl, subject, opts...)
		if err != nil {
			return nil, err
		}
		return func() error { _, err := c.Encode(orderV1{}); return err }, nil
	}
}

// Bad options fail the constructor with an error naming the option.
func TestBadOptions(t *testing.T) {
	cl := newRegistry(t).client(t)
	for _, tc := range []struct {
		name, want string
		err        func() error
	}{
		{"nil client", "nil *sr.Client", func() error { _, err := schemaregistry.Avro[orderV1](nil, "s"); return err }},
		{"empty subject", "empty subject", func() error { _, err := schemaregistry.Avro[orderV1](cl, ""); return err }},
		{"topic strategy without topic", "needs a topic", func() error {
			_, err := schemaregistry.Avro[orderV1](cl, "", schemaregistry.Strategy(schemaregistry.TopicName))
			return err
		}},
		{"record strategy without schema", "needs the record's name", func() error {
			_, err := schemaregistry.Avro[orderV1](cl, "", schemaregistry.Strategy(schemaregistry.RecordName))
			return err
		}},
		{"unknown strategy", "schemaregistry.Strategy", func() error {
			_, err := schemaregistry.Avro[orderV1](cl, "s", schemaregistry.Strategy(9))
			return err
		}},
		{"auto-register without schema", "AutoRegister needs", func() error {
			_, err := schemaregistry.Avro[orderV1](cl, "s", schemaregistry.AutoRegister())
			return err
		}},
		{"auto-register and version", "exclude each other", func() error {
			_, err := schemaregistry.Avro[orderV1](cl, "s", schemaregistry.Schema(orderV1Schema), schemaregistry.AutoRegister(), schemaregistry.Version(2))
			return err
		}},
		{"version 0", "schemaregistry.Version", func() error { _, err := schemaregistry.Avro[orderV1](cl, "s", schemaregistry.Version(0)); return err }},
		{"bad Avro schema", "schemaregistry.Schema", func() error {
			_, err := schemaregistry.Avro[orderV1](cl, "s", schemaregistry.Schema(`{"type":"record"}`))
			return err
		}},
		{"bad JSON schema", "schemaregistry.Schema", func() error {
			_, err := schemaregistry.JSONSchema[person](cl, "s", schemaregistry.Schema(`{"type": 7}`))
			return err
		}},
		{"timeout", "schemaregistry.RequestTimeout", func() error {
			_, err := schemaregistry.Avro[orderV1](cl, "s", schemaregistry.RequestTimeout(-time.Second))
			return err
		}},
		{"cache size", "schemaregistry.CacheSize", func() error { _, err := schemaregistry.Avro[orderV1](cl, "s", schemaregistry.CacheSize(0)); return err }},
		{"protobuf option on avro", "MessageDescriptor", func() error {
			_, err := schemaregistry.Avro[orderV1](cl, "s", schemaregistry.MessageDescriptor((&testpb.Money{}).ProtoReflect().Descriptor()))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			var e *schemaregistry.Error
			if !errors.As(err, &e) || e.Op != "setup" || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a setup error saying %q", err, tc.want)
			}
		})
	}
}

// The cache keeps at most CacheSize writer schemas; an evicted one is
// fetched again.
func TestCacheSize(t *testing.T) {
	reg := newRegistry(t)
	lookups := countLookups(reg)
	id1 := reg.register(t, "s", sr.Schema{Schema: orderV1Schema})
	id2 := reg.register(t, "s", sr.Schema{Schema: orderV2Schema})
	c, err := schemaregistry.Avro[orderV1](reg.client(t), "s", schemaregistry.Schema(orderV1Schema), schemaregistry.CacheSize(1))
	if err != nil {
		t.Fatal(err)
	}
	r1 := append([]byte{0, 0, 0, 0, byte(id1)}, mustAvro(t, orderV1Schema, orderV1{ID: 1})...)
	r2 := append([]byte{0, 0, 0, 0, byte(id2)}, mustAvro(t, orderV2Schema, orderV2{ID: 2})...)
	for _, r := range [][]byte{r1, r1, r2, r2, r1} {
		if _, err := c.Decode(r); err != nil {
			t.Fatal(err)
		}
	}
	if got := lookups(); got != 3 {
		t.Fatalf("%d lookups by ID for IDs 1,1,2,2,1 with room for one, want 3", got)
	}
}
