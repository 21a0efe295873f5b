// Backpressure pauses a partition while the downstream it feeds is slow,
// with Stream.Pause and Stream.Resume, instead of blocking the loop (which
// would hold up every partition, and rebalances) or buffering without
// bound.
//
// The topic has two partitions of sensor readings. Partition 0 feeds a
// slow sink (a worker that takes 20ms per reading, behind a queue);
// partition 1 a fast one. The loop hands each reading to its sink's queue
// and moves on. When the slow queue reaches its high-water mark, the loop
// pauses partition 0: from the next record on, the stream yields only
// partition 1 (and does not fetch partition 0), and the readings of
// partition 0 it had already fetched are kept, not lost. When the slow
// worker has drained the queue to its low-water mark, it resumes partition
// 0 from its own goroutine: Pause and Resume are safe from any goroutine.
// After Resume the kept readings come first, in order.
//
// The stream is bounded (StopAtEnd), so the loop ends once both partitions
// are read to the end they had when the stream opened; the program then
// waits for the sinks and checks that each received its partition's
// readings in order, each once.
//
// What to look at: the "paused partition 0" and "resumed partition 0"
// lines, partition 1 going on meanwhile, and the final check.
//
// With KAFKA_BROKERS unset it runs against an in-process cluster:
//
//	go run ./examples/backpressure
//
// With KAFKA_BROKERS set it uses that cluster, with a topic of its own per
// run.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
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
	perPartition = 20
	high, low    = 5, 1 // the slow queue's water marks
)

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "backpressure:", err)
		os.Exit(1)
	}
}

// sink is a downstream behind a queue, with a worker taking delay per
// reading.
type sink struct {
	queue chan kstream.Record[string]
	delay time.Duration

	mu  sync.Mutex
	got []int64 // offsets delivered, in order
}

func (k *sink) run(onDrained func(queued int)) {
	for rec := range k.queue {
		time.Sleep(k.delay) // the slow work
		k.mu.Lock()
		k.got = append(k.got, rec.Offset)
		k.mu.Unlock()
		if onDrained != nil {
			onDrained(len(k.queue))
		}
	}
}

func run(out io.Writer) error {
	w := &lockedWriter{w: out}
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	topic := "local--readings"
	if strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != "" {
		topic += "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	cluster, err := kstreamtest.Start(kstreamtest.Topic(topic, 2))
	if err != nil {
		return err
	}
	defer cluster.Close()
	var recs []*kgo.Record
	for i := range 2 * perPartition {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % 2), Value: []byte("reading-" + strconv.Itoa(i))})
	}
	if err := cluster.Produce(ctx, recs...); err != nil {
		return err
	}

	s, err := kstream.NewStream(codec.String(),
		kstream.Brokers(cluster.Brokers()...),
		kstream.Topics(topic),
		kstream.Group("backpressure-demo"),
		kstream.StopAtEnd(),
		kstream.Logger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		return err
	}
	slow := &sink{queue: make(chan kstream.Record[string], 2*high), delay: 20 * time.Millisecond}
	fast := &sink{queue: make(chan kstream.Record[string], 2*high)}
	p0 := map[string][]int32{topic: {0}}
	var pausedMu sync.Mutex
	paused, pauses := false, 0

	var wg sync.WaitGroup
	wg.Go(func() {
		slow.run(func(queued int) {
			pausedMu.Lock()
			defer pausedMu.Unlock()
			if paused && queued <= low {
				paused = false
				fmt.Fprintf(w, "slow queue down to %d: resumed partition 0\n", queued)
				s.Resume(p0) // from the worker's goroutine
			}
		})
	})
	wg.Go(func() { fast.run(nil) })

	if err := s.Open(ctx); err != nil {
		return err
	}
	for rec, err := range s.Records(ctx) {
		if err != nil {
			s.Close()
			return err
		}
		if rec.Partition == 1 {
			fast.queue <- rec
			continue
		}
		slow.queue <- rec
		pausedMu.Lock()
		if !paused && len(slow.queue) >= high {
			paused = true
			pauses++
			fast.mu.Lock()
			n := len(fast.got)
			fast.mu.Unlock()
			fmt.Fprintf(w, "slow queue at %d: paused partition 0 (partition 1 goes on: %d delivered so far)\n", len(slow.queue), n)
			s.Pause(p0) // from the loop body: the next record is not of partition 0
		}
		pausedMu.Unlock()
	}
	if err := s.Close(); err != nil {
		return err
	}
	close(slow.queue)
	close(fast.queue)
	wg.Wait()

	want := make([]int64, perPartition)
	for i := range want {
		want[i] = int64(i)
	}
	if !slices.Equal(slow.got, want) || !slices.Equal(fast.got, want) {
		return fmt.Errorf("delivered %v and %v, want 0..%d each", slow.got, fast.got, perPartition-1)
	}
	if pauses == 0 {
		return fmt.Errorf("partition 0 was never paused")
	}
	fmt.Fprintf(w, "partition 0 paused %d times; all %d readings delivered in order, each once\n", pauses, 2*perPartition)
	return nil
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
