// Middleware on batches: HandleBatches runs its batch handler through the
// same Middleware[T] chain as Handle, with a record that stands for the
// batch.

package kstream

import (
	"context"
	"errors"
)

// Batch returns the batch a middleware is called for by a HandleBatches
// stream, nil otherwise (in Handle, in a range). There, a middleware is
// called once per batch, with the batch's first record, which carries the
// whole batch: Batch returns it. A middleware that acts on each record
// (DeadLetter does) ranges over r.Batch() when it is not nil.
func (r Record[T]) Batch() []Record[T] {
	if r.batch == nil {
		return nil
	}
	return *r.batch
}

// batchRecord returns the record that stands for batch in a middleware
// chain: its first record, carrying the batch.
func batchRecord[T any](batch []Record[T]) Record[T] {
	rec := batch[0]
	rec.batch = &batch
	return rec
}

// batchChain returns h with mw applied, as a BatchHandler.
func batchChain[T any](h BatchHandler[T], mw []Middleware[T]) BatchHandler[T] {
	if len(mw) == 0 {
		return h
	}
	inner := func(ctx context.Context, rec Record[T]) error {
		if rec.batch != nil {
			return h(ctx, *rec.batch)
		}
		// A middleware made a record of its own.
		return h(ctx, []Record[T]{rec})
	}
	chained := chain(inner, mw)
	return func(ctx context.Context, recs []Record[T]) error {
		return chained(ctx, batchRecord(recs))
	}
}

// runBatches runs a HandleBatches function: each batch through the
// middleware (and a process span, with Tracing), and a record that failed to
// decode, which Batches yields as a batch of its own, through the
// middleware with its *DecodeError in place of the handler, as Handle does.
func (s *Stream[T]) runBatches(handlerCtx context.Context, ss *session, fn *streamFunc[T]) error {
	tr, group := s.tracingOf(), s.cfg.group
	handle := tracedBatch(tr, group, batchChain(fn.batch, fn.middleware))
	for batch, err := range s.batches(handlerCtx, fn.batchMax, fn.batchWait, false) {
		if err != nil {
			var de *DecodeError
			switch {
			case errors.As(err, &de) && len(batch) > 0:
				failed := func(context.Context, []Record[T]) error { return de }
				if herr := tracedBatch(tr, group, batchChain(failed, fn.middleware))(handlerCtx, batch); herr != nil {
					// A share stream acknowledges the batch (share.go).
					if herr = s.shareOutcome(ss, herr, rawsOf(batch)...); herr == nil {
						continue
					}
					return herr
				}
			case isNonFatalFetch(err):
			default:
				return err
			}
			continue
		}
		if err := handle(handlerCtx, batch); err != nil {
			// A share stream acknowledges the batch (share.go).
			if err = s.shareOutcome(ss, err, rawsOf(batch)...); err == nil {
				continue
			}
			return err
		}
	}
	return nil
}
