// Avro sends orders in Avro through a schema registry, first with version 1
// of the Order schema and then with version 2, which adds two fields with
// defaults, and reads them back with a stream on each version:
//
//   - a stream of the new Order (v2) reads the v1 records too: the codec
//     fetches each record's writer schema by the ID in its header and
//     resolves it against v2, so the fields v1 lacks take v2's defaults;
//   - a stream still on OrderV1 reads the v2 records: the fields it does not
//     know are dropped.
//
// One record is plain JSON, written without the registry. Both streams
// yield it as a *kstream.DecodeError wrapping schemaregistry.ErrMagicByte,
// with the subject in its message, and go on.
//
// With KAFKA_BROKERS and SCHEMA_REGISTRY_URL unset it starts an in-process
// Kafka cluster and schema registry, so it needs no setup:
//
//	go run ./examples/avro
//
// With them set (go run ./cmd/kstreams-dev gives both) it uses them, with a
// topic, group and subject named for this run, which it deletes at the end:
//
//	KAFKA_BROKERS=localhost:9092 SCHEMA_REGISTRY_URL=http://localhost:8081 go run ./examples/avro
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

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/codec/schemaregistry"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// OrderV1 is an order as the first version of the program knew it.
type OrderV1 struct {
	ID       int64   `avro:"id"`
	Customer string  `avro:"customer"`
	Amount   float64 `avro:"amount"`
}

const orderV1Schema = `{"type": "record", "name": "Order", "namespace": "shop", "fields": [
	{"name": "id", "type": "long"},
	{"name": "customer", "type": "string"},
	{"name": "amount", "type": "double"}
]}`

// Order is version 2: a currency, and an optional coupon.
type Order struct {
	ID       int64   `avro:"id"`
	Customer string  `avro:"customer"`
	Amount   float64 `avro:"amount"`
	Currency string  `avro:"currency"`
	Coupon   *string `avro:"coupon"`
}

// Both new fields have defaults, so version 2 is backward compatible (a v2
// reader reads v1 records) and forward compatible (a v1 reader reads v2
// records): the registry's compatibility rules would accept it.
const orderV2Schema = `{"type": "record", "name": "Order", "namespace": "shop", "fields": [
	{"name": "id", "type": "long"},
	{"name": "customer", "type": "string"},
	{"name": "amount", "type": "double"},
	{"name": "currency", "type": "string", "default": "EUR"},
	{"name": "coupon", "type": ["null", "string"], "default": null}
]}`

func main() {
	verbose := flag.Bool("v", false, "show the SDK's info logs")
	flag.Parse()
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "avro:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	// On a shared cluster and registry, names of this run's own keep other
	// runs' records and schemas out.
	topic, group := "orders", "avro-example"
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

	// The subject is "<topic>-value" (Confluent's default naming). Each
	// codec registers its schema at its first Encode.
	v1, err := schemaregistry.Avro[OrderV1](registry, topic,
		schemaregistry.Strategy(schemaregistry.TopicName),
		schemaregistry.Schema(orderV1Schema),
		schemaregistry.AutoRegister())
	if err != nil {
		return err
	}
	v2, err := schemaregistry.Avro[Order](registry, topic,
		schemaregistry.Strategy(schemaregistry.TopicName),
		schemaregistry.Schema(orderV2Schema),
		schemaregistry.AutoRegister())
	if err != nil {
		return err
	}

	if err := produce(ctx, w, c, topic, v1, v2); err != nil {
		return err
	}
	versions, err := schemaVersions(ctx, registry, topic+"-value")
	if err != nil {
		return err
	}

	// The program of today reads everything as an Order (v2).
	var filled int
	newReads, newBad, err := consume(ctx, w, c, topic, group, v2, func(rec kstream.Record[Order]) {
		o := rec.Value
		coupon := "none"
		if o.Coupon != nil {
			coupon = *o.Coupon
		}
		v := versions[schemaID(rec)]
		if v == 1 {
			filled++
		}
		fmt.Fprintf(w, "v2 reader: order %d of %s, %.2f %s, coupon %s (written with schema v%d)\n", o.ID, o.Customer, o.Amount, o.Currency, coupon, v)
	})
	if err != nil {
		return err
	}

	// A program not yet updated reads the same records as OrderV1.
	oldReads, oldBad, err := consume(ctx, w, c, topic, group+"-v1", v1, func(rec kstream.Record[OrderV1]) {
		o := rec.Value
		fmt.Fprintf(w, "v1 reader: order %d of %s, %.2f (written with schema v%d)\n", o.ID, o.Customer, o.Amount, versions[schemaID(rec)])
	})
	if err != nil {
		return err
	}
	if newReads != 4 || oldReads != 4 || newBad != 1 || oldBad != 1 || filled != 2 {
		return fmt.Errorf("read %d and %d orders with %d and %d bad records, %d with defaults filled; want 4, 4, 1, 1, 2", newReads, oldReads, newBad, oldBad, filled)
	}
	fmt.Fprintf(w, "both readers read all 4 orders (2 written with v1, 2 with v2) and skipped the 1 record not written through the registry\n")
	return nil
}

// external reports whether the cluster or the registry is a shared one.
func external() bool {
	return strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != "" || strings.TrimSpace(os.Getenv("SCHEMA_REGISTRY_URL")) != ""
}

// produce sends two orders with v1, two with v2, and one plain JSON
// record, not through the registry.
func produce(ctx context.Context, w io.Writer, c *kstreamtest.Cluster, topic string, v1 codec.Encoder[OrderV1], v2 codec.Encoder[Order]) error {
	eng, err := kstream.NewEngine(kstream.Brokers(c.Brokers()...))
	if err != nil {
		return err
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	defer eng.Stop(context.WithoutCancel(ctx))
	old := kstream.NewProducer(eng, topic, v1)
	for _, o := range []OrderV1{{1, "ada", 25}, {2, "grace", 19.9}} {
		if _, err := old.Send(ctx, nil, o); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "sent orders 1 and 2 with schema v1")
	coupon := "SPRING"
	current := kstream.NewProducer(eng, topic, v2)
	for _, o := range []Order{{3, "linus", 12, "USD", &coupon}, {4, "ken", 7.5, "GBP", nil}} {
		if _, err := current.Send(ctx, nil, o); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "sent orders 3 and 4 with schema v2")
	if _, err := eng.Send(ctx, topic, []byte(`{"id": 5, "customer": "barbara"}`)); err != nil {
		return err
	}
	fmt.Fprintln(w, "sent a plain JSON record, not through the registry")
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
				if errors.Is(err, schemaregistry.ErrMagicByte) {
					fmt.Fprintln(w, "  (not in the registry's wire format: skipped, the stream goes on)")
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
