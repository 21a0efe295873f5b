// Quickstart produces ten JSON orders to the "orders" topic, consumes them
// with a typed kstream.Stream, and prints what it consumed and what its group
// committed.
//
// With KAFKA_BROKERS unset it starts an in-process Kafka cluster, so it needs
// no setup:
//
//	go run ./examples/quickstart
//
// With KAFKA_BROKERS set (a comma-separated list of host:port) it uses that
// cluster instead, creating the topic if needed:
//
//	KAFKA_BROKERS=localhost:9092 go run ./examples/quickstart
//
// The -v flag shows the SDK's info logs (partitions assigned and revoked).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"maps"
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

// Order is the value of each record, encoded as JSON.
type Order struct {
	ID       int     `json:"id"`
	Customer string  `json:"customer"`
	Amount   float64 `json:"amount"`
}

const (
	topic   = "orders"
	group   = "quickstart"
	nOrders = 10
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
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	external := strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != ""
	brokers, stop, err := kstreamtest.StartCluster(kstreamtest.Topic(topic, 3))
	if err != nil {
		return err
	}
	defer stop()
	where := "embedded cluster"
	if external {
		where = "KAFKA_BROKERS"
	}
	fmt.Fprintf(w, "brokers: %v (%s)\n", brokers, where)

	cl, err := kstreamtest.NewClient(brokers)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer cl.Close()

	// On a shared cluster the topic may hold orders of earlier runs, so this
	// run's ids start from the clock; on a fresh embedded cluster they are
	// 1..10.
	base := 0
	if external {
		base = int(time.Now().UnixMilli()) * 100
	}
	want, err := produce(ctx, cl, base)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "produced %d orders to %q\n", len(want), topic)

	orders, err := kstream.NewStream(codec.JSON[Order](),
		kstream.Brokers(brokers...),
		kstream.Topics(topic),
		kstream.Group(group),
	)
	if err != nil {
		return err
	}

	var count int
	var total float64
	err = orders.Use(ctx, func(records iter.Seq2[kstream.Record[Order], error]) error {
		for rec, err := range records {
			if err != nil {
				return err
			}
			if !want[rec.Value.ID] {
				continue // an order from an earlier run: skipped, and committed as handled
			}
			delete(want, rec.Value.ID)
			count++
			total += rec.Value.Amount
			if len(want) == 0 {
				// break leaves the record in hand uncommitted (its body did
				// not finish), so commit it explicitly before leaving.
				if err := orders.Commit(ctx); err != nil {
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
	if len(want) > 0 {
		// The range ends quietly when ctx is done: on a signal or the timeout.
		return fmt.Errorf("consumed only %d of %d orders before stopping: %w", count, nOrders, context.Cause(ctx))
	}
	fmt.Fprintf(w, "consumed %d orders, total %.2f\n", count, total)

	return printCommitted(ctx, w, cl)
}

// produce writes nOrders orders with ids base+1..base+nOrders, keyed by
// customer so that they spread over the partitions, and returns the set of
// ids.
func produce(ctx context.Context, cl *kgo.Client, base int) (map[int]bool, error) {
	customers := []string{"ada", "grace", "linus", "ken", "barbara"}
	enc := codec.JSON[Order]()
	want := make(map[int]bool, nOrders)
	recs := make([]*kgo.Record, 0, nOrders)
	for i := 1; i <= nOrders; i++ {
		o := Order{ID: base + i, Customer: customers[i%len(customers)], Amount: float64(i)*12.5 + 0.99}
		b, err := enc.Encode(o)
		if err != nil {
			return nil, err
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(o.Customer), Value: b})
		want[o.ID] = true
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return nil, fmt.Errorf("produce: %w", err)
	}
	return want, nil
}

// printCommitted prints the offsets the group committed, per partition.
func printCommitted(ctx context.Context, w io.Writer, cl *kgo.Client) error {
	resp, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("fetch committed offsets of group %q: %w", group, err)
	}
	committed := resp.Offsets()[topic]
	if len(committed) == 0 {
		return errors.New("the group committed nothing")
	}
	fmt.Fprintf(w, "committed offsets of group %q:\n", group)
	for _, p := range slices.Sorted(maps.Keys(committed)) {
		fmt.Fprintf(w, "  %s/%d: %d\n", topic, p, committed[p].At)
	}
	return nil
}
