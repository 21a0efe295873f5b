// Transform reads orders from one topic, turns each into a receipt and
// writes the receipts to another topic with an Emitter: the stream's
// consume-transform-produce loop in the default (at-least-once) mode.
//
// Emit does not wait for the broker, so the loop runs at the speed of
// consuming, not one round trip per record. It ties each receipt to the
// order in hand: an order counts as processed, and its offset may be
// committed, only once its receipt is acknowledged. A receipt that fails
// for good comes out of the loop as a *kstream.EmitError, and the order is
// delivered again. After a crash, an order may be transformed twice (its
// receipt written twice), never zero times; examples/exactly-once shows the
// mode where it is written once.
//
// With KAFKA_BROKERS unset it starts an in-process Kafka cluster:
//
//	go run ./examples/transform
//
// With KAFKA_BROKERS set it uses that cluster, with topics and a group named
// for this run, which it deletes at the end.
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
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// Order is the value of each input record.
type Order struct {
	ID       int     `json:"id"`
	Customer string  `json:"customer"`
	Amount   float64 `json:"amount"`
}

// Receipt is the value of each output record.
type Receipt struct {
	OrderID  int     `json:"order_id"`
	Customer string  `json:"customer"`
	Total    float64 `json:"total"` // amount with 20% tax
}

const nOrders = 10

func main() {
	verbose := flag.Bool("v", false, "show the SDK's info logs")
	flag.Parse()
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "transform:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	in, out, group := "orders", "receipts", "receipts-writer"
	external := strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != ""
	if external {
		suffix := fmt.Sprintf("-%d", time.Now().UnixNano())
		in, out, group = in+suffix, out+suffix, group+suffix
	}
	brokers, stop, err := kstreamtest.StartCluster(kstreamtest.Topic(in, 3), kstreamtest.Topic(out, 3))
	if err != nil {
		return err
	}
	defer stop()
	cl, err := kstreamtest.NewClient(brokers)
	if err != nil {
		return err
	}
	defer cl.Close()
	if external {
		adm := kadm.NewClient(cl)
		defer adm.DeleteTopics(context.WithoutCancel(ctx), in, out)
		defer adm.DeleteGroups(context.WithoutCancel(ctx), group)
	}

	if err := produceOrders(ctx, cl, in); err != nil {
		return err
	}
	fmt.Fprintf(w, "produced %d orders to %q\n", nOrders, in)

	orders, err := kstream.NewStream(codec.JSON[Order](),
		kstream.Brokers(brokers...), kstream.Topics(in), kstream.Group(group))
	if err != nil {
		return err
	}
	receipts := kstream.NewEmitter(orders, out, codec.JSON[Receipt]())

	// Canceling the loop's ctx is a normal end: Use closes the stream,
	// which waits for the receipts emitted and commits their orders.
	loopCtx, done := context.WithCancel(ctx)
	defer done()
	seen := 0
	err = orders.Use(loopCtx, func(records iter.Seq2[kstream.Record[Order], error]) error {
		for rec, err := range records {
			if err != nil {
				return err // an *EmitError among others: the order is delivered again after a restart
			}
			o := rec.Value
			r := Receipt{OrderID: o.ID, Customer: o.Customer, Total: o.Amount * 1.2}
			if err := receipts.Emit(loopCtx, rec.Key, r); err != nil {
				return err
			}
			if seen++; seen == nOrders {
				done()
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if seen < nOrders {
		return fmt.Errorf("transformed only %d of %d orders: %w", seen, nOrders, context.Cause(ctx))
	}
	fmt.Fprintf(w, "transformed %d orders\n", seen)

	got, err := readReceipts(ctx, brokers, out)
	if err != nil {
		return err
	}
	slices.SortFunc(got, func(a, b Receipt) int { return a.OrderID - b.OrderID })
	for _, r := range got {
		fmt.Fprintf(w, "  receipt for order %d (%s): %.2f\n", r.OrderID, r.Customer, r.Total)
	}
	fmt.Fprintf(w, "%q holds %d receipts\n", out, len(got))
	if len(got) != nOrders {
		return fmt.Errorf("%d receipts, want %d", len(got), nOrders)
	}

	resp, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("fetch committed offsets: %w", err)
	}
	committed := int64(0)
	resp.Each(func(o kadm.OffsetResponse) { committed += o.At })
	fmt.Fprintf(w, "group %q committed %d of %d orders\n", group, committed, nOrders)
	if committed != nOrders {
		return errors.New("not every order committed")
	}
	return nil
}

// produceOrders writes nOrders orders, keyed by customer.
func produceOrders(ctx context.Context, cl *kgo.Client, topic string) error {
	customers := []string{"ada", "grace", "linus", "ken", "barbara"}
	enc := codec.JSON[Order]()
	var recs []*kgo.Record
	for i := 1; i <= nOrders; i++ {
		o := Order{ID: i, Customer: customers[i%len(customers)], Amount: float64(i) * 10}
		b, err := enc.Encode(o)
		if err != nil {
			return err
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(o.Customer), Value: b})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	return nil
}

// readReceipts reads the topic from its start to its end.
func readReceipts(ctx context.Context, brokers []string, topic string) ([]Receipt, error) {
	cl, err := kstreamtest.NewClient(brokers,
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %q: %w", topic, err)
	}
	left := int64(0)
	ends.Each(func(o kadm.ListedOffset) { left += o.Offset })
	dec := codec.JSON[Receipt]()
	var got []Receipt
	for left > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading %q: %d records left: %w", topic, left, err)
		}
		for _, r := range fs.Records() {
			left--
			v, err := dec.Decode(r.Value)
			if err != nil {
				return nil, err
			}
			got = append(got, v)
		}
	}
	return got, nil
}
