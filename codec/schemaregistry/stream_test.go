package schemaregistry_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/codec/schemaregistry"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// Through a real stream on the embedded cluster and its registry: every
// kind of bad record is yielded as a *kstream.DecodeError at its own
// offset, wrapping its cause and naming the subject and schema ID, and the
// stream goes on to the good records after it; at the end everything is
// committed.
func TestStreamYieldsBadRecordsAndGoesOn(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	t.Setenv("SCHEMA_REGISTRY_URL", "")
	const topic, group, subject = "orders", "billing", "orders-value"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 1))
	cl := kstreamtest.NewRegistryClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	v1, err := schemaregistry.Avro[orderV1](cl, subject, schemaregistry.Schema(orderV1Schema), schemaregistry.AutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	v2, err := schemaregistry.Avro[orderV2](cl, subject, schemaregistry.Schema(orderV2Schema), schemaregistry.AutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	good1, err := v1.Encode(orderV1{ID: 1, Customer: "ada", Amount: 1})
	if err != nil {
		t.Fatal(err)
	}
	good2, err := v2.Encode(orderV2{ID: 2, Customer: "grace", Amount: 2, Currency: "USD"})
	if err != nil {
		t.Fatal(err)
	}
	badID, err := cl.RegisterSchema(ctx, "other-value", sr.Schema{Schema: orderBadSchema}, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	records := []struct {
		value []byte
		want  error // nil: a good record
		id    int
	}{
		{good1, nil, 0},
		{[]byte(`{"id":3}`), schemaregistry.ErrMagicByte, 0},
		{[]byte{0, 0, 0}, schemaregistry.ErrTruncated, 0},
		{[]byte{0, 0, 0, 0x30, 0x39, 2}, schemaregistry.ErrUnknownSchema, 12345},
		{good1[:len(good1)-2], schemaregistry.ErrInvalidValue, int(good1[4])},
		{append([]byte{0, 0, 0, 0, byte(badID)}, good1[5:]...), schemaregistry.ErrSchemaMismatch, badID},
		{good2, nil, 0},
	}
	for _, r := range records {
		if err := c.Produce(ctx, &kgo.Record{Topic: topic, Value: r.value}); err != nil {
			t.Fatal(err)
		}
	}

	s := kstreamtest.NewStream(t, c, codec.Decoder[orderV2](v2), kstream.Topics(topic), kstream.Group(group))
	var got []string
	err = s.Use(ctx, func(recs iter.Seq2[kstream.Record[orderV2], error]) error {
		i := 0
		for rec, err := range recs {
			want := records[rec.Offset]
			if int(rec.Offset) != i {
				return fmt.Errorf("record at offset %d yielded %d-th", rec.Offset, i)
			}
			i++
			if want.want == nil {
				if err != nil {
					return fmt.Errorf("offset %d: %w", rec.Offset, err)
				}
				got = append(got, fmt.Sprintf("%d:%s/%s", rec.Value.ID, rec.Value.Customer, rec.Value.Currency))
			} else {
				de, ok := errors.AsType[*kstream.DecodeError](err)
				if !ok || de.Offset != rec.Offset {
					return fmt.Errorf("offset %d: %v, want a *kstream.DecodeError at this offset", rec.Offset, err)
				}
				var e *schemaregistry.Error
				if !errors.Is(err, want.want) || !errors.As(err, &e) || e.Subject != subject || e.ID != want.id || errors.Is(err, codec.ErrUnavailable) {
					return fmt.Errorf("offset %d: %v, want the cause %v, subject %s, ID %d", rec.Offset, err, want.want, subject, want.id)
				}
				got = append(got, "bad")
			}
			if i == len(records) {
				// break would leave this record uncommitted: commit it first.
				if err := s.Commit(ctx); err != nil {
					return err
				}
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"1:ada/EUR", "bad", "bad", "bad", "bad", "bad", "2:grace/USD"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("yielded %v, want %v", got, want)
	}
	c.WaitCommitted(t, group, kstreamtest.Offsets{topic: {0: int64(len(records))}}, 10*time.Second)
}
