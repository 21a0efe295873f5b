// Tracing: OpenTelemetry spans for the records a stream handles, and the
// trace context carried in the headers of the records an engine sends.

package kstream

import (
	"context"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of kstream's spans.
const tracerName = "github.com/gokstreams/kstreams/kstream"

// Tracing traces the records a stream handles and propagates trace context
// through the records an engine sends, with OpenTelemetry and the W3C trace
// context (the traceparent and tracestate headers), following OpenTelemetry's
// semantic conventions for messaging:
//
//   - Each record a Handle function handles gets a span named "process
//     <topic>", of kind consumer, whose parent is the trace context in the
//     record's headers (without one, the span starts a new trace). The
//     handler's ctx carries the span, and the middleware runs inside it,
//     so a record DeadLetter sends carries the span's context. A record
//     that fails to decode gets its span too. An error the handler chain
//     returns sets the span's status to Error and its error.type.
//   - Each batch a HandleBatches function handles gets one "process" span
//     linked to the trace context of each of its records (the conventions'
//     form for a batch), carried by the handler's ctx.
//   - In a range over Records, each record yielded gets a span, started
//     when it is yielded and ended when the body returns to the iterator
//     for the next one (or the loop ends). rec.Raw.Context carries it,
//     derived from the ctx given to Records: use it as the body's context.
//     A range over Batches does the same for each batch, with one span per
//     batch set in the Raw.Context of each of its records.
//   - Send, SendAsync and SendBatch (of the engine and of a Producer)
//     write the trace context of their ctx into the headers of the records
//     they send, replacing any traceparent and tracestate headers given
//     with WithHeader. A ctx without a span adds nothing.
//
// The spans' attributes are messaging.system ("kafka"),
// messaging.operation.type and messaging.operation.name ("process"),
// messaging.destination.name (the topic), messaging.destination.partition.id,
// messaging.kafka.offset, messaging.consumer.group.name (with a Group), and
// messaging.batch.message_count for a batch. Keys and values are not
// recorded.
//
// It is an option of both: given to an engine, it is used by its producer
// and inherited by its streams. Without it, no span is started and no
// header is written. A nil tp is an error wrapping ErrInvalidOption: use
// otel.GetTracerProvider() for the global provider.
func Tracing(tp trace.TracerProvider) Option {
	return option{name: "Tracing", scope: forBoth, fn: func(c *config) error {
		if tp == nil {
			return fmt.Errorf("%w: Tracing: nil TracerProvider (use otel.GetTracerProvider() for the global one)", ErrInvalidOption)
		}
		c.tracing = &tracing{tracer: tp.Tracer(tracerName, trace.WithSchemaURL(semconv.SchemaURL))}
		return nil
	}}
}

// tracing is the Tracing option's tracer. A nil *tracing traces nothing.
type tracing struct {
	tracer trace.Tracer
}

// tracingOf returns the stream's tracing: its own, else its engine's (read
// under s.mu, as policy does), else nil.
// tracingOf returns the tracing of a session: the stream's own, else its
// engine's.
func (c *config) tracingOf(in inherited) *tracing {
	if c.tracing != nil {
		return c.tracing
	}
	return in.tracing
}

func (s *Stream[T]) tracingOf() *tracing {
	if s.cfg.tracing != nil {
		return s.cfg.tracing
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inherited.tracing
}

// traceContext is the W3C trace context propagator, which the headers of
// records carry (traceparent, tracestate).
var traceContext propagation.TraceContext

// injectTrace writes the trace context of ctx into r's headers, replacing
// any traceparent and tracestate r had. It does nothing when t is nil or
// ctx carries no valid span context. Every path that writes a record for a
// user (Send, SendAsync, SendBatch; Stream.Emit too) calls it before
// producing r.
func (t *tracing) injectTrace(ctx context.Context, r *kgo.Record) {
	if t == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	traceContext.Inject(ctx, headerCarrier{&r.Headers})
}

// startProcess starts the process span of one record, a child of the
// trace context in its headers, else of ctx's span.
func (t *tracing) startProcess(ctx context.Context, group, topic string, partition int32, offset int64, headers []Header) (context.Context, trace.Span) {
	ctx = traceContext.Extract(ctx, headerCarrier{&headers})
	attrs := make([]attribute.KeyValue, 0, 7)
	attrs = append(attrs,
		semconv.MessagingSystemKafka,
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(topic),
		semconv.MessagingDestinationPartitionID(strconv.Itoa(int(partition))),
		semconv.MessagingKafkaOffset(int(offset)),
	)
	if group != "" {
		attrs = append(attrs, semconv.MessagingConsumerGroupName(group))
	}
	return t.tracer.Start(ctx, "process "+topic, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
}

// startBatch starts the process span of a batch, linked to the trace
// context in the headers of each of its records.
func startBatch[T any](t *tracing, ctx context.Context, group string, recs []Record[T]) (context.Context, trace.Span) {
	var links []trace.Link
	topic := ""
	for i := range recs {
		if sc := trace.SpanContextFromContext(traceContext.Extract(context.Background(), headerCarrier{&recs[i].Headers})); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
		switch {
		case i == 0:
			topic = recs[i].Topic
		case recs[i].Topic != topic:
			topic = ""
		}
	}
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKafka,
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingBatchMessageCount(len(recs)),
	}
	name := "process"
	if topic != "" {
		name += " " + topic
		attrs = append(attrs, semconv.MessagingDestinationName(topic))
	}
	if group != "" {
		attrs = append(attrs, semconv.MessagingConsumerGroupName(group))
	}
	return t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...), trace.WithLinks(links...))
}

// endSpan ends span, with err's status if err is not nil.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(semconv.ErrorTypeKey.String(errorClass(err)))
	}
	span.End()
}

// traced returns h, run in a process span per record when t is not nil.
func traced[T any](t *tracing, group string, h Handler[T]) Handler[T] {
	if t == nil {
		return h
	}
	return func(ctx context.Context, rec Record[T]) (err error) {
		ctx, span := t.startProcess(ctx, group, rec.Topic, rec.Partition, rec.Offset, rec.Headers)
		defer func() {
			if p := recover(); p != nil {
				endSpan(span, &PanicError{Value: p})
				panic(p)
			}
			endSpan(span, err)
		}()
		return h(ctx, rec)
	}
}

// tracedBatch returns h, run in a process span per batch when t is not nil.
func tracedBatch[T any](t *tracing, group string, h BatchHandler[T]) BatchHandler[T] {
	if t == nil {
		return h
	}
	return func(ctx context.Context, recs []Record[T]) (err error) {
		ctx, span := startBatch(t, ctx, group, recs)
		defer func() {
			if p := recover(); p != nil {
				endSpan(span, &PanicError{Value: p})
				panic(p)
			}
			endSpan(span, err)
		}()
		return h(ctx, recs)
	}
}

// rangeSpan is the span of the record (or batch) a range over Records (or
// Batches) has yielded, ended when the body asks for the next one.
type rangeSpan struct {
	span trace.Span
}

// start starts the process span of rec and sets it in rec.Raw.Context,
// derived from ctx.
func (rs *rangeSpan) start(t *tracing, ctx context.Context, group string, r *kgo.Record) {
	var span trace.Span
	r.Context, span = t.startProcess(ctx, group, r.Topic, r.Partition, r.Offset, r.Headers)
	rs.span = span
}

// rangeBatchStart starts the process span of recs and sets it in the
// Raw.Context of each of them.
func rangeBatchStart[T any](rs *rangeSpan, t *tracing, ctx context.Context, group string, recs []Record[T]) {
	ctx, rs.span = startBatch(t, ctx, group, recs)
	for i := range recs {
		if recs[i].Raw != nil {
			recs[i].Raw.Context = ctx
		}
	}
}

// end ends the span started last, if any.
func (rs *rangeSpan) end() {
	if rs.span != nil {
		rs.span.End()
		rs.span = nil
	}
}

// headerCarrier reads and writes trace context in record headers. Set
// builds a new slice, so that a caller's headers (WithHeader's, a
// Message's) are never written to.
type headerCarrier struct {
	h *[]Header
}

func (c headerCarrier) Get(key string) string {
	for _, h := range *c.h {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func (c headerCarrier) Set(key, value string) {
	old := *c.h
	hs := make([]Header, 0, len(old)+1)
	for _, h := range old {
		if h.Key != key {
			hs = append(hs, h)
		}
	}
	*c.h = append(hs, Header{Key: key, Value: []byte(value)})
}

func (c headerCarrier) Keys() []string {
	keys := make([]string, len(*c.h))
	for i, h := range *c.h {
		keys[i] = h.Key
	}
	return keys
}
