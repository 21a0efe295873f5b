// Exactly-once is examples/transform with one option more,
// kstream.ExactlyOnce(): the offsets of the orders processed and the
// receipts emitted for them are committed in one Kafka transaction, every
// CommitInterval (100 ms by default). A transaction that cannot commit is
// aborted: its orders are delivered again and its receipts are never
// visible to a reader of the output that reads read_committed.
//
// The program runs the stream twice over ten orders. The first run fails
// on order 7 after emitting its receipt, as a crash would: its open
// transaction aborts. The second run, in the same group, resumes at the
// offsets of the last committed transaction and transforms the rest. A
// read_committed reader of the receipts then finds exactly one receipt per
// order. (A read_uncommitted reader would also see the receipts of the
// aborted transaction that had reached the broker.)
//
// A consumer of the output must set isolation.level=read_committed
// (kgo.FetchIsolationLevel(kgo.ReadCommitted()), or kstream.ReadCommitted()
// for a stream) to get this guarantee.
//
// With KAFKA_BROKERS unset it starts an in-process Kafka cluster:
//
//	go run ./examples/exactly-once
//
// With KAFKA_BROKERS set it uses that cluster (which must support
// transactions), with topics and a group named for this run, which it
// deletes at the end.
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

const (
	nOrders = 10
	failOn  = 7 // the order the first run fails on
)

// errCrash is the first run's failure.
var errCrash = errors.New("simulated crash")

func main() {
	verbose := flag.Bool("v", false, "show the SDK's info logs")
	flag.Parse()
	level := slog.LevelError // the aborted transaction is logged as a warning
	if *verbose {
		level = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "exactly-once:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
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
	adm := kadm.NewClient(cl)
	if external {
		defer adm.DeleteTopics(context.WithoutCancel(ctx), in, out)
		defer adm.DeleteGroups(context.WithoutCancel(ctx), group)
	}

	if err := produceOrders(ctx, cl, in); err != nil {
		return err
	}
	ends, err := adm.ListEndOffsets(ctx, in)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "produced %d orders to %q\n", nOrders, in)

	for pass := 1; pass <= 2; pass++ {
		n, err := transform(ctx, brokers, in, out, group, ends, pass == 1)
		switch {
		case errors.Is(err, errCrash):
			fmt.Fprintf(w, "run %d: emitted receipts for %d orders, then failed on order %d: its open transaction aborted\n", pass, n, failOn)
		case err != nil:
			return err
		default:
			fmt.Fprintf(w, "run %d: transformed %d orders since the last committed transaction\n", pass, n)
		}
	}

	committed, err := readReceipts(ctx, brokers, out)
	if err != nil {
		return err
	}
	perOrder := map[int]int{}
	for _, r := range committed {
		perOrder[r.OrderID]++
	}
	for id := 1; id <= nOrders; id++ {
		if perOrder[id] != 1 {
			return fmt.Errorf("read_committed: order %d has %d receipts, want 1", id, perOrder[id])
		}
	}
	fmt.Fprintf(w, "read_committed reader: %d receipts, exactly one per order\n", len(committed))

	resp, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("fetch committed offsets: %w", err)
	}
	n := int64(0)
	resp.Each(func(o kadm.OffsetResponse) { n += o.At })
	fmt.Fprintf(w, "group %q committed %d of %d orders\n", group, n, nOrders)
	if n != nOrders {
		return errors.New("not every order committed")
	}
	return nil
}

// transform runs the stream until it has read every order up to ends (or,
// if crash, until order failOn) and returns how many orders it
// transformed.
func transform(ctx context.Context, brokers []string, in, out, group string, ends kadm.ListedOffsets, crash bool) (int, error) {
	orders, err := kstream.NewStream(codec.JSON[Order](),
		kstream.Brokers(brokers...), kstream.Topics(in), kstream.Group(group),
		kstream.ExactlyOnce())
	if err != nil {
		return 0, err
	}
	receipts := kstream.NewEmitter(orders, out, codec.JSON[Receipt]())

	// Canceling the loop's ctx is a normal end: Close commits the open
	// transaction. Returning an error (or breaking) aborts it.
	loopCtx, done := context.WithCancel(ctx)
	defer done()
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { left[o.Partition] = o.Offset })
	n := 0
	err = orders.Use(loopCtx, func(records iter.Seq2[kstream.Record[Order], error]) error {
		for rec, err := range records {
			if err != nil {
				return err
			}
			o := rec.Value
			r := Receipt{OrderID: o.ID, Customer: o.Customer, Total: o.Amount * 1.2}
			if err := receipts.Emit(loopCtx, rec.Key, r); err != nil {
				return err
			}
			n++
			if crash && o.ID == failOn {
				return errCrash
			}
			if rec.Offset+1 >= left[rec.Partition] {
				delete(left, rec.Partition)
			}
			if len(left) == 0 {
				done()
			}
		}
		return nil
	})
	if err == nil && len(left) > 0 {
		err = fmt.Errorf("stopped before the end of %d partitions: %w", len(left), context.Cause(ctx))
	}
	return n, err
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

// readReceipts reads the topic from its start to its end as a
// read_committed consumer does.
func readReceipts(ctx context.Context, brokers []string, topic string) ([]Receipt, error) {
	// Transaction markers take offsets too: kept, they move the reader
	// to the end offset.
	cl, err := kstreamtest.NewClient(brokers,
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %q: %w", topic, err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	dec := codec.JSON[Receipt]()
	var got []Receipt
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading %q: %d partitions not read to the end: %w", topic, len(left), err)
		}
		for _, r := range fs.Records() {
			if r.Offset+1 >= left[r.Partition] {
				delete(left, r.Partition)
			}
			if r.Attrs.IsControl() {
				continue
			}
			v, err := dec.Decode(r.Value)
			if err != nil {
				return nil, err
			}
			got = append(got, v)
		}
	}
	return got, nil
}
