// Tracing follows one order through two streams with OpenTelemetry, and
// exports the spans to standard output.
//
// The engine is made with kstream.Tracing(tp). The program starts a
// "checkout" span, as an HTTP handler would, and sends an order under it:
// Send writes the span's W3C trace context into the record's traceparent
// header. The "orders" stream handles the order in a "process orders" span
// whose parent is that header; its handler's ctx carries the span, so the
// shipment it sends under ctx carries it on. The "shipments" stream handles
// the shipment in a "process shipments" span, a child of the orders one. One
// trace covers the whole flow:
//
//	checkout
//	  process orders
//	    process shipments
//
// The spans are exported with the stdouttrace exporter, one JSON object
// each, and the program prints the tree they make at the end.
//
// With KAFKA_BROKERS unset it starts an in-process Kafka cluster:
//
//	go run ./examples/tracing
//
// With KAFKA_BROKERS set it uses that cluster, with topics and groups named
// for this run, which it deletes at the end.
package main

import (
	"context"
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
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
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
		fmt.Fprintln(os.Stderr, "tracing:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	// The exporter writes from the handlers' goroutines.
	w := &lockedWriter{w: out}
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	orders, shipments := "orders", "shipments"
	external := strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != ""
	if external {
		suffix := fmt.Sprintf("-%d", time.Now().UnixNano())
		orders, shipments = orders+suffix, shipments+suffix
	}
	c, err := kstreamtest.Start(kstreamtest.Topic(orders, 1), kstreamtest.Topic(shipments, 1))
	if err != nil {
		return err
	}
	defer c.Close()
	if external {
		adm := c.Admin()
		defer adm.DeleteTopics(context.WithoutCancel(ctx), orders, shipments)
		defer deleteGroups(context.WithoutCancel(ctx), adm, orders, shipments)
	}

	// The tracer provider: every span, exported as JSON to w when it ends
	// (WithSyncer; a service would batch with WithBatcher), and kept for
	// the tree printed at the end.
	stdout, err := stdouttrace.New(stdouttrace.WithWriter(w))
	if err != nil {
		return err
	}
	tree := &treeExporter{SpanExporter: stdout}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tree))
	defer tp.Shutdown(context.WithoutCancel(ctx))

	eng, err := kstream.NewEngine(kstream.Brokers(c.Brokers()...), kstream.Tracing(tp))
	if err != nil {
		return err
	}
	ordersStream, err := kstream.NewStream(codec.String(), kstream.Topics(orders), kstream.Group(orders), kstream.Name("orders"))
	if err != nil {
		return err
	}
	ordersStream.Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		// ctx carries this record's process span: the shipment sent
		// under it continues the trace.
		_, err := eng.Send(ctx, shipments, []byte("shipment for "+rec.Value))
		return err
	})
	shipped := make(chan string, 1)
	shipmentsStream, err := kstream.NewStream(codec.String(), kstream.Topics(shipments), kstream.Group(shipments), kstream.Name("shipments"))
	if err != nil {
		return err
	}
	shipmentsStream.Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		shipped <- rec.Value
		return nil
	})
	for _, s := range []kstream.Runnable{ordersStream, shipmentsStream} {
		if err := eng.Add(s); err != nil {
			return err
		}
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	defer eng.Stop(context.WithoutCancel(ctx))

	checkoutCtx, checkout := tp.Tracer("examples/tracing").Start(ctx, "checkout")
	_, err = eng.Send(checkoutCtx, orders, []byte("order-1"))
	checkout.End()
	if err != nil {
		return err
	}
	select {
	case v := <-shipped:
		fmt.Fprintf(w, "handled %q\n", v)
	case <-ctx.Done():
		return fmt.Errorf("the shipment was not handled: %w", context.Cause(ctx))
	}
	// Stop returns once the handlers have, so every process span has
	// ended and been exported.
	if err := eng.Stop(ctx); err != nil {
		return err
	}
	return tree.print(w, checkout.SpanContext().TraceID(), orders, shipments)
}

// treeExporter exports spans through the exporter it wraps and keeps their
// names and parentage.
type treeExporter struct {
	sdktrace.SpanExporter
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
}

func (t *treeExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	t.mu.Lock()
	t.spans = append(t.spans, spans...)
	t.mu.Unlock()
	return t.SpanExporter.ExportSpans(ctx, spans)
}

// print prints the spans of trace id as a tree, and checks that it is the
// chain checkout > process orders > process shipments.
func (t *treeExporter) print(w io.Writer, id trace.TraceID, orders, shipments string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	var root sdktrace.ReadOnlySpan
	n := 0
	for _, s := range t.spans {
		if s.SpanContext().TraceID() != id {
			continue
		}
		n++
		if !s.Parent().IsValid() {
			root = s
			continue
		}
		children[s.Parent().SpanID()] = append(children[s.Parent().SpanID()], s)
	}
	if root == nil {
		return fmt.Errorf("no root span in trace %s", id)
	}
	fmt.Fprintf(w, "trace %s, %d spans:\n", id, n)
	var chain []string
	var walk func(s sdktrace.ReadOnlySpan, depth int)
	walk = func(s sdktrace.ReadOnlySpan, depth int) {
		fmt.Fprintf(w, "%s%s (%s)\n", strings.Repeat("  ", depth+1), s.Name(), s.SpanKind())
		chain = append(chain, s.Name())
		for _, c := range children[s.SpanContext().SpanID()] {
			walk(c, depth+1)
		}
	}
	walk(root, 0)
	want := []string{"checkout", "process " + orders, "process " + shipments}
	if strings.Join(chain, " > ") != strings.Join(want, " > ") {
		return fmt.Errorf("trace is %v, want %v", chain, want)
	}
	fmt.Fprintf(w, "one trace: %s\n", strings.Join(chain, " > "))
	return nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func deleteGroups(ctx context.Context, adm *kadm.Client, groups ...string) {
	adm.DeleteGroups(ctx, groups...)
}
