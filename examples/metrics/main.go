// Metrics runs an engine whose stream consumes orders while an HTTP server
// exposes /metrics (Prometheus: the SDK's per-partition committed offset,
// position, high watermark and lag, its counters, and franz-go's own client
// metrics) and /healthz (the engine's and each stream's state, as JSON).
//
// It produces orders, lets the stream handle part of them, scrapes its own
// /metrics and /healthz with an HTTP client the way Prometheus and a load
// balancer would, prints what it read, and stops. See docs/metrics.md for
// every metric.
//
//	go run ./examples/metrics
//
// With KAFKA_BROKERS set it uses that cluster.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// Order is the value of each record.
type Order struct {
	ID     int     `json:"id"`
	Amount float64 `json:"amount"`
}

const (
	topic   = "orders"
	group   = "metrics-example"
	total   = 20 // orders produced
	handled = 12 // orders the stream handles before the scrape
)

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "metrics:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	brokers, stopCluster, err := kstreamtest.StartCluster(kstreamtest.Topic(topic, 1))
	if err != nil {
		return err
	}
	defer stopCluster()

	reg := prometheus.NewRegistry()
	eng, err := kstream.NewEngine(kstream.Brokers(brokers...), kstream.Name("shop"), kstream.Metrics(reg))
	if err != nil {
		return err
	}
	orders, err := kstream.NewStream(codec.JSON[Order](), kstream.Topics(topic), kstream.Group(group), kstream.Name("orders"),
		kstream.ClientOptions(kgo.AutoCommitInterval(100*time.Millisecond)))
	if err != nil {
		return err
	}
	var count atomic.Int32
	enough := make(chan struct{})
	release := make(chan struct{})
	orders.Handle(func(ctx context.Context, rec kstream.Record[Order]) error {
		if count.Add(1) == handled {
			close(enough)
			select { // hold the next records back while the metrics are read
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})

	// The HTTP server an operator would scrape.
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/healthz", eng.HealthHandler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown below
	defer srv.Shutdown(context.Background())
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(w, "serving %s/metrics and %s/healthz\n", base, base)

	if err := eng.Start(ctx); err != nil {
		return err
	}
	defer eng.Stop(context.Background())
	p := kstream.NewProducer(eng, topic, codec.JSON[Order]())
	for i := 1; i <= total; i++ {
		if _, err := p.Send(ctx, nil, Order{ID: i, Amount: float64(i)}); err != nil {
			return err
		}
	}
	// Added to the running engine, the stream starts at once. (Added
	// after the sends so that its first fetch sees all of them: the high
	// watermark, and so the lag, are as of the stream's last fetch.)
	if err := eng.Add(orders); err != nil {
		return err
	}
	select {
	case <-enough:
	case <-ctx.Done():
		return fmt.Errorf("the stream handled only %d orders: %w", count.Load(), ctx.Err())
	}

	// Processed records are committed every 100ms: wait for the commit of
	// the first handled-1 orders (the one in hand is not processed yet),
	// then read what Prometheus would.
	want := fmt.Sprintf(`kstreams_committed_offset{group="%s",partition="0",stream="orders",topic="%s"} %d`, group, topic, handled-1)
	var metrics map[string]string
	for metrics = nil; ; {
		text, err := get(ctx, base+"/metrics")
		if err != nil {
			return err
		}
		if strings.Contains(text, want) {
			metrics = pick(text, "kstreams_committed_offset", "kstreams_position{", "kstreams_highwater", "kstreams_lag", "kstreams_position_lag",
				"kstreams_records_processed_total", "kstreams_records_sent_total", "kstreams_handler_duration_seconds_count")
			break
		}
		select {
		case <-ctx.Done():
			return errors.New("the committed offset never reached the metrics")
		case <-time.After(50 * time.Millisecond):
		}
	}
	fmt.Fprintln(w, "from /metrics:")
	names := make([]string, 0, len(metrics))
	for n := range metrics {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %s\n", metrics[n])
	}
	health, err := get(ctx, base+"/healthz")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "from /healthz: %s", health)

	close(release)
	if err := eng.Stop(ctx); err != nil {
		return err
	}
	after, err := get(ctx, base+"/metrics")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "after Stop, kstreams_lag series: %d\n", strings.Count(after, "\nkstreams_lag{"))
	return nil
}

func get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// pick returns, for each prefix, the first line of the exposition that
// starts with it.
func pick(text string, prefixes ...string) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		for _, p := range prefixes {
			if _, ok := out[p]; !ok && strings.HasPrefix(line, p) {
				out[p] = line
			}
		}
	}
	return out
}
