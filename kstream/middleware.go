package kstream

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"strconv"
	"time"
)

// Retry calls the handlers after it again when they fail, up to attempts
// calls in all, waiting backoff before the first retry and twice as long
// before each next one (at most a minute). It gives up early when ctx is
// done, and does not retry a record that failed to decode (a *DecodeError
// will fail the same way again), nor a Release or Reject of a share group
// record, which are decisions, not failures. The last error is returned.
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
				var de *DecodeError
				if errors.As(err, &de) || isAckDecision(err) {
					return err
				}
			}
			return fmt.Errorf("kstream: gave up after %d attempts: %w", attempts, err)
		}
	}
}

// Recover is a Middleware: it turns a panic in the handlers after it into a
// *PanicError returned to the middleware before it, so that, placed after
// DeadLetter, a panicking record goes to the dead-letter topic instead of
// crashing the stream. Without it a panic is a crash of the stream, never of
// the process. Give it to Handle as it is; the stream's record type is
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

// DeadLetter sends a record that the handlers after it failed to handle, or
// that failed to decode, to topic through eng, and reports the record as
// handled so that the stream goes on. The dead-letter record has the
// original key, value (the raw bytes) and headers, plus headers naming the
// source topic, partition and offset and the error. If sending fails, the
// original error and the send's are returned together, so the record is not
// lost: the stream crashes instead. Put Retry after it to retry before
// giving up on a record. A Release or Reject of a share group record passes
// through: it is what the handler decided for the record, not a failure.
func DeadLetter[T any](eng *Engine, topic string) Middleware[T] {
	return func(next Handler[T]) Handler[T] {
		return func(ctx context.Context, rec Record[T]) error {
			err := next(ctx, rec)
			if err == nil || isAckDecision(err) {
				return err // Release and Reject are decisions, not failures
			}
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
			if _, serr := eng.Send(ctx, topic, value, opts...); serr != nil {
				return errors.Join(err, fmt.Errorf("kstream: dead-letter to %q: %w", topic, serr))
			}
			return nil
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
