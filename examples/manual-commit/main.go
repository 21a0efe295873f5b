// Manual-commit stores each payment in a database before it commits the
// payment's offset, so that Kafka's committed offset never runs ahead of what
// was stored.
//
// It is the Go counterpart of "Manual commit" on the kstreams Streams page:
// a stream with enable_auto_commit=False that awaits store_in_database(payload)
// and then stream.consumer.commit(). In Go the stream takes
// kstream.ManualCommit() and the loop calls s.Commit(ctx) after the store;
// nothing is committed otherwise, not even when the stream closes.
//
// The database here is an in-memory map guarded by a mutex, standing in for a
// real one. The program runs the stream twice, as two starts of a service:
//
//  1. The database refuses one payment (an outage). The loop returns the
//     error without committing, and the stream closes. The program then shows,
//     per partition, that the offset the group committed (read with kadm) is
//     exactly the number of payments stored: nothing stored is uncommitted,
//     and the failed payment is not committed.
//  2. The database is back. The stream restarts from the committed offsets, so
//     the first payment it gets on that partition is the one whose store
//     failed: it is delivered again. When every payment is stored, the
//     committed offsets equal the ends of the partitions.
//
// Committing after the store turns at-most-once into at-least-once: a crash
// between the store and the commit stores that payment again on restart.
// For exactly once, keep the offsets in the database with the data (see
// kstream.InitialOffsets).
//
// With KAFKA_BROKERS unset it starts an in-process Kafka cluster:
//
//	go run ./examples/manual-commit
//
// With KAFKA_BROKERS set it uses that cluster, with a topic and group named
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

// Payment is the value of each record.
type Payment struct {
	ID     int     `json:"id"`
	Amount float64 `json:"amount"`
}

const (
	partitions = 2
	payments   = 10
	// failingID is the payment the database refuses on the first run.
	failingID = 7
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
		fmt.Fprintln(os.Stderr, "manual-commit:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	topic, group := "payments", "ledger"
	external := strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != ""
	if external {
		// On a shared cluster, a topic and group of this run's own keep
		// other runs' records out.
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

	// Payment i goes to partition i%2, so each partition's offsets are
	// 0, 1, 2, ... in payment order.
	enc := codec.JSON[Payment]()
	for i := 1; i <= payments; i++ {
		b, err := enc.Encode(Payment{ID: i, Amount: float64(i) * 10})
		if err != nil {
			return err
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: int32(i % partitions), Value: b}).FirstErr(); err != nil {
			return fmt.Errorf("produce: %w", err)
		}
	}
	fmt.Fprintf(w, "produced %d payments to %q (%d partitions)\n", payments, topic, partitions)

	db := newDB()
	db.failOnce(failingID)

	fmt.Fprintln(w, "run 1: the database refuses payment", failingID)
	err = consume(ctx, w, brokers, topic, group, db)
	failed, ok := errors.AsType[*storeError](err)
	if !ok || !errors.Is(err, errUnavailable) {
		return fmt.Errorf("run 1 ended with %v, want the database's error", err)
	}
	fmt.Fprintf(w, "run 1 stopped: %v\n", err)
	if err := compare(ctx, w, adm, topic, group, db); err != nil {
		return err
	}
	committed, err := committedOffsets(ctx, adm, topic, group)
	if err != nil {
		return err
	}
	if committed[failed.Partition] != failed.Offset {
		return fmt.Errorf("partition %d: committed %d, want %d (the failed record's offset)", failed.Partition, committed[failed.Partition], failed.Offset)
	}
	fmt.Fprintf(w, "payment %d (%s/%d@%d) was not stored and is not committed: the group's next offset there is still %d\n",
		failed.ID, topic, failed.Partition, failed.Offset, committed[failed.Partition])

	fmt.Fprintln(w, "run 2: the database is back; the stream restarts from the committed offsets")
	if err := consume(ctx, w, brokers, topic, group, db); err != nil {
		return err
	}
	if err := compare(ctx, w, adm, topic, group, db); err != nil {
		return err
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	committed, err = committedOffsets(ctx, adm, topic, group)
	if err != nil {
		return err
	}
	for p, end := range ends.Offsets()[topic] {
		if committed[p] != end.At {
			return fmt.Errorf("partition %d: committed %d, but the partition ends at %d", p, committed[p], end.At)
		}
	}
	fmt.Fprintf(w, "all %d payments stored once each; committed offsets are the ends of the partitions\n", db.count())
	return nil
}

// consume runs one start of the service: it stores each payment, then
// commits, until every payment is stored or storing one fails.
func consume(ctx context.Context, w io.Writer, brokers []string, topic, group string, db *DB) error {
	s, err := kstream.NewStream(codec.JSON[Payment](),
		kstream.Brokers(brokers...),
		kstream.Topics(topic),
		kstream.Group(group),
		kstream.ManualCommit(), // kstreams' enable_auto_commit=False
	)
	if err != nil {
		return err
	}
	first := map[int32]bool{}
	err = s.Use(ctx, func(records iter.Seq2[kstream.Record[Payment], error]) error {
		for rec, err := range records {
			if err != nil {
				return err
			}
			if !first[rec.Partition] {
				first[rec.Partition] = true
				fmt.Fprintf(w, "  first record of %s/%d: offset %d (payment %d)\n", rec.Topic, rec.Partition, rec.Offset, rec.Value.ID)
			}
			// Store first ...
			if err := db.Store(ctx, rec.Partition, rec.Offset, rec.Value); err != nil {
				// ... and on failure return without committing: the
				// payment stays uncommitted and is delivered again.
				return &storeError{ID: rec.Value.ID, Partition: rec.Partition, Offset: rec.Offset, Err: err}
			}
			// ... then commit: every record yielded so far, this one included.
			if err := s.Commit(ctx); err != nil {
				return err
			}
			fmt.Fprintf(w, "  stored payment %d (%s/%d@%d) and committed\n", rec.Value.ID, rec.Topic, rec.Partition, rec.Offset)
			if db.count() == payments {
				return nil
			}
		}
		return context.Cause(ctx) // the range ended early: a signal or the timeout
	})
	return err
}

// compare prints, per partition, the offset the group committed next to what
// the database stored, and fails if they disagree.
func compare(ctx context.Context, w io.Writer, adm *kadm.Client, topic, group string, db *DB) error {
	committed, err := committedOffsets(ctx, adm, topic, group)
	if err != nil {
		return err
	}
	stored := db.offsets()
	for p := range int32(partitions) {
		offs := stored[p]
		fmt.Fprintf(w, "  %s/%d: committed offset %d, stored offsets %v\n", topic, p, committed[p], offs)
		// Offsets start at 0 and are stored in order, so the committed
		// offset (the next to read) must be the number stored.
		if committed[p] != int64(len(offs)) {
			return fmt.Errorf("partition %d: committed %d but stored %d", p, committed[p], len(offs))
		}
	}
	return nil
}

func committedOffsets(ctx context.Context, adm *kadm.Client, topic, group string) (map[int32]int64, error) {
	resp, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("fetch committed offsets of group %q: %w", group, err)
	}
	out := map[int32]int64{}
	for p, o := range resp.Offsets()[topic] {
		out[p] = o.At
	}
	return out, nil
}

// storeError says which payment the database refused.
type storeError struct {
	ID        int
	Partition int32
	Offset    int64
	Err       error
}

func (e *storeError) Error() string {
	return fmt.Sprintf("store payment %d (partition %d, offset %d): %v", e.ID, e.Partition, e.Offset, e.Err)
}

func (e *storeError) Unwrap() error { return e.Err }

// errUnavailable is the database's error for a refused write.
var errUnavailable = errors.New("database unavailable")

// DB stands for the application's database: payments by partition and
// offset, guarded by a mutex.
type DB struct {
	mu     sync.Mutex
	rows   map[int32]map[int64]Payment
	failID int
}

func newDB() *DB { return &DB{rows: map[int32]map[int64]Payment{}} }

// failOnce makes the next Store of payment id fail.
func (db *DB) failOnce(id int) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.failID = id
}

// Store writes a payment. Storing the same record twice is an error, so that
// a duplicate delivery would show.
func (db *DB) Store(ctx context.Context, partition int32, offset int64, p Payment) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.failID == p.ID {
		db.failID = 0
		return errUnavailable
	}
	if db.rows[partition] == nil {
		db.rows[partition] = map[int64]Payment{}
	}
	if _, dup := db.rows[partition][offset]; dup {
		return fmt.Errorf("payment %d at %d@%d stored twice", p.ID, partition, offset)
	}
	db.rows[partition][offset] = p
	return nil
}

func (db *DB) count() int {
	db.mu.Lock()
	defer db.mu.Unlock()
	n := 0
	for _, rows := range db.rows {
		n += len(rows)
	}
	return n
}

// offsets returns the stored offsets of each partition, sorted.
func (db *DB) offsets() map[int32][]int64 {
	db.mu.Lock()
	defer db.mu.Unlock()
	out := map[int32][]int64{}
	for p, rows := range db.rows {
		out[p] = slices.Sorted(maps.Keys(rows))
	}
	return out
}
