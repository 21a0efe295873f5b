package kstream

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Retry calls the handlers after it again when they fail, up to attempts
// calls in all, waiting backoff before the first retry and twice as long
// before each next one (at most a minute). It gives up early when ctx is
// done, and does not retry a record that failed to decode (a *DecodeError
// will fail the same way again), nor a Release or Reject of a share group
// record, which are decisions, not failures. The last error is returned. In
// HandleBatches it calls the batch handler again with the same batch.
func Retry[T any](attempts int, backoff time.Duration) Middleware[T] {
	if attempts < 1 {
		attempts = 1
	}
	return func(next Handler[T]) Handler[T] {
		return func(ctx context.Context, rec Record[T]) error {
			wait := backoff
			var err error
			for i := 0; i < attempts; i++ {
				if i > 0 {
					t := time.NewTimer(wait)
					select {
					case <-ctx.Done():
						t.Stop()
						return errors.Join(err, ctx.Err())
					case <-t.C:
					}
					wait = min(2*wait, time.Minute)
				}
				if err = next(ctx, rec); err == nil {
					return nil
				}
				if notRetried(err) || isAckDecision(err) {
					return err
				}
			}
			return fmt.Errorf("kstream: gave up after %d attempts: %w", attempts, err)
		}
	}
}

// notRetried reports whether Retry gives err back at once: a record that
// failed to decode fails the same way again, and an emitted record that
// failed has its source delivered again by the stream.
func notRetried(err error) bool {
	var de *DecodeError
	var ee *EmitError
	return errors.As(err, &de) || errors.As(err, &ee)
}

// Recover is a Middleware: it turns a panic in the handlers after it into a
// *PanicError returned to the middleware before it, so that, placed after
// DeadLetter, a panicking record goes to the dead-letter topic instead of
// crashing the stream. Without it a panic is a crash of the stream, never of
// the process. In HandleBatches it recovers a panic of the batch handler.
// Give it to Handle or HandleBatches as it is; the stream's record type is
// inferred:
//
//	s.Handle(h, kstream.DeadLetter[Order](eng, "orders-dlq"), kstream.Recover)
func Recover[T any](next Handler[T]) Handler[T] {
	return func(ctx context.Context, rec Record[T]) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = &PanicError{Value: p, Stack: debug.Stack()}
			}
		}()
		return next(ctx, rec)
	}
}

// Headers DeadLetter sets on the records it produces. They are the names
// Kafka Connect uses for its dead-letter queues, so existing tooling reads
// them.
const (
	HeaderDLQTopic        = "__connect.errors.topic"
	HeaderDLQPartition    = "__connect.errors.partition"
	HeaderDLQOffset       = "__connect.errors.offset"
	HeaderDLQErrorMessage = "__connect.errors.exception.message"
	HeaderDLQErrorClass   = "__connect.errors.exception.class.name"
)

// DeadLetter writes a record that the handlers after it failed to handle, or
// that failed to decode, to topic, and reports the record as handled so
// that the stream goes on. It writes with Emit (pipelined: the record
// counts as processed, and is committed, only once its dead-letter is
// acknowledged; under ExactlyOnce, in the stream's transaction); outside
// the handling of a record it sends through eng. An *EmitError is passed
// on as it is: its source record is delivered again anyway. The dead-letter record has the
// original key, value (the raw bytes) and headers, plus headers naming the
// source topic, partition and offset and the error. If sending fails, the
// original error and the send's are returned together, so the record is not
// lost: the stream crashes instead. Put Retry after it to retry before
// giving up on a record. A Release or Reject of a share group record passes
// through: it is what the handler decided for the record, not a failure.
//
// In HandleBatches, a batch the handlers after it failed is dead-lettered
// whole: each of its records, in order, with the batch's error (a batch
// handler that can tell which record failed and wants the others handled
// handles them itself). A record that failed to decode is a batch of its
// own there, so it alone is dead-lettered.
func DeadLetter[T any](eng *Engine, topic string) Middleware[T] {
	return func(next Handler[T]) Handler[T] {
		return func(ctx context.Context, rec Record[T]) error {
			err := next(ctx, rec)
			if err == nil || isAckDecision(err) {
				return err // Release and Reject are decisions, not failures
			}
			var ee *EmitError
			if errors.As(err, &ee) {
				return err // its source record is delivered again anyway
			}
			noteDeadLetter(ctx, topic, err)
			if batch := rec.Batch(); batch != nil {
				for _, r := range batch {
					if serr := deadLetter(ctx, eng, topic, r, err); serr != nil {
						return errors.Join(err, serr)
					}
				}
				return nil
			}
			if serr := deadLetter(ctx, eng, topic, rec, err); serr != nil {
				return errors.Join(err, serr)
			}
			return nil
		}
	}
}

// noteDeadLetter records err and the dead letter as events of the span in
// ctx (Tracing's process span), if it records.
func noteDeadLetter(ctx context.Context, topic string, err error) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.RecordError(err)
	span.AddEvent("dead-lettered", trace.WithAttributes(attribute.String("messaging.destination.name", topic)))
}

// deadLetter sends rec, which failed with err, to topic.
func deadLetter[T any](ctx context.Context, eng *Engine, topic string, rec Record[T], err error) error {
	var value []byte
	if rec.Raw != nil {
		value = rec.Raw.Value
	}
	opts := []SendOption{WithKey(rec.Key)}
	for _, h := range rec.Headers {
		opts = append(opts, WithHeader(h.Key, h.Value))
	}
	opts = append(opts,
		WithHeader(HeaderDLQTopic, []byte(rec.Topic)),
		WithHeader(HeaderDLQPartition, []byte(strconv.Itoa(int(rec.Partition)))),
		WithHeader(HeaderDLQOffset, []byte(strconv.FormatInt(rec.Offset, 10))),
		WithHeader(HeaderDLQErrorMessage, []byte(err.Error())),
		WithHeader(HeaderDLQErrorClass, []byte(errorClass(err))),
	)
	var serr error
	if src := sourceFrom(ctx); src != nil {
		serr = src.ss.emit(ctx, src.recs, topic, value, opts)
	} else {
		_, serr = eng.Send(ctx, topic, value, opts...)
	}
	if serr != nil {
		return fmt.Errorf("kstream: dead-letter to %q: %w", topic, serr)
	}
	return nil
}

// Timeout gives each call of the handlers after it a deadline d from the
// call's start: their ctx is done, with context.DeadlineExceeded, once d
// has passed. In HandleBatches each call handles a batch. It cannot stop a
// handler that does not watch its ctx; a handler that returns the ctx's
// error fails as any error does (Retry after Timeout retries it, each
// attempt with a deadline of its own; before Retry, d bounds all the
// attempts together). The ctx is canceled when the call returns, as an
// HTTP handler's is: a record sent under it with SendAsync and not yet
// acknowledged then fails with context.Canceled, so give SendAsync
// context.WithoutCancel(ctx), or use Send. d must be positive: Timeout
// panics otherwise, as time.NewTicker does.
func Timeout[T any](d time.Duration) Middleware[T] {
	if d <= 0 {
		panic(fmt.Sprintf("kstream: Timeout: d must be positive, got %v", d))
	}
	return func(next Handler[T]) Handler[T] {
		return func(ctx context.Context, rec Record[T]) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next(ctx, rec)
		}
	}
}

// errorClass names the innermost error's type, the Go counterpart of the
// Java exception class Connect records.
func errorClass(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return reflect.TypeOf(err).String()
		}
		err = next
	}
}
