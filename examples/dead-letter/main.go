// Dead-letter sends the records a stream cannot handle to a dead-letter
// topic, and goes on with the next record instead of crashing.
//
// It is the Go answer to "Stream crashing" on the kstreams Streams page: there,
// a record the stream function fails on crashes the stream, and consumption
// stops until someone decides what to do. An engine stream in Go crashes the
// same way by default (kstream.ErrorPolicyStop). With the kstream.DeadLetter
// middleware, a record the handler fails on (an error, or a panic turned
// into an error by kstream.Recover) or whose value cannot be decoded is
// written to a dead-letter topic with Kafka Connect's __connect.errors.*
// headers (source topic, partition, offset, error message and class), and
// counts as handled: the stream goes on and its offset is committed.
//
// The program produces six payments: three good ones, one the handler
// rejects, one that is not valid JSON and one on which the handler panics. It
// runs an engine with two streams over them, one with the middleware and one
// without, until the good ones are processed. The stream without it crashed
// on the first bad payment (the engine logs "stream crashed" on stderr) and
// its group's committed offset stays before it; the other is still running.
// The program then reads the dead-letter topic back, prints each record with
// its headers, and shows that the stream with the middleware committed every
// payment.
//
// With KAFKA_BROKERS unset it starts an in-process Kafka cluster:
//
//	go run ./examples/dead-letter
//
// With KAFKA_BROKERS set it uses that cluster, with topics and groups named
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

// ValidationError is the handler's error for a payment it rejects.
type ValidationError struct {
	ID     int
	Reason string
}

func (e *ValidationError) Error() string { return fmt.Sprintf("payment %d: %s", e.ID, e.Reason) }

// The records the program produces, in order, and what becomes of them.
var inputs = []string{
	`{"id": 1, "amount": 10.5}`,
	`{"id": 2, "amount": 20}`,
	`{"id": 3, "amount": -5}`, // rejected by the handler
	`{"id": 4, "amount": 4`,   // not JSON: fails to decode
	`{"id": 5, "amount": 0}`,  // the handler panics
	`{"id": 6, "amount": 60.25}`,
}

const (
	good = 3 // payments 1, 2 and 6
	bad  = 3
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
		fmt.Fprintln(os.Stderr, "dead-letter:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	topic, dlq, group, auditGroup := "payments", "payments-dlq", "payments-service", "audit"
	external := strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != ""
	if external {
		suffix := fmt.Sprintf("-%d", time.Now().UnixNano())
		topic, dlq, group, auditGroup = topic+suffix, dlq+suffix, group+suffix, auditGroup+suffix
	}
	brokers, stop, err := kstreamtest.StartCluster(kstreamtest.Topic(topic, 1), kstreamtest.Topic(dlq, 1))
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
		defer adm.DeleteTopics(context.WithoutCancel(ctx), topic, dlq)
		defer adm.DeleteGroups(context.WithoutCancel(ctx), group, auditGroup)
	}

	for i, v := range inputs {
		r := &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "payment-%d", i+1), Value: []byte(v)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			return fmt.Errorf("produce: %w", err)
		}
	}
	fmt.Fprintf(w, "produced %d payments to %q\n", len(inputs), topic)

	eng, err := kstream.NewEngine(kstream.Brokers(brokers...))
	if err != nil {
		return err
	}
	payments, err := kstream.NewStream(codec.JSON[Payment](),
		kstream.Topics(topic), kstream.Group(group), kstream.Name("payments"))
	if err != nil {
		return err
	}
	handler := &ledger{w: w, allGood: make(chan struct{})}
	payments.Handle(handler.handle,
		// DeadLetter first (outermost), so that it sees the errors of
		// everything after it; Recover after it, so that a panic reaches it
		// as a *kstream.PanicError.
		kstream.DeadLetter[Payment](eng, dlq),
		kstream.Recover,
	)
	// The same handler without the middleware, in a group of its own: it
	// crashes on the first bad record, as a kstreams stream does.
	audit, err := kstream.NewStream(codec.JSON[Payment](),
		kstream.Topics(topic), kstream.Group(auditGroup), kstream.Name("audit"))
	if err != nil {
		return err
	}
	audit.Handle((&ledger{w: io.Discard}).handle)
	for _, s := range []kstream.Runnable{payments, audit} {
		if err := eng.Add(s); err != nil {
			return err
		}
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	defer eng.Stop(context.WithoutCancel(ctx))

	select {
	case <-handler.allGood:
	case <-ctx.Done():
		return fmt.Errorf("payments not processed: %w", context.Cause(ctx))
	}
	// Payment 6 comes after the three bad ones: the stream went on.
	h, _ := eng.StreamHealth(payments.Name())
	fmt.Fprintf(w, "stream %q is %s (last crash: %v)\n", h.Name, h.State, h.LastErr)
	if h.State != kstream.StreamRunning || h.LastErr != nil {
		return fmt.Errorf("stream %q is %s: %v", h.Name, h.State, h.LastErr)
	}
	h, err = waitCrash(ctx, eng, audit.Name())
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "stream %q, without the middleware, is %s: %v\n", h.Name, h.State, h.LastErr)

	if err := readDeadLetters(ctx, w, brokers, dlq); err != nil {
		return err
	}

	if err := eng.Stop(ctx); err != nil {
		return err
	}
	resp, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("fetch committed offsets: %w", err)
	}
	o, _ := resp.Lookup(topic, 0)
	fmt.Fprintf(w, "committed offset of group %q: %d (all %d payments handled: %d processed, %d dead-lettered)\n", group, o.At, len(inputs), good, bad)
	if o.At != int64(len(inputs)) {
		return fmt.Errorf("committed %d, want %d", o.At, len(inputs))
	}
	resp, err = adm.FetchOffsets(ctx, auditGroup)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("fetch committed offsets: %w", err)
	}
	o, _ = resp.Lookup(topic, 0)
	fmt.Fprintf(w, "committed offset of group %q: %d (stuck before payment 3)\n", auditGroup, o.At)
	if o.At != 2 {
		return fmt.Errorf("group %q committed %d, want 2", auditGroup, o.At)
	}
	return nil
}

// ledger is the stream's handler: it processes good payments, rejects those
// with a negative amount and panics on those with none.
type ledger struct {
	w       io.Writer
	allGood chan struct{} // closed when the good payments are processed

	mu        sync.Mutex
	processed []int
}

func (l *ledger) handle(ctx context.Context, rec kstream.Record[Payment]) error {
	p := rec.Value
	switch {
	case p.Amount < 0:
		return &ValidationError{ID: p.ID, Reason: "negative amount"}
	case p.Amount == 0:
		panic(fmt.Sprintf("payment %d: division by zero amount", p.ID))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.processed = append(l.processed, p.ID)
	fmt.Fprintf(l.w, "processed payment %d (%.2f) at offset %d\n", p.ID, p.Amount, rec.Offset)
	if len(l.processed) == good && l.allGood != nil {
		close(l.allGood)
	}
	return nil
}

// waitCrash waits until the engine reports the stream crashed.
func waitCrash(ctx context.Context, eng *kstream.Engine, name string) (kstream.StreamHealth, error) {
	for {
		h, _ := eng.StreamHealth(name)
		if h.State == kstream.StreamCrashed {
			return h, nil
		}
		select {
		case <-ctx.Done():
			return h, fmt.Errorf("stream %q is %s: %w", name, h.State, context.Cause(ctx))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// readDeadLetters reads the dead-letter topic from the start and prints each
// record with its headers.
func readDeadLetters(ctx context.Context, w io.Writer, brokers []string, dlq string) error {
	s, err := kstream.NewStream(codec.String(), kstream.Brokers(brokers...), kstream.Topics(dlq))
	if err != nil {
		return err
	}
	n := 0
	err = s.Use(ctx, func(records iter.Seq2[kstream.Record[string], error]) error {
		for rec, err := range records {
			if err != nil {
				return err
			}
			n++
			fmt.Fprintf(w, "dead letter %s@%d: key=%s value=%s\n", rec.Topic, rec.Offset, rec.Key, rec.Value)
			for _, h := range rec.Headers {
				if strings.HasPrefix(h.Key, "__connect.errors.") {
					fmt.Fprintf(w, "  %s: %s\n", h.Key, h.Value)
				}
			}
			if n == bad {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n != bad {
		return errors.Join(fmt.Errorf("read %d of %d dead letters", n, bad), context.Cause(ctx))
	}
	return nil
}
