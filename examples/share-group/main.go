// Share-group runs four workers on a topic of one partition, as a queue:
// the workers are members of one share group (KIP-932, Kafka 4), so the
// broker hands each job to one worker at a time, whatever the number of
// partitions. A consumer group could give that partition to one worker
// only.
//
// One job is poison: its handler returns kstream.Reject, so the broker
// archives it and never delivers it again, and the worker goes on (a
// Reject is not a crash). The other jobs are accepted as their handler
// returns nil. The program prints which worker handled how many jobs, then
// checks, with a fresh member of the group, that nothing is left: no job
// was left unacknowledged, and the poison job did not come back.
//
// With KAFKA_BROKERS unset it starts an in-process Kafka cluster:
//
//	go run ./examples/share-group
//
// With KAFKA_BROKERS set it uses that cluster (Kafka 4.0 or later with
// share groups enabled), with a topic and group named for this run.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

const (
	workers = 4
	jobs    = 40
	poison  = 7 // the job whose handler rejects it
)

var errPoison = errors.New("job cannot be processed")

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "share-group:", err)
		os.Exit(1)
	}
}

// tally is what the workers did, from their goroutines.
type tally struct {
	mu       sync.Mutex
	byWorker map[string]int
	handled  map[string]int // job -> times accepted
	rejected int
	done     chan struct{}
}

func run(w io.Writer) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	topic, group := "jobs", "workers"
	if strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != "" {
		suffix := fmt.Sprint(time.Now().UnixMilli())
		topic, group = topic+"-"+suffix, group+"-"+suffix
	}
	brokers, stop, err := kstreamtest.StartCluster(kstreamtest.Topic(topic, 1))
	if err != nil {
		return err
	}
	defer stop()
	cl, err := kstreamtest.NewClient(brokers)
	if err != nil {
		return err
	}
	defer cl.Close()
	recs := make([]*kgo.Record, 0, jobs)
	for i := range jobs {
		recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("job-%d", i))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	fmt.Fprintf(w, "produced %d jobs to %s (1 partition); job-%d is poison\n", jobs, topic, poison)

	t := &tally{byWorker: map[string]int{}, handled: map[string]int{}, done: make(chan struct{})}
	eng, err := kstream.NewEngine(kstream.Brokers(brokers...))
	if err != nil {
		return err
	}
	for i := 1; i <= workers; i++ {
		name := fmt.Sprintf("worker-%d", i)
		s, err := kstream.NewStream(codec.String(),
			kstream.Name(name),
			kstream.Topics(topic),
			kstream.ShareGroup(group),
			// Each worker takes a few jobs at a time, leaving the rest
			// to the others.
			kstream.MaxPollRecords(2),
		)
		if err != nil {
			return err
		}
		s.Handle(func(ctx context.Context, rec kstream.Record[string]) error {
			return t.handle(name, rec)
		})
		if err := eng.Add(s); err != nil {
			return err
		}
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	select {
	case <-t.done:
	case <-ctx.Done():
		eng.Stop(context.Background())
		return fmt.Errorf("the workers did not handle every job: %w", ctx.Err())
	}
	if err := eng.Stop(ctx); err != nil {
		return err
	}
	t.mu.Lock()
	for _, name := range slices.Sorted(maps.Keys(t.byWorker)) {
		fmt.Fprintf(w, "  %s handled %d jobs\n", name, t.byWorker[name])
	}
	t.mu.Unlock()

	// A fresh member finds nothing left but a marker produced now.
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("marker")}).FirstErr(); err != nil {
		return err
	}
	left, err := leftover(ctx, brokers, topic, group)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("jobs left in the group after the workers stopped: %v", left)
	}
	fmt.Fprintf(w, "all %d jobs handled by %d workers, job-%d rejected once and never delivered again\n", jobs-1, len(t.byWorker), poison)
	return nil
}

// handle is a worker's handler: 5 ms of work per job; the poison job is
// rejected.
func (t *tally) handle(worker string, rec kstream.Record[string]) error {
	if rec.Value == fmt.Sprintf("job-%d", poison) {
		t.mu.Lock()
		t.rejected++
		t.mu.Unlock()
		return kstream.Reject(fmt.Errorf("%s (delivery %d): %w", rec.Value, rec.DeliveryCount, errPoison))
	}
	time.Sleep(5 * time.Millisecond)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byWorker[worker]++
	t.handled[rec.Value]++
	if len(t.handled) == jobs-1 && t.rejected > 0 {
		select {
		case <-t.done:
		default:
			close(t.done)
		}
	}
	return nil
}

// leftover reads the group with a new member until the marker arrives, and
// returns the jobs it got before it.
func leftover(ctx context.Context, brokers []string, topic, group string) ([]string, error) {
	s, err := kstream.NewStream(codec.String(), kstream.Brokers(brokers...), kstream.Topics(topic), kstream.ShareGroup(group))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var left []string
	for rec, err := range s.Records(ctx) {
		if err != nil {
			return nil, err
		}
		if rec.Value == "marker" {
			cancel() // accepted as the range ends
			continue
		}
		left = append(left, rec.Value)
	}
	if ctx.Err() != nil && !errors.Is(context.Cause(ctx), context.Canceled) {
		return nil, ctx.Err()
	}
	return left, nil
}
