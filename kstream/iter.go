package kstream

import (
	"context"
	"fmt"
	"iter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Records returns an iterator over the stream's records, in offset order
// within each partition. Each step yields either a record and a nil error, or
// an error:
//
//   - *DecodeError: the record's value could not be decoded. The Record
//     carries its metadata, key, headers and Raw, with a zero Value. A
//     decoder error wrapping codec.ErrUnavailable is never yielded: the
//     record is kept and decoded again after a backoff (see codec.ErrUnavailable).
//   - *FetchError: fetching failed. If Fatal, it is the last record-level
//     value (a range that opened its stream may still yield its final
//     commit's error after it, below).
//   - ErrClosed, ErrConcurrentRange, the error of opening the stream, or
//     ErrInvalidOption for a stream with PartitionConcurrency or
//     KeyConcurrency (they apply to Handle functions run by an engine):
//     yielded once, as the only value.
//   - the error of the final commit of a stream that the range opened
//     itself (below): yielded last, with a zero Record.
//
// If the loop body continues after an error, the stream goes on and the bad
// record counts as handled. The iterator ends without an error when ctx is
// done or the stream is closed, at the next record boundary.
//
// Commits follow loop control. A record is processed when the body returns
// to the iterator for the next one (continue, or the end of the body); in
// the default mode processed records are committed automatically. break,
// return, goto and panic leave the record in hand unprocessed, and an
// unprocessed record is never skipped: within one member a record is yielded
// again exactly when no body finished with it; across members, whatever was
// not committed is delivered again to the partition's next owner.
//
// So the iterator may be ranged again: a new range yields the record a
// previous range broke on (or returned or panicked on) again first, then the
// rest, with nothing polled lost. Until then that record counts as not
// yielded: Commit does not cover it. A range over a stream that was never
// opened opens it and closes it at the end of the loop, so each such loop is
// a whole session: records it left unprocessed are delivered again by the
// next one. If that close fails to commit what the loop processed, the error
// is the last value yielded when the loop ended without break (ctx done,
// stream closed, or a fatal error yielded and the body going on); after a
// break, return or panic the loop body cannot be called again, and the error
// is logged. Open the stream first (or use Use) to get the error from Close
// whatever ends the loop.
//
// Records of a partition revoked from, or lost by, this member are never
// yielded after the revoke.
//
// With Tracing, each record yielded has a process span, in rec.Raw.Context
// (derived from ctx), that ends when the body asks for the next record.
//
// On a share group stream (ShareGroup) acknowledgements follow loop control
// the same way: a record the body finished with is accepted, and the record
// in hand at a break, return or panic is yielded again first by the next
// range; see ShareGroup and Stream.Ack.
func (s *Stream[T]) Records(ctx context.Context) iter.Seq2[Record[T], error] {
	return s.records(ctx, true)
}

// records is Records; traceRange says whether a span is started for each
// record yielded (Tracing): not for an engine's Handle function, which has
// its own.
func (s *Stream[T]) records(ctx context.Context, traceRange bool) iter.Seq2[Record[T], error] {
	return func(yield func(Record[T], error) bool) {
		if err := s.rangeOptionErr(); err != nil {
			yield(Record[T]{}, err)
			return
		}
		// The loop is called directly, not through a wrapped yield: one
		// function call less per record.
		loop := func(ctx context.Context) bool { return s.recordsLoop(ctx, traceRange, yield) }
		if !unopenedRange(ctx, s, loop, yield) {
			s.recordsLoop(ctx, traceRange, yield)
		}
	}
}

// recordsLoop is the loop of a range over Records; it reports whether a call
// of yield returned false.
func (s *Stream[T]) recordsLoop(ctx context.Context, traceRange bool, yield func(Record[T], error) bool) (broke bool) {
	ss, release, err := s.beginRange(ctx)
	if err != nil {
		return !yield(Record[T]{}, err)
	}
	defer release()
	defer s.useDecodeCtx(ctx, ss)()
	done := ctx.Done()
	var prev *kgo.Record
	var rec Record[T]
	var retry decodeRetry
	var tr *tracing
	var span rangeSpan
	if traceRange {
		tr = s.tracingOf()
		defer span.end()
	}
	// run holds the records taken at once after the last one step
	// took, stepped through without the lock (run.go); next is the
	// index of the next one.
	var run []*kgo.Record
	var head *kgo.Record // run[0]
	next := 0
	for {
		r := ss.runStep(run, next, head, done)
		if r != nil {
			next++
		} else {
			var fe error
			var st popStatus
			r, fe, st, run = ss.step(ctx, done, prev)
			head, next = r, 1
			prev = nil
			if st != popRecord {
				return false
			}
			if fe != nil {
				if !yield(errRecord[T](fe), fe) {
					return true
				}
				if isFatal(fe) {
					return false
				}
				continue
			}
		}
		derr := s.decodeInto(&rec, r)
		if derr != nil {
			if unavailable(derr) {
				// retry ends the run and gives r back.
				run, prev = nil, nil
				if !retry.retry(ctx, ss, []*kgo.Record{r}, derr) {
					return false
				}
				continue
			}
			ss.noteDecodeError(r.Topic)
		}
		retry.ok(ss)
		if tr != nil {
			span.start(tr, ctx, s.cfg.group, r)
		}
		if !yield(rec, derr) {
			return true
		}
		span.end()
		prev = r
	}
}

// Batches returns an iterator over batches of up to max records, the Go form
// of kstreams' getmany. A batch is yielded when it holds max records, or when
// wait has passed since its first record arrived, whichever comes first; an
// empty batch is never yielded. A batch is also cut short when a rebalance is
// waiting, so that rebalances are never held up by more than wait.
//
// Errors are yielded as by Records, each on its own with a nil batch, except a
// *DecodeError, which is yielded with a batch holding just the bad record; the
// good records before it come first, in their own batch. Commits follow loop
// control as with Records, for the whole batch at once: a batch is processed
// when the body returns to the iterator for the next one, and the records of
// a batch broken on are yielded again first by the next range. Each batch is
// a new slice that the body may keep. A range over a stream that was never
// opened opens and closes it as with Records, yielding the error of its final
// commit last, with a nil batch. With Tracing, each batch yielded has one
// process span, linked to its records' trace contexts and set in the
// Raw.Context of each of them, that ends at the next step.
func (s *Stream[T]) Batches(ctx context.Context, max int, wait time.Duration) iter.Seq2[[]Record[T], error] {
	return s.batches(ctx, max, wait, true)
}

// batches is Batches; traceRange is records'.
func (s *Stream[T]) batches(ctx context.Context, max int, wait time.Duration, traceRange bool) iter.Seq2[[]Record[T], error] {
	return func(yield func([]Record[T], error) bool) {
		if err := s.rangeOptionErr(); err != nil {
			yield(nil, err)
			return
		}
		loop := func(ctx context.Context) (broke bool) {
			for v, err := range s.batches(ctx, max, wait, traceRange) {
				if !yield(v, err) {
					return true
				}
			}
			return false
		}
		if unopenedRange(ctx, s, loop, yield) {
			return
		}
		if max <= 0 {
			yield(nil, fmt.Errorf("%w: Batches: max must be positive, got %d", ErrInvalidOption, max))
			return
		}
		if wait < 0 {
			yield(nil, fmt.Errorf("%w: Batches: wait must not be negative, got %v", ErrInvalidOption, wait))
			return
		}
		ss, release, err := s.beginRange(ctx)
		if err != nil {
			yield(nil, err)
			return
		}
		defer release()
		defer s.useDecodeCtx(ctx, ss)()
		done := ctx.Done()
		raws := make([]*kgo.Record, 0, min(max, ss.cfg.maxPoll))
		var retry decodeRetry
		var tr *tracing
		var span rangeSpan
		if traceRange {
			tr = s.tracingOf()
			defer span.end()
		}

		// emit yields raws as one batch and marks it processed if the
		// body asks for more.
		emit := func(raws []*kgo.Record, recs []Record[T], err error) bool {
			n := ss.yielding(raws)
			if n < len(raws) {
				recs = keepOwned(recs, raws[:n])
			}
			if len(recs) == 0 {
				return true
			}
			if tr != nil {
				rangeBatchStart(&span, tr, ctx, s.cfg.group, recs)
			}
			if !yield(recs, err) {
				return false
			}
			span.end()
			ss.processed(raws[:n])
			return true
		}

		for {
			raws = raws[:0]
			var fe error
			var deadline time.Time
			end := false
			ss.lockFold()
			for len(raws) < max {
				r, ferr, st := ss.popLocked(ctx, done, deadline, len(raws) == 0)
				if st == popEnd {
					end = true
					break
				}
				if st != popRecord {
					break
				}
				if ferr != nil {
					fe = ferr
					break
				}
				raws = append(raws, r)
				if deadline.IsZero() {
					deadline = time.Now().Add(wait)
				}
			}
			if end {
				ss.unpopLocked(raws)
			}
			ss.mu.Unlock()
			if end {
				return
			}

			recs := make([]Record[T], 0, len(raws))
			start := 0
			var again []*kgo.Record // from an unavailable decoder on
			var againErr error
			for i, r := range raws {
				rec, derr := s.decode(r)
				if derr == nil {
					recs = append(recs, rec)
					continue
				}
				if unavailable(derr) {
					again, againErr = raws[i:], derr
					raws = raws[:i]
					break
				}
				ss.noteDecodeError(r.Topic)
				if !emit(raws[start:i], recs, nil) {
					return
				}
				if !emit(raws[i:i+1], []Record[T]{rec}, derr) {
					return
				}
				start = i + 1
				recs = make([]Record[T], 0, len(raws)-start)
			}
			if start < len(raws) && !emit(raws[start:], recs, nil) {
				return
			}
			if again != nil {
				if fe != nil && !isFatal(fe) { // a fatal one stays in ss.fatal
					ss.lockFold()
					ss.errs = append([]error{fe}, ss.errs...)
					ss.mu.Unlock()
				}
				if !retry.retry(ctx, ss, again, againErr) {
					return
				}
				continue
			}
			retry.ok(ss)
			if fe != nil {
				if !yield(nil, fe) || isFatal(fe) {
					return
				}
			}
		}
	}
}

// keepOwned returns the records of recs whose raw record is in kept, which
// is in the same order.
func keepOwned[T any](recs []Record[T], kept []*kgo.Record) []Record[T] {
	out := recs[:0]
	j := 0
	for _, rec := range recs {
		if j < len(kept) && rec.Raw == kept[j] {
			out = append(out, rec)
			j++
		}
	}
	return out
}
