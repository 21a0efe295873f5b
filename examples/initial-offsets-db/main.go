// Initial-offsets-db is the Go form of "Starting the stream with initial
// offsets" on the kstreams Streams page: an application that keeps its own
// offsets in its database instead of committing them to Kafka, and starts
// its stream from them with kstream.InitialOffsets.
//
// The database is SQLite (the pure-Go driver modernc.org/sqlite), in a file
// of a temporary directory. For each order the program consumes, one
// transaction stores the result (a row of the orders table) and the next
// offset to read (the offsets table), so the two can never disagree: a
// crash between them is impossible, and an order is stored exactly once.
// The stream uses ManualCommit and never calls Commit, so Kafka holds no
// offset for the group: the database is the only record of progress.
//
// The program runs the application twice, as a restart would:
//
//  1. The database has no offsets yet, so the stream starts where the
//     group's reset policy says (the earliest record). It stores three
//     orders and stops; the stream and the database are closed.
//  2. The database is opened again, its offsets are loaded, and a new
//     stream instance starts with them as InitialOffsets: it resumes at
//     the fourth order, with nothing read twice.
//
// The second start also names partition 1 of the topic, which has only one
// partition (0): as the seed page says, a partition not assigned to the
// stream is ignored with a warning. The SDK logs it through the stream's
// slog logger, which here writes to the program's output, together with its
// info logs ("initial offset applied").
//
// What to look at: "resuming from the database" with offset 3, the
// warning for partition 1, the first order the second run consumes
// (order-4), and the final check that every order is in the database once.
//
// With KAFKA_BROKERS unset it runs against an in-process cluster:
//
//	go run ./examples/initial-offsets-db
//
// With KAFKA_BROKERS set it uses that cluster; records left in the topic by
// earlier runs are read past, and their offsets stored, but not processed.
package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

const (
	topic   = "local--kstreams"
	group   = "initial-offsets-demo"
	nOrders = 6
	// firstRun is how many orders the first run stores before it stops.
	firstRun = 3
)

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "initial-offsets-db:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	w := &lockedWriter{w: out} // the SDK logs from its own goroutines
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()

	cluster, err := kstreamtest.Start(kstreamtest.Topic(topic, 1))
	if err != nil {
		return err
	}
	defer cluster.Close()
	runID := newRunID()

	dir, err := os.MkdirTemp("", "initial-offsets-db-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dbPath := filepath.Join(dir, "app.db")

	// The SDK's logs, without timestamps so that the output reads well.
	logger := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: slog.LevelInfo,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))

	var recs []*kgo.Record
	for i := 1; i <= nOrders; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: 0, Key: []byte(runID), Value: []byte("order-" + strconv.Itoa(i))})
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		return err
	}
	fmt.Fprintf(w, "produced order-1..order-%d to %s/0\n", nOrders, topic)

	fmt.Fprintln(w, "--- first run")
	if err := runApp(ctx, w, logger, cluster.Brokers(), dbPath, runID, nil, firstRun); err != nil {
		return err
	}

	fmt.Fprintln(w, "--- second run (restart)")
	// Partition 1 does not exist: the stream warns and ignores it.
	notAssigned := kstream.TopicPartitionOffset{Topic: topic, Partition: 1, Offset: 0}
	if err := runApp(ctx, w, logger, cluster.Brokers(), dbPath, runID, []kstream.TopicPartitionOffset{notAssigned}, nOrders-firstRun); err != nil {
		return err
	}

	fmt.Fprintln(w, "--- after both runs")
	db, err := openDB(ctx, dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	var stored, distinct int
	var first, last int64
	err = db.QueryRowContext(ctx,
		`SELECT count(*), count(DISTINCT "offset"), min("offset"), max("offset") FROM orders`).
		Scan(&stored, &distinct, &first, &last)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "database: %d orders stored, %d distinct offsets (%d..%d)\n", stored, distinct, first, last)
	offsets, err := loadOffsets(ctx, db)
	if err != nil {
		return err
	}
	for _, o := range offsets {
		fmt.Fprintf(w, "database: next offset of %s/%d is %d\n", o.Topic, o.Partition, o.Offset)
	}
	committed, err := cluster.Committed(ctx, group)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "kafka: group %q has %d committed offsets (ManualCommit, and Commit is never called)\n", group, len(committed[topic]))
	return nil
}

// runApp is one life of the application: it opens the database, starts a
// new stream from the offsets stored there (plus extra), stores up to n of
// this run's orders, and closes the stream and the database.
func runApp(ctx context.Context, w io.Writer, logger *slog.Logger, brokers []string, dbPath, runID string, extra []kstream.TopicPartitionOffset, n int) error {
	db, err := openDB(ctx, dbPath)
	if err != nil {
		return err
	}
	defer db.Close()

	initial, err := loadOffsets(ctx, db)
	if err != nil {
		return err
	}
	if len(initial) == 0 {
		fmt.Fprintln(w, "no offsets in the database: starting from the reset policy (earliest)")
	}
	for _, o := range initial {
		fmt.Fprintf(w, "resuming from the database: %s/%d at offset %d\n", o.Topic, o.Partition, o.Offset)
	}

	s, err := kstream.NewStream(codec.String(),
		kstream.Brokers(brokers...),
		kstream.Topics(topic),
		kstream.Group(group),
		kstream.Name("my-stream"),
		kstream.ManualCommit(),
		kstream.InitialOffsets(append(initial, extra...)...),
		kstream.Logger(logger),
	)
	if err != nil {
		return err
	}
	stored := 0
	err = s.Use(ctx, func(records iter.Seq2[kstream.Record[string], error]) error {
		for cr, err := range records {
			if err != nil {
				return err
			}
			mine := string(cr.Key) == runID // else left by an earlier run on a shared cluster
			if err := store(ctx, db, cr, mine); err != nil {
				return err
			}
			if !mine {
				continue
			}
			fmt.Fprintf(w, "stored %s (offset %d) and next offset %d in one transaction\n", cr.Value, cr.Offset, cr.Offset+1)
			stored++
			if stored == n {
				break
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if stored < n {
		return fmt.Errorf("stored %d of %d orders before stopping: %w", stored, n, context.Cause(ctx))
	}
	return nil
}

// store writes the order (if process) and the next offset of its partition
// in one transaction.
func store(ctx context.Context, db *sql.DB, cr kstream.Record[string], process bool) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // a no-op after Commit
	if process {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO orders (topic, partition, "offset", value) VALUES (?, ?, ?, ?)`,
			cr.Topic, cr.Partition, cr.Offset, cr.Value)
		if err != nil {
			return fmt.Errorf("store order at offset %d: %w", cr.Offset, err)
		}
	}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO offsets (topic, partition, next_offset) VALUES (?, ?, ?)
		 ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset`,
		cr.Topic, cr.Partition, cr.Offset+1)
	if err != nil {
		return err
	}
	return tx.Commit()
}

// openDB opens (creating if needed) the application's database.
func openDB(ctx context.Context, path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	const schema = `
CREATE TABLE IF NOT EXISTS orders (
	topic     TEXT    NOT NULL,
	partition INTEGER NOT NULL,
	"offset"  INTEGER NOT NULL,
	value     TEXT    NOT NULL,
	PRIMARY KEY (topic, partition, "offset")
);
CREATE TABLE IF NOT EXISTS offsets (
	topic       TEXT    NOT NULL,
	partition   INTEGER NOT NULL,
	next_offset INTEGER NOT NULL,
	PRIMARY KEY (topic, partition)
);`
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create schema: %w", err)
	}
	return db, nil
}

// loadOffsets returns the next offset to read of each partition the
// database knows, the form InitialOffsets takes.
func loadOffsets(ctx context.Context, db *sql.DB) ([]kstream.TopicPartitionOffset, error) {
	rows, err := db.QueryContext(ctx, `SELECT topic, partition, next_offset FROM offsets ORDER BY topic, partition`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var offs []kstream.TopicPartitionOffset
	for rows.Next() {
		var o kstream.TopicPartitionOffset
		if err := rows.Scan(&o.Topic, &o.Partition, &o.Offset); err != nil {
			return nil, err
		}
		offs = append(offs, o)
	}
	return offs, rows.Err()
}

// newRunID returns the key this run gives its records. On a shared cluster
// it tells this run's records from those of earlier runs; on the embedded
// cluster there are no others.
func newRunID() string {
	if strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) == "" {
		return "embedded"
	}
	return strconv.FormatInt(time.Now().UnixNano(), 36)
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
