// Batches consumes records in batches: kstreams' getmany, in Go
// s.Batches(ctx, max, wait) on a stream and s.HandleBatches(max, wait, fn) on
// an engine.
//
// It is the Go counterpart of the stream functions of the kstreams Streams
// page that take many records at once (aiokafka's getmany, which the page's
// "Changing consumer behavior" passes through). A batch is yielded when it
// holds max records, or when wait has passed since its first record arrived,
// whichever comes first, so a batch is never empty and a quiet topic never
// holds a record back for longer than wait.
//
// The program produces 30 sensor readings over two partitions, then:
//
//  1. ranges s.Batches(ctx, 10, 250ms) inside s.Use: the readings already in
//     the topic come in full batches of 10; then it produces 3 more readings
//     and gets them as one short batch, cut by the wait;
//  2. runs an engine with a stream whose HandleBatches(8, 100ms, fn) handler
//     stores each batch at once (a bulk insert is what batches are for);
//     a batch is committed when the handler returns nil, so after the engine
//     stops the group's committed offsets are the ends of the partitions.
//
// With KAFKA_BROKERS unset it starts an in-process Kafka cluster:
//
//	go run ./examples/batches
//
// With KAFKA_BROKERS set it uses that cluster, with a topic and groups named
// for this run, which it deletes at the end.
package main

import (
	"context"
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
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// Reading is the value of each record.
type Reading struct {
	Sensor  string  `json:"sensor"`
	Seq     int     `json:"seq"`
	Celsius float64 `json:"celsius"`
}

const (
	partitions = 2
	first      = 30 // readings produced before consuming
	late       = 3  // readings produced while the first stream waits
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
		fmt.Fprintln(os.Stderr, "batches:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	topic, group := "readings", "bulk-insert"
	external := strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != ""
	if external {
		suffix := fmt.Sprintf("-%d", time.Now().UnixNano())
		topic, group = topic+suffix, group+suffix
	}
	brokers, stop, err := kstreamtest.StartCluster(kstreamtest.Topic(topic, partitions))
	if err != nil {
		return err
	}
	defer stop()
	cl, err := kstreamtest.NewClient(brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if external {
		defer adm.DeleteTopics(context.WithoutCancel(ctx), topic)
		defer adm.DeleteGroups(context.WithoutCancel(ctx), group)
	}

	if err := produce(ctx, cl, topic, 0, first); err != nil {
		return err
	}
	fmt.Fprintf(w, "produced %d readings to %q (%d partitions)\n", first, topic, partitions)

	if err := getmany(ctx, w, cl, brokers, topic); err != nil {
		return err
	}
	return bulkInsert(ctx, w, adm, brokers, topic, group)
}

// getmany ranges over batches of the stream inside Use.
func getmany(ctx context.Context, w io.Writer, cl *kgo.Client, brokers []string, topic string) error {
	const max, wait = 10, 250 * time.Millisecond
	fmt.Fprintf(w, "Batches(ctx, %d, %v):\n", max, wait)
	s, err := kstream.NewStream(codec.JSON[Reading](), kstream.Brokers(brokers...), kstream.Topics(topic))
	if err != nil {
		return err
	}
	total := 0
	var producedAt time.Time
	err = s.Use(ctx, func(iter.Seq2[kstream.Record[Reading], error]) error {
		// Use has opened s: range its batches rather than its records.
		for batch, err := range s.Batches(ctx, max, wait) {
			if err != nil {
				return err
			}
			total += len(batch)
			fmt.Fprintf(w, "  batch of %2d records: %s\n", len(batch), describe(batch))
			if !producedAt.IsZero() {
				fmt.Fprintf(w, "  (yielded %v after the produce: cut by the wait)\n", time.Since(producedAt).Truncate(time.Millisecond))
			}
			switch total {
			case first:
				// The topic is drained. Produce a few more: too few for a
				// full batch, so the wait cuts the next one short.
				producedAt = time.Now()
				if err := produce(ctx, cl, topic, first, late); err != nil {
					return err
				}
				fmt.Fprintf(w, "  produced %d more readings\n", late)
			case first + late:
				return nil
			}
		}
		return fmt.Errorf("stopped after %d of %d readings: %w", total, first+late, context.Cause(ctx))
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  %d readings in all\n", total)
	return nil
}

// bulkInsert runs an engine whose stream handles batches, until every
// reading is stored, and shows that the group committed them.
func bulkInsert(ctx context.Context, w io.Writer, adm *kadm.Client, brokers []string, topic, group string) error {
	const max, wait = 8, 100 * time.Millisecond
	fmt.Fprintf(w, "HandleBatches(%d, %v) on an engine:\n", max, wait)
	eng, err := kstream.NewEngine(kstream.Brokers(brokers...))
	if err != nil {
		return err
	}
	s, err := kstream.NewStream(codec.JSON[Reading](),
		kstream.Topics(topic), kstream.Group(group), kstream.Name("bulk-insert"))
	if err != nil {
		return err
	}
	var (
		mu     sync.Mutex
		table  []Reading // the "database table"
		stored = make(chan struct{})
	)
	s.HandleBatches(max, wait, func(ctx context.Context, batch []kstream.Record[Reading]) error {
		mu.Lock()
		defer mu.Unlock()
		for _, rec := range batch {
			table = append(table, rec.Value)
		}
		fmt.Fprintf(w, "  inserted a batch of %2d rows: %s\n", len(batch), describe(batch))
		if len(table) == first+late {
			close(stored)
		}
		return nil // the whole batch is processed
	})
	if err := eng.Add(s); err != nil {
		return err
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	select {
	case <-stored:
	case <-ctx.Done():
	}
	if err := eng.Stop(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	mu.Lock()
	n := len(table)
	mu.Unlock()
	if n != first+late {
		return fmt.Errorf("stored %d of %d readings: %w", n, first+late, context.Cause(ctx))
	}
	fmt.Fprintf(w, "  %d rows inserted\n", n)

	resp, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("fetch committed offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	committed := resp.Offsets()[topic]
	for _, p := range slices.Sorted(maps.Keys(committed)) {
		end, _ := ends.Lookup(topic, p)
		fmt.Fprintf(w, "  committed %s/%d: %d (end %d)\n", topic, p, committed[p].At, end.Offset)
		if committed[p].At != end.Offset {
			return fmt.Errorf("partition %d committed %d, ends at %d", p, committed[p].At, end.Offset)
		}
	}
	return nil
}

// describe names the partitions of a batch and its sequence numbers.
func describe(batch []kstream.Record[Reading]) string {
	seqs := map[int32][]int{}
	for _, rec := range batch {
		seqs[rec.Partition] = append(seqs[rec.Partition], rec.Value.Seq)
	}
	var parts []string
	for _, p := range slices.Sorted(maps.Keys(seqs)) {
		parts = append(parts, fmt.Sprintf("p%d seq %v", p, seqs[p]))
	}
	return strings.Join(parts, ", ")
}

// produce writes readings with seq from..from+n-1, alternating partitions.
func produce(ctx context.Context, cl *kgo.Client, topic string, from, n int) error {
	enc := codec.JSON[Reading]()
	recs := make([]*kgo.Record, 0, n)
	for seq := from; seq < from+n; seq++ {
		r := Reading{Sensor: fmt.Sprintf("s%d", seq%partitions), Seq: seq, Celsius: 20 + float64(seq%7)/2}
		b, err := enc.Encode(r)
		if err != nil {
			return err
		}
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(seq % partitions), Value: b})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	return nil
}
