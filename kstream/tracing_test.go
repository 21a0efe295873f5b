package kstream_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// A W3C trace context the tests put in a record's headers, as an upstream
// producer would.
const (
	upstreamTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	upstreamSpan  = "00f067aa0ba902b7"
	upstreamTP    = "00-" + upstreamTrace + "-" + upstreamSpan + "-01"
)

func newRecorder(t *testing.T) (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return sr, tp
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		out[kv.Key] = kv.Value
	}
	return out
}

func spansNamed(sr *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range sr.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func traceparent(sc trace.SpanContext) string {
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
}

// A Handle stream with Tracing gives each record a consumer span whose
// parent is the record's traceparent, carried by the handler's ctx; a
// record without one gets a root span; a failed record's span has the error
// status; what the handler sends (and what DeadLetter sends) carries the
// process span's context.
func TestTracingHandleSpans(t *testing.T) {
	e := newEnv(t, 1, 0)
	for _, topic := range []string{"out", "dlq"} {
		if err := e.c.CreateTopic(e.ctx, topic, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.c.Produce(e.ctx,
		&kgo.Record{Topic: e.topic, Value: []byte("traced"), Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(upstreamTP)}}},
		&kgo.Record{Topic: e.topic, Value: []byte("root")},
		&kgo.Record{Topic: e.topic, Value: []byte("fails"), Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(upstreamTP)}}},
	); err != nil {
		t.Fatal(err)
	}
	sr, tp := newRecorder(t)
	eng := e.engine(kstream.Tracing(tp))
	var mu sync.Mutex
	inHandler := map[string]trace.SpanContext{}
	eng.Add(e.engineStream(e.topic, "traced").Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		mu.Lock()
		inHandler[rec.Value] = trace.SpanContextFromContext(ctx)
		mu.Unlock()
		if rec.Batch() != nil {
			return errors.New("Record.Batch is not nil in Handle")
		}
		if rec.Value == "fails" {
			return errBoom
		}
		_, err := eng.Send(ctx, "out", []byte(rec.Value))
		return err
	}, kstream.DeadLetter[string](eng, "dlq")))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	name := "process " + e.topic
	eventually(t, 20*time.Second, "three process spans", func() bool { return len(spansNamed(sr, name)) == 3 })
	spans := spansNamed(sr, name)
	byOffset := map[int64]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byOffset[attrs(s)["messaging.kafka.offset"].AsInt64()] = s
	}
	traced, root, failed := byOffset[0], byOffset[1], byOffset[2]
	if traced == nil || root == nil || failed == nil {
		t.Fatalf("spans by offset %v", byOffset)
	}
	for _, s := range spans {
		a := attrs(s)
		if s.SpanKind() != trace.SpanKindConsumer || a["messaging.system"].AsString() != "kafka" ||
			a["messaging.operation.type"].AsString() != "process" || a["messaging.destination.name"].AsString() != e.topic ||
			a["messaging.destination.partition.id"].AsString() != "0" || a["messaging.consumer.group.name"].AsString() != "traced" {
			t.Fatalf("span %q kind %v attributes %v", s.Name(), s.SpanKind(), a)
		}
	}
	if p := traced.Parent(); !p.IsRemote() || p.TraceID().String() != upstreamTrace || p.SpanID().String() != upstreamSpan {
		t.Fatalf("parent of the traced record's span = %v, want the traceparent's", p)
	}
	if root.Parent().IsValid() || root.SpanContext().TraceID().String() == upstreamTrace {
		t.Fatalf("the record without traceparent has parent %v", root.Parent())
	}
	mu.Lock()
	if !inHandler["traced"].Equal(traced.SpanContext()) || !inHandler["root"].Equal(root.SpanContext()) {
		t.Fatalf("handler ctx spans %v, want the process spans", inHandler)
	}
	mu.Unlock()
	// Dead-lettered, the failed record was handled: its span records
	// the error and the dead letter as events.
	var events []string
	for _, ev := range failed.Events() {
		events = append(events, ev.Name)
	}
	if !slices.Equal(events, []string{"exception", "dead-lettered"}) || failed.Status().Code == codes.Error {
		t.Fatalf("dead-lettered record's span events %v status %v", events, failed.Status())
	}
	if traced.Status().Code == codes.Error {
		t.Fatalf("handled record's span has status %v", traced.Status())
	}
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	// The records sent under the handler's ctx carry its span.
	for i, want := range []trace.SpanContext{traced.SpanContext(), root.SpanContext()} {
		if got := headers(readBack(t, e, "out", 0, int64(i)))["traceparent"]; got != traceparent(want) {
			t.Fatalf("out record %d traceparent %q, want %q", i, got, traceparent(want))
		}
	}
	// The dead letter carries the failed record's span, not the upstream
	// traceparent it copied.
	if got := headers(readBack(t, e, "dlq", 0, 0))["traceparent"]; got != traceparent(failed.SpanContext()) {
		t.Fatalf("dead letter traceparent %q, want %q", got, traceparent(failed.SpanContext()))
	}
}

// Every way of sending writes the current trace context into the record's
// headers, replacing a traceparent given with WithHeader and keeping the
// other headers; a ctx without a span adds nothing, and neither does an
// engine without Tracing.
func TestTracingSendsInjectTraceContext(t *testing.T) {
	e := newEnv(t, 1, 0)
	_, tp := newRecorder(t)
	eng := e.engine(kstream.Tracing(tp))
	plain := e.engine()
	for _, en := range []*kstream.Engine{eng, plain} {
		if err := en.Start(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	ctx, span := tp.Tracer("test").Start(e.ctx, "caller")
	defer span.End()
	want := traceparent(span.SpanContext())
	p := kstream.NewProducer(eng, e.topic, codec.String())

	async := func(send func(done func(kstream.RecordMetadata, error))) kstream.RecordMetadata {
		t.Helper()
		type res struct {
			md  kstream.RecordMetadata
			err error
		}
		ch := make(chan res, 1)
		send(func(md kstream.RecordMetadata, err error) { ch <- res{md, err} })
		r := <-ch
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.md
	}
	must := func(md kstream.RecordMetadata, err error) kstream.RecordMetadata {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return md
	}
	userHeaders := []kstream.SendOption{kstream.WithHeader("traceparent", []byte("bogus")), kstream.WithHeader("h", []byte("x"))}
	cases := []struct {
		name    string
		md      kstream.RecordMetadata
		want    string
		wantHdr bool
	}{
		{"Engine.Send", must(eng.Send(ctx, e.topic, []byte("a"), userHeaders...)), want, true},
		{"Engine.SendAsync", async(func(done func(kstream.RecordMetadata, error)) {
			eng.SendAsync(ctx, e.topic, []byte("b"), done, userHeaders...)
		}), want, true},
		{"Producer.Send", must(p.Send(ctx, nil, "c")), want, false},
		{"Producer.SendAsync", async(func(done func(kstream.RecordMetadata, error)) { p.SendAsync(ctx, nil, "d", done) }), want, false},
		{"no span", must(eng.Send(e.ctx, e.topic, []byte("e"))), "", false},
		{"no Tracing", must(plain.Send(ctx, e.topic, []byte("f"))), "", false},
	}
	msgHeaders := []kgo.RecordHeader{{Key: "traceparent", Value: []byte("bogus")}}
	mds, err := eng.SendBatch(ctx, e.topic, kstream.Message[[]byte]{Value: []byte("g"), Headers: msgHeaders})
	if err != nil {
		t.Fatal(err)
	}
	if string(msgHeaders[0].Value) != "bogus" {
		t.Fatalf("SendBatch wrote to the caller's headers: %q", msgHeaders[0].Value)
	}
	cases = append(cases, struct {
		name    string
		md      kstream.RecordMetadata
		want    string
		wantHdr bool
	}{"Engine.SendBatch", mds[0], want, false})
	for _, c := range cases {
		r := readBack(t, e, c.md.Topic, c.md.Partition, c.md.Offset)
		n := 0
		for _, h := range r.Headers {
			if h.Key == "traceparent" {
				n++
			}
		}
		h := headers(r)
		if h["traceparent"] != c.want || (c.want != "" && n != 1) {
			t.Errorf("%s: traceparent %q (%d of them), want %q", c.name, h["traceparent"], n, c.want)
		}
		if c.wantHdr && h["h"] != "x" {
			t.Errorf("%s: headers %v lost h", c.name, h)
		}
	}
}

// In a range over Records, each record's span is in rec.Raw.Context, a
// child of its traceparent, and ends when the body asks for the next
// record; in a range over Batches, a batch's span links to its records'
// trace contexts.
func TestTracingRanges(t *testing.T) {
	e := newEnv(t, 1, 0)
	for i := range 3 {
		if err := e.c.Produce(e.ctx, &kgo.Record{Topic: e.topic, Value: []byte{'a' + byte(i)}, Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(upstreamTP)}}}); err != nil {
			t.Fatal(err)
		}
	}
	sr, tp := newRecorder(t)
	name := "process " + e.topic

	s := e.stream(kstream.Tracing(tp))
	n := 0
	type key struct{}
	for rec, err := range s.Records(context.WithValue(e.ctx, key{}, "v")) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Raw.Context.Value(key{}) != "v" {
			t.Fatal("Raw.Context is not derived from the range's ctx")
		}
		sc := trace.SpanContextFromContext(rec.Raw.Context)
		if sc.TraceID().String() != upstreamTrace {
			t.Fatalf("record %d: Raw.Context span %v, not in the upstream trace", rec.Offset, sc)
		}
		if got := len(spansNamed(sr, name)); got != n {
			t.Fatalf("at record %d, %d spans ended, want %d", rec.Offset, got, n)
		}
		if n++; n == 3 {
			break
		}
	}
	spans := spansNamed(sr, name)
	if len(spans) != 3 {
		t.Fatalf("%d spans after the range, want 3", len(spans))
	}
	for _, sp := range spans {
		if sp.Parent().SpanID().String() != upstreamSpan {
			t.Fatalf("span parent %v, want the traceparent's", sp.Parent())
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	b := e.stream(kstream.Tracing(tp))
	outerCtx, outer := tp.Tracer("test").Start(e.ctx, "outer")
	defer outer.End()
	for batch, err := range b.Batches(outerCtx, 3, time.Second) {
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) != 3 {
			t.Fatalf("batch of %d", len(batch))
		}
		sc := trace.SpanContextFromContext(batch[2].Raw.Context)
		if !sc.IsValid() || !sc.Equal(trace.SpanContextFromContext(batch[0].Raw.Context)) {
			t.Fatalf("batch records' contexts %v, want one span", sc)
		}
		break
	}
	var batchSpan sdktrace.ReadOnlySpan
	for _, sp := range spansNamed(sr, name) {
		if attrs(sp)["messaging.batch.message_count"].AsInt64() == 3 {
			batchSpan = sp
		}
	}
	if batchSpan == nil {
		t.Fatal("no batch span")
	}
	if batchSpan.Parent().SpanID() != outer.SpanContext().SpanID() {
		t.Fatalf("batch span parent %v, want the range ctx's span", batchSpan.Parent())
	}
	if l := batchSpan.Links(); len(l) != 3 || l[0].SpanContext.SpanID().String() != upstreamSpan {
		t.Fatalf("batch span links %v, want the 3 records' traceparents", l)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// A HandleBatches stream with Tracing gives each batch one span, linked to
// its records' trace contexts and carried by the handler's ctx.
func TestTracingHandleBatches(t *testing.T) {
	e := newEnv(t, 1, 0)
	for i := range 2 {
		if err := e.c.Produce(e.ctx, &kgo.Record{Topic: e.topic, Value: []byte{'a' + byte(i)}, Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(upstreamTP)}}}); err != nil {
			t.Fatal(err)
		}
	}
	sr, tp := newRecorder(t)
	eng := e.engine(kstream.Tracing(tp))
	got := make(chan trace.SpanContext, 1)
	eng.Add(e.engineStream(e.topic, "tb").HandleBatches(2, 5*time.Second, func(ctx context.Context, recs []kstream.Record[string]) error {
		got <- trace.SpanContextFromContext(ctx)
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	sc := <-got
	eventually(t, 10*time.Second, "the batch span ended", func() bool { return len(spansNamed(sr, "process "+e.topic)) == 1 })
	sp := spansNamed(sr, "process "+e.topic)[0]
	if !sp.SpanContext().Equal(sc) || sp.Parent().IsValid() {
		t.Fatalf("batch span %v parent %v; handler ctx had %v", sp.SpanContext(), sp.Parent(), sc)
	}
	ids := []string{}
	for _, l := range sp.Links() {
		ids = append(ids, l.SpanContext.SpanID().String())
	}
	if !slices.Equal(ids, []string{upstreamSpan, upstreamSpan}) || attrs(sp)["messaging.batch.message_count"].AsInt64() != 2 {
		t.Fatalf("links %v attributes %v", ids, attrs(sp))
	}
}

// The span of a record whose handler fails (a crash) has the error status
// and error.type.
func TestTracingFailedHandlerSpan(t *testing.T) {
	e := newEnv(t, 1, 1)
	sr, tp := newRecorder(t)
	eng := e.engine(kstream.Tracing(tp))
	eng.Add(e.engineStream(e.topic, "tf").Handle(func(context.Context, kstream.Record[string]) error { return errBoom }))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "a span", func() bool { return len(spansNamed(sr, "process "+e.topic)) > 0 })
	sp := spansNamed(sr, "process "+e.topic)[0]
	if sp.Status().Code != codes.Error || sp.Status().Description != "boom" || attrs(sp)["error.type"].AsString() != "*errors.errorString" {
		t.Fatalf("status %v attributes %v", sp.Status(), attrs(sp))
	}
	if ev := sp.Events(); len(ev) != 1 || ev[0].Name != "exception" {
		t.Fatalf("events %v, want an exception", ev)
	}
}

// A record that fails to decode gets its process span too, a child of its
// traceparent, in which DeadLetter runs: the span notes the dead letter.
func TestTracingDecodeErrorSpan(t *testing.T) {
	e := newEnv(t, 1, 0)
	if err := e.c.CreateTopic(e.ctx, "dlq", 1); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Produce(e.ctx, &kgo.Record{Topic: e.topic, Value: []byte("not json"), Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(upstreamTP)}}}); err != nil {
		t.Fatal(err)
	}
	sr, tp := newRecorder(t)
	eng := e.engine(kstream.Tracing(tp))
	s, err := kstream.NewStream(codec.JSON[int](), kstream.Topics(e.topic), kstream.Group("td"), kstream.Name("td"))
	if err != nil {
		t.Fatal(err)
	}
	eng.Add(s.Handle(func(context.Context, kstream.Record[int]) error { return nil }, kstream.DeadLetter[int](eng, "dlq")))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "a span", func() bool { return len(spansNamed(sr, "process "+e.topic)) > 0 })
	sp := spansNamed(sr, "process "+e.topic)[0]
	var events []string
	for _, ev := range sp.Events() {
		events = append(events, ev.Name)
	}
	if sp.Parent().SpanID().String() != upstreamSpan || !slices.Equal(events, []string{"exception", "dead-lettered"}) {
		t.Fatalf("parent %v events %v", sp.Parent(), events)
	}
}

// With PartitionConcurrency, the handlers running on the lanes get their
// records' process spans as well.
func TestTracingWithConcurrency(t *testing.T) {
	e := newEnv(t, 2, 0)
	for p := range int32(2) {
		if err := e.c.Produce(e.ctx, &kgo.Record{Topic: e.topic, Partition: p, Value: []byte("x"), Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(upstreamTP)}}}); err != nil {
			t.Fatal(err)
		}
	}
	sr, tp := newRecorder(t)
	eng := e.engine(kstream.Tracing(tp))
	var mu sync.Mutex
	var inHandler []trace.SpanContext
	eng.Add(e.engineStream(e.topic, "tc", kstream.PartitionConcurrency(2)).Handle(func(ctx context.Context, _ kstream.Record[string]) error {
		mu.Lock()
		inHandler = append(inHandler, trace.SpanContextFromContext(ctx))
		mu.Unlock()
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "two spans", func() bool { return len(spansNamed(sr, "process "+e.topic)) == 2 })
	mu.Lock()
	defer mu.Unlock()
	for _, sp := range spansNamed(sr, "process "+e.topic) {
		if sp.Parent().SpanID().String() != upstreamSpan {
			t.Fatalf("span parent %v", sp.Parent())
		}
		if !slices.ContainsFunc(inHandler, sp.SpanContext().Equal) {
			t.Fatalf("span %v not in any handler's ctx (%v)", sp.SpanContext(), inHandler)
		}
	}
}

func TestTracingNilProvider(t *testing.T) {
	if _, err := kstream.NewEngine(kstream.Tracing(nil)); !errors.Is(err, kstream.ErrInvalidOption) {
		t.Fatalf("NewEngine(Tracing(nil)) = %v, want ErrInvalidOption", err)
	}
	if _, err := kstream.NewStream(codec.String(), kstream.Topics("x"), kstream.Tracing(nil)); !errors.Is(err, kstream.ErrInvalidOption) {
		t.Fatalf("NewStream(Tracing(nil)) = %v, want ErrInvalidOption", err)
	}
}
