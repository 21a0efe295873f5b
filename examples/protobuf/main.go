// Protobuf sends orders in Protobuf through a schema registry, first with
// version 1 of shop.Order and then with version 2, which adds two fields,
// and reads them back with a stream on each version:
//
//   - a stream of the generated orderpb.Order (v2) reads the v1 records:
//     the fields v1 lacks read as their zero values;
//   - a stream still on version 1 (a dynamicpb message built from v1's
//     descriptor, as an older build of the program would have it) reads
//     the v2 records: the fields it does not know are kept as unknown
//     fields, so that writing the message on loses nothing.
//
// The codecs register the .proto file at their first Encode (under
// "<topic>-value"), and write the Confluent wire format: magic byte, schema
// ID, message indexes, message.
//
// One record on the topic is a shop.Refund, another message of the same
// schema. Both streams yield it as a *kstream.DecodeError wrapping
// schemaregistry.ErrSchemaMismatch, whose message names the refund's
// message and the subject, and go on.
//
// With KAFKA_BROKERS and SCHEMA_REGISTRY_URL unset it starts an in-process
// Kafka cluster and schema registry, so it needs no setup:
//
//	go run ./examples/protobuf
//
// With them set (go run ./cmd/kstreams-dev gives both) it uses them, with a
// topic, group and subject named for this run, which it deletes at the end:
//
//	KAFKA_BROKERS=localhost:9092 SCHEMA_REGISTRY_URL=http://localhost:8081 go run ./examples/protobuf
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/codec/schemaregistry"
	"github.com/gokstreams/kstreams/examples/protobuf/orderpb"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

func main() {
	verbose := flag.Bool("v", false, "show the SDK's info logs")
	flag.Parse()
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "protobuf:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	topic, group := "orders", "protobuf-example"
	if external() {
		suffix := fmt.Sprintf("-%d", time.Now().UnixNano())
		topic, group = topic+suffix, group+suffix
	}
	c, err := kstreamtest.Start(kstreamtest.Topic(topic, 1))
	if err != nil {
		return err
	}
	defer c.Close()
	registry, err := c.RegistryClient()
	if err != nil {
		return err
	}
	if external() {
		defer cleanUp(c.Brokers(), registry, topic, group)
	}
	fmt.Fprintf(w, "brokers %v, schema registry %s\n", c.Brokers(), c.RegistryURL())

	// Version 1, as the older build of the program has it.
	v1Desc, err := orderpb.OrderV1()
	if err != nil {
		return err
	}
	subject := []schemaregistry.Option{schemaregistry.Strategy(schemaregistry.TopicName), schemaregistry.AutoRegister()}
	v1, err := schemaregistry.Protobuf[*dynamicpb.Message](registry, topic, append(subject, schemaregistry.MessageDescriptor(v1Desc))...)
	if err != nil {
		return err
	}
	v2, err := schemaregistry.Protobuf[*orderpb.Order](registry, topic, subject...)
	if err != nil {
		return err
	}
	refunds, err := schemaregistry.Protobuf[*orderpb.Refund](registry, topic, subject...)
	if err != nil {
		return err
	}

	if err := produce(ctx, w, c, topic, v1Desc, v1, v2, refunds); err != nil {
		return err
	}
	versions, err := schemaVersions(ctx, registry, topic+"-value")
	if err != nil {
		return err
	}

	var zeroCurrency int
	newReads, newBad, err := consume(ctx, w, c, topic, group, v2, func(rec kstream.Record[*orderpb.Order]) {
		o := rec.Value
		currency := o.GetCurrency()
		if currency == "" {
			// Protobuf has no defaults of its own: a field the writer did
			// not have reads as its zero value, and the program decides.
			currency, zeroCurrency = "EUR (not set)", zeroCurrency+1
		}
		fmt.Fprintf(w, "v2 reader: order %d of %s, %d cents %s, tags %v (written with schema v%d)\n",
			o.GetId(), o.GetCustomer(), o.GetAmountCents(), currency, o.GetTags(), versions[schemaID(rec)])
	})
	if err != nil {
		return err
	}

	var unknownKept int
	oldReads, oldBad, err := consume(ctx, w, c, topic, group+"-v1", v1, func(rec kstream.Record[*dynamicpb.Message]) {
		m := rec.Value
		f := m.Descriptor().Fields()
		unknown := len(m.GetUnknown())
		if unknown > 0 {
			unknownKept++
		}
		fmt.Fprintf(w, "v1 reader: order %d of %s, %d cents, %d bytes of fields it does not know kept (written with schema v%d)\n",
			m.Get(f.ByName("id")).Int(), m.Get(f.ByName("customer")).String(), m.Get(f.ByName("amount_cents")).Int(), unknown, versions[schemaID(rec)])
	})
	if err != nil {
		return err
	}
	if newReads != 4 || oldReads != 4 || newBad != 1 || oldBad != 1 || zeroCurrency != 2 || unknownKept != 2 {
		return fmt.Errorf("read %d and %d orders, %d and %d bad records, %d without currency, %d with unknown fields; want 4, 4, 1, 1, 2, 2",
			newReads, oldReads, newBad, oldBad, zeroCurrency, unknownKept)
	}
	fmt.Fprintln(w, "both readers read all 4 orders (2 written with v1, 2 with v2) and skipped the refund, a message of another type")
	return nil
}

// external reports whether the cluster or the registry is a shared one.
func external() bool {
	return strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != "" || strings.TrimSpace(os.Getenv("SCHEMA_REGISTRY_URL")) != ""
}

// produce sends two orders with v1, two with v2, then a refund.
func produce(ctx context.Context, w io.Writer, c *kstreamtest.Cluster, topic string, v1Desc protoreflect.MessageDescriptor,
	v1 codec.Encoder[*dynamicpb.Message], v2 codec.Encoder[*orderpb.Order], refunds codec.Encoder[*orderpb.Refund]) error {
	eng, err := kstream.NewEngine(kstream.Brokers(c.Brokers()...))
	if err != nil {
		return err
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	defer eng.Stop(context.WithoutCancel(ctx))

	old := kstream.NewProducer(eng, topic, v1)
	f := v1Desc.Fields()
	for _, o := range []struct {
		id       int64
		customer string
		cents    int64
	}{{1, "ada", 2500}, {2, "grace", 1990}} {
		m := dynamicpb.NewMessage(v1Desc)
		m.Set(f.ByName("id"), protoreflect.ValueOfInt64(o.id))
		m.Set(f.ByName("customer"), protoreflect.ValueOfString(o.customer))
		m.Set(f.ByName("amount_cents"), protoreflect.ValueOfInt64(o.cents))
		if _, err := old.Send(ctx, nil, m); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "sent orders 1 and 2 with schema v1")
	current := kstream.NewProducer(eng, topic, v2)
	for _, o := range []*orderpb.Order{
		{Id: 3, Customer: "linus", AmountCents: 1200, Currency: "USD", Tags: []string{"gift"}},
		{Id: 4, Customer: "ken", AmountCents: 750, Currency: "GBP"},
	} {
		if _, err := current.Send(ctx, nil, o); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "sent orders 3 and 4 with schema v2")
	if _, err := kstream.NewProducer(eng, topic, refunds).Send(ctx, nil, &orderpb.Refund{OrderId: 2, Reason: "late"}); err != nil {
		return err
	}
	fmt.Fprintln(w, "sent a refund of order 2 (message shop.Refund of schema v2)")
	return eng.Stop(ctx)
}

// consume reads the topic's five records with a new group, handing each
// order to handle and printing each decode error; it returns the counts.
func consume[T any](ctx context.Context, w io.Writer, c *kstreamtest.Cluster, topic, group string, dec codec.Decoder[T], handle func(kstream.Record[T])) (orders, bad int, err error) {
	stream, err := kstream.NewStream(dec,
		kstream.Brokers(c.Brokers()...), kstream.Topics(topic), kstream.Group(group),
		kstream.ClientOptions(c.GroupTimings()...))
	if err != nil {
		return 0, 0, err
	}
	err = stream.Use(ctx, func(records iter.Seq2[kstream.Record[T], error]) error {
		for rec, err := range records {
			if de, ok := errors.AsType[*kstream.DecodeError](err); ok {
				bad++
				fmt.Fprintf(w, "decode error at %s/%d@%d: %v\n", de.Topic, de.Partition, de.Offset, de.Err)
				if errors.Is(err, schemaregistry.ErrSchemaMismatch) {
					fmt.Fprintln(w, "  (not an order: skipped, the stream goes on)")
				}
			} else if err != nil {
				return err
			} else {
				orders++
				handle(rec)
			}
			if orders+bad == 5 {
				// break would leave this record uncommitted: commit it first.
				if err := stream.Commit(ctx); err != nil {
					return err
				}
				break
			}
		}
		return nil
	})
	if err == nil && orders+bad < 5 {
		err = fmt.Errorf("read %d of 5 records before stopping: %w", orders+bad, context.Cause(ctx))
	}
	return orders, bad, err
}

// schemaVersions maps each schema ID of the subject to its version.
func schemaVersions(ctx context.Context, cl *sr.Client, subject string) (map[int]int, error) {
	all, err := cl.Schemas(ctx, subject)
	if err != nil {
		return nil, err
	}
	m := map[int]int{}
	for _, s := range all {
		m[s.ID] = s.Version
	}
	return m, nil
}

// schemaID reads the schema ID from a record's header.
func schemaID[T any](rec kstream.Record[T]) int {
	v := rec.Raw.Value
	if len(v) < 5 {
		return 0
	}
	return int(v[1])<<24 | int(v[2])<<16 | int(v[3])<<8 | int(v[4])
}

// cleanUp removes this run's topic, groups and subject from a shared
// cluster and registry.
func cleanUp(brokers []string, registry *sr.Client, topic, group string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := registry.DeleteSubject(ctx, topic+"-value", sr.SoftDelete); err == nil {
		registry.DeleteSubject(ctx, topic+"-value", sr.HardDelete)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.DeleteGroups(ctx, group, group+"-v1"); err != nil {
		slog.Warn("delete groups", "group", group, "err", err)
	}
	if _, err := adm.DeleteTopics(ctx, topic); err != nil {
		slog.Warn("delete topic", "topic", topic, "err", err)
	}
}
