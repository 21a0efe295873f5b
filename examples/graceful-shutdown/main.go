// Graceful-shutdown stops an engine on SIGTERM without losing or repeating
// work: the job in flight when the signal arrives finishes, its offset is
// committed, the group is left, and only then does eng.Run return.
//
// It is the Go counterpart of the start and shutdown of an engine on the
// kstreams Streams page, where aiorun.run(start(), shutdown_callback=shutdown)
// awaits stream_engine.stop() when the process is told to stop. In Go the
// context of eng.Run comes from signal.NotifyContext(ctx, SIGINT, SIGTERM):
// when a signal cancels it, Run stops the engine gracefully. It stops
// fetching, lets each handler finish the record in hand (the handler's
// context stays live until the stop deadline), commits, leaves the groups,
// flushes the producer and returns.
//
// The program produces three slow jobs, and when the first is in flight it
// sends itself SIGTERM (as a container runtime or systemd would). It then
// shows that job 1 finished after the signal, that Run returned only after
// it, that the group committed offset 1 (job 1 done) and that jobs 2 and 3
// were not started: they wait in the topic for the next start.
//
// With KAFKA_BROKERS unset it starts an in-process Kafka cluster:
//
//	go run ./examples/graceful-shutdown
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

const (
	jobs    = 3
	jobTime = 800 * time.Millisecond // how long the handler works on a job
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
		fmt.Fprintln(os.Stderr, "graceful-shutdown:", err)
		os.Exit(1)
	}
}

// run is the program: the engine runs until SIGINT or SIGTERM, and the
// program sends itself SIGTERM once a job is in flight.
func run(w io.Writer) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	sigterm := func() error {
		fmt.Fprintln(w, "sending SIGTERM to this process")
		return syscall.Kill(os.Getpid(), syscall.SIGTERM)
	}
	return shutdownDemo(ctx, w, "SIGTERM", sigterm)
}

// shutdownDemo runs an engine with ctx until ctx is done. It calls stop,
// named what in the output, once the first job is in flight; stop must make
// ctx done (run sends SIGTERM, which signal.NotifyContext turns into a
// cancellation; a test cancels ctx itself).
func shutdownDemo(ctx context.Context, w io.Writer, what string, stop func() error) error {
	// The overall timeout: if stop does not stop the engine, Run returns
	// at the deadline and the program fails.
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()

	topic, group := "jobs", "workers"
	external := strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != ""
	if external {
		suffix := fmt.Sprintf("-%d", time.Now().UnixNano())
		topic, group = topic+suffix, group+suffix
	}
	brokers, stopCluster, err := kstreamtest.StartCluster(kstreamtest.Topic(topic, 1))
	if err != nil {
		return err
	}
	defer stopCluster()
	cl, err := kstreamtest.NewClient(brokers)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if external {
		defer adm.DeleteTopics(context.WithoutCancel(ctx), topic)
		defer adm.DeleteGroups(context.WithoutCancel(ctx), group)
	}
	for i := 1; i <= jobs; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "job %d", i)}).FirstErr(); err != nil {
			return fmt.Errorf("produce: %w", err)
		}
	}
	fmt.Fprintf(w, "produced %d jobs to %q\n", jobs, topic)

	eng, err := kstream.NewEngine(kstream.Brokers(brokers...))
	if err != nil {
		return err
	}
	s, err := kstream.NewStream(codec.String(), kstream.Topics(topic), kstream.Group(group), kstream.Name("worker"))
	if err != nil {
		return err
	}
	var (
		inFlight  = make(chan struct{})
		startOnce sync.Once
		mu        sync.Mutex
		finished  []string
		stopped   time.Time // when stop was called
		job1Done  time.Time
	)
	s.Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		fmt.Fprintf(w, "%s: started (offset %d)\n", rec.Value, rec.Offset)
		startOnce.Do(func() { close(inFlight) })
		select {
		case <-time.After(jobTime):
		case <-ctx.Done():
			// Only at the stop deadline: the job gives up, uncommitted.
			return ctx.Err()
		}
		mu.Lock()
		defer mu.Unlock()
		finished = append(finished, rec.Value)
		if rec.Offset == 0 {
			job1Done = time.Now()
		}
		fmt.Fprintf(w, "%s: finished\n", rec.Value)
		return nil
	})
	if err := eng.Add(s); err != nil {
		return err
	}

	stopErr := make(chan error, 1)
	go func() {
		select {
		case <-inFlight:
		case <-ctx.Done():
			stopErr <- nil
			return
		}
		mu.Lock()
		stopped = time.Now()
		mu.Unlock()
		stopErr <- stop()
	}()

	// Run returns once ctx is done and the engine has stopped gracefully.
	if err := eng.Run(ctx); err != nil {
		return err
	}
	returned := time.Now()
	if err := <-stopErr; err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return errors.New("the engine was not stopped before the timeout")
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Fprintf(w, "eng.Run returned %v after %s (ctx: %v)\n", returned.Sub(stopped).Round(100*time.Millisecond), what, context.Cause(ctx))
	if len(finished) != 1 || finished[0] != "job 1" || job1Done.Before(stopped) || job1Done.After(returned) {
		return fmt.Errorf("finished %q, want job 1 only, between %s and Run's return", finished, what)
	}
	fmt.Fprintf(w, "job 1 finished %v after %s, before Run returned\n", job1Done.Sub(stopped).Round(100*time.Millisecond), what)

	resp, err := adm.FetchOffsets(context.WithoutCancel(ctx), group)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("fetch committed offsets: %w", err)
	}
	o, _ := resp.Lookup(topic, 0)
	fmt.Fprintf(w, "committed offset of %s/0: %d (job 1 done; jobs 2 and 3 were not started and wait for the next start)\n", topic, o.At)
	if o.At != 1 {
		return fmt.Errorf("committed %d, want 1", o.At)
	}
	return nil
}
