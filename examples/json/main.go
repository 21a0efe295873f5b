// JSON sends typed orders with a kstream.Producer[Order] and reads them back
// with a kstream.Stream[Order], both using codec.JSON[Order]: values are Go
// structs from end to end, and no code outside the codec touches JSON.
//
// It is the Go counterpart of the deserializer of the kstreams Streams page
// ("Creating a Stream instance", where a stream is given a deserializer that
// turns each ConsumerRecord's bytes into a value). In Go the decoder fixes the
// stream's type, so rec.Value is an Order and not an untyped payload.
//
// Among the orders, two records are written as raw bytes that are not a valid
// Order: one is not JSON at all and one has a string where the id, a number,
// belongs. The stream yields each of them as a *kstream.DecodeError naming the
// topic, partition and offset of the bad record, with the encoding/json error
// as its cause; the loop prints it and goes on, so the orders after it are
// still read.
//
// With KAFKA_BROKERS unset it starts an in-process Kafka cluster:
//
//	go run ./examples/json
//
// With KAFKA_BROKERS set it uses that cluster, with a topic and group named
// for this run, which it deletes at the end:
//
//	KAFKA_BROKERS=localhost:9092 go run ./examples/json
package main

import (
	"context"
	"encoding/json"
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

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// Order is the value of each record.
type Order struct {
	ID       int       `json:"id"`
	Customer string    `json:"customer"`
	Items    []Item    `json:"items"`
	PlacedAt time.Time `json:"placed_at"`
}

// Item is one line of an order.
type Item struct {
	SKU      string  `json:"sku"`
	Quantity int     `json:"quantity"`
	Price    float64 `json:"price"`
}

// Total is what the order costs.
func (o Order) Total() float64 {
	var t float64
	for _, it := range o.Items {
		t += float64(it.Quantity) * it.Price
	}
	return t
}

func main() {
	verbose := flag.Bool("v", false, "show the SDK's info logs")
	flag.Parse()
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "json:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	// On a shared cluster, a topic and group of this run's own keep other
	// runs' records out of the output.
	topic, group := "orders", "json-example"
	external := strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != ""
	if external {
		suffix := fmt.Sprintf("-%d", time.Now().UnixNano())
		topic, group = topic+suffix, group+suffix
	}
	brokers, stop, err := kstreamtest.StartCluster(kstreamtest.Topic(topic, 1))
	if err != nil {
		return err
	}
	defer stop()
	if external {
		defer cleanUp(brokers, topic, group)
	}

	// The engine is the producer: kstream.NewProducer binds a topic and an
	// encoder to it.
	eng, err := kstream.NewEngine(kstream.Brokers(brokers...))
	if err != nil {
		return err
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	defer eng.Stop(context.WithoutCancel(ctx))
	orders := kstream.NewProducer(eng, topic, codec.JSON[Order]())

	placed := time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)
	want := []Order{
		{ID: 1, Customer: "ada", Items: []Item{{"book", 2, 12.5}}, PlacedAt: placed},
		{ID: 2, Customer: "grace", Items: []Item{{"pen", 10, 1.2}, {"ink", 1, 7.9}}, PlacedAt: placed.Add(time.Minute)},
	}
	for _, o := range want {
		md, err := orders.Send(ctx, []byte(o.Customer), o)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "sent order %d to %s/%d@%d\n", o.ID, md.Topic, md.Partition, md.Offset)
	}
	// Two records that are not Orders, sent as raw bytes past the codec.
	for _, bad := range []string{`{"id": 3, "customer": "linus", "items": [`, `{"id": "four", "customer": "ken"}`} {
		md, err := eng.Send(ctx, topic, []byte(bad))
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "sent malformed value to %s/%d@%d: %s\n", md.Topic, md.Partition, md.Offset, bad)
	}
	last := Order{ID: 5, Customer: "barbara", Items: []Item{{"lamp", 1, 39.99}}, PlacedAt: placed.Add(2 * time.Minute)}
	mds, err := orders.SendBatch(ctx, kstream.Message[Order]{Key: []byte(last.Customer), Value: last})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "sent order %d to %s/%d@%d\n", last.ID, mds[0].Topic, mds[0].Partition, mds[0].Offset)
	want = append(want, last)
	const sent = 5
	// Stop flushes and closes the producer; the stream below needs no engine.
	if err := eng.Stop(ctx); err != nil {
		return err
	}

	stream, err := kstream.NewStream(codec.JSON[Order](),
		kstream.Brokers(brokers...), kstream.Topics(topic), kstream.Group(group))
	if err != nil {
		return err
	}
	var got []Order
	var decodeErrs int
	err = stream.Use(ctx, func(records iter.Seq2[kstream.Record[Order], error]) error {
		seen := 0
		for rec, err := range records {
			de, isDecodeErr := errors.AsType[*kstream.DecodeError](err)
			switch {
			case isDecodeErr:
				decodeErrs++
				fmt.Fprintf(w, "decode error at %s/%d@%d: %v\n", de.Topic, de.Partition, de.Offset, de.Err)
				fmt.Fprintf(w, "  raw value: %s\n", de.Record.Value)
				if se, ok := errors.AsType[*json.SyntaxError](err); ok {
					fmt.Fprintf(w, "  cause: *json.SyntaxError at byte %d\n", se.Offset)
				}
				if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
					fmt.Fprintf(w, "  cause: *json.UnmarshalTypeError: field %q wants %s, got a JSON %s\n", te.Field, te.Type, te.Value)
				}
				// Going on marks the bad record handled: the stream continues.
			case err != nil:
				return err
			default:
				o := rec.Value // an Order, decoded by the codec
				got = append(got, o)
				fmt.Fprintf(w, "received order %d from %s/%d@%d: customer %s, %d items, total %.2f, placed %s\n",
					o.ID, rec.Topic, rec.Partition, rec.Offset, o.Customer, len(o.Items), o.Total(), o.PlacedAt.Format(time.RFC3339))
			}
			if seen++; seen == sent {
				// break would leave this record uncommitted: commit it first.
				if err := stream.Commit(ctx); err != nil {
					return err
				}
				break
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(got)+decodeErrs < sent {
		return fmt.Errorf("read only %d of %d records before stopping: %w", len(got)+decodeErrs, sent, context.Cause(ctx))
	}
	for i := range want {
		if i >= len(got) || !equalOrders(got[i], want[i]) {
			return fmt.Errorf("orders read back differ from those sent: got %+v, want %+v", got, want)
		}
	}
	fmt.Fprintf(w, "read %d orders equal to those sent and %d decode errors\n", len(got), decodeErrs)
	return nil
}

func equalOrders(a, b Order) bool {
	if a.ID != b.ID || a.Customer != b.Customer || !a.PlacedAt.Equal(b.PlacedAt) || len(a.Items) != len(b.Items) {
		return false
	}
	for i := range a.Items {
		if a.Items[i] != b.Items[i] {
			return false
		}
	}
	return true
}

// cleanUp removes this run's topic and group from a shared cluster.
func cleanUp(brokers []string, topic, group string) {
	cl, err := kstreamtest.NewClient(brokers)
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	if _, err := adm.DeleteGroups(ctx, group); err != nil {
		slog.Warn("delete group", "group", group, "err", err)
	}
	if _, err := adm.DeleteTopics(ctx, topic); err != nil {
		slog.Warn("delete topic", "topic", topic, "err", err)
	}
}
