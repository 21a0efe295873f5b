// Backfill replays a time range of a topic into a database and exits by
// itself: one engine with one bounded stream (kstream.StartAt plus
// kstream.StopAtEnd). It is the shape of every backfill job: read what was
// produced from time t up to now, store it, stop.
//
// The topic holds a day of events, one every half hour, over three
// partitions. The job backfills the last six hours: StartAt(now - 6h)
// starts each partition at its first event at or after that time (Kafka's
// ListOffsets by time), and StopAtEnd ends each partition at the end
// offset it had when the stream opened. The stream has no group, so no
// committed offset takes precedence over StartAt and nothing is committed:
// the database is the job's record. Each event is stored with INSERT OR
// IGNORE on its topic, partition and offset, so running the job again
// stores nothing twice.
//
// The database is SQLite (the pure-Go driver modernc.org/sqlite), in a file
// of a temporary directory. Engine.Run returns nil once the stream has
// finished (its state is StreamFinished); the program then prints what the
// database holds.
//
// What to look at: "engine stopped by itself", the stream's state
// ("finished"), and the count and time range of the stored events: the 12
// events of the last six hours, none older.
//
// With KAFKA_BROKERS unset it runs against an in-process cluster:
//
//	go run ./examples/backfill
//
// With KAFKA_BROKERS set it uses that cluster, with a topic of its own per
// run.
package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
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
	partitions = 3
	events     = 48 // a day, one every half hour
	every      = 30 * time.Minute
	window     = 6 * time.Hour
)

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "backfill:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	w := &lockedWriter{w: out} // the SDK logs from its own goroutines
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	topic := "local--backfill"
	if strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != "" {
		topic += "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	cluster, err := kstreamtest.Start(kstreamtest.Topic(topic, partitions))
	if err != nil {
		return err
	}
	defer cluster.Close()

	// A day of events, the newest a minute ago.
	now := time.Now()
	first := now.Add(-time.Minute - (events-1)*every).Truncate(time.Millisecond)
	var recs []*kgo.Record
	for i := range events {
		recs = append(recs, &kgo.Record{
			Topic:     topic,
			Partition: int32(i % partitions),
			Value:     []byte("event-" + strconv.Itoa(i+1)),
			Timestamp: first.Add(time.Duration(i) * every),
		})
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		return err
	}
	fmt.Fprintf(w, "produced %d events over %d partitions, one every %v, the last at %s\n",
		events, partitions, every, recs[len(recs)-1].Timestamp.Format(time.Kitchen))

	dir, err := os.MkdirTemp("", "backfill-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := openDB(ctx, filepath.Join(dir, "backfill.db"))
	if err != nil {
		return err
	}
	defer db.Close()

	from := now.Add(-window)
	logger := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: slog.LevelWarn,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	eng, err := kstream.NewEngine(kstream.Brokers(cluster.Brokers()...), kstream.Logger(logger))
	if err != nil {
		return err
	}
	s, err := kstream.NewStream(codec.String(),
		kstream.Topics(topic),
		kstream.Name("backfill"),
		kstream.StartAt(from), // each partition's first event at or after from
		kstream.StopAtEnd(),   // up to the end offsets it had when it opened
	)
	if err != nil {
		return err
	}
	s.Handle(func(ctx context.Context, ev kstream.Record[string]) error {
		_, err := db.ExecContext(ctx,
			`INSERT OR IGNORE INTO events (topic, partition, "offset", value, ts) VALUES (?, ?, ?, ?, ?)`,
			ev.Topic, ev.Partition, ev.Offset, ev.Value, ev.Timestamp.UnixMilli())
		return err
	})
	if err := eng.Add(s); err != nil {
		return err
	}
	fmt.Fprintf(w, "backfilling from %s (%v ago) to now\n", from.Format(time.Kitchen), window)
	start := time.Now()
	if err := eng.Run(ctx); err != nil { // returns once the stream has finished
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("the engine was stopped by the timeout, not by the end of the stream")
	}
	sh, _ := eng.StreamHealth("backfill")
	fmt.Fprintf(w, "engine stopped by itself after %v; stream %q is %s\n", time.Since(start).Round(100*time.Millisecond), sh.Name, sh.State)

	var n int
	var oldest, newest int64
	if err := db.QueryRowContext(ctx, `SELECT count(*), min(ts), max(ts) FROM events`).Scan(&n, &oldest, &newest); err != nil {
		return err
	}
	fmt.Fprintf(w, "database: %d events, from %s to %s\n", n,
		time.UnixMilli(oldest).Format(time.Kitchen), time.UnixMilli(newest).Format(time.Kitchen))
	if time.UnixMilli(oldest).Before(from) {
		return fmt.Errorf("an event older than the window was stored: %s", time.UnixMilli(oldest))
	}
	return nil
}

func openDB(ctx context.Context, path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	const schema = `
CREATE TABLE IF NOT EXISTS events (
	topic     TEXT    NOT NULL,
	partition INTEGER NOT NULL,
	"offset"  INTEGER NOT NULL,
	value     TEXT    NOT NULL,
	ts        INTEGER NOT NULL,
	PRIMARY KEY (topic, partition, "offset")
);`
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create schema: %w", err)
	}
	return db, nil
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
