package kstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime/debug"
	"time"
)

// Handler handles one record of a stream run by an engine (Handle). Returning
// nil marks the record processed; returning an error leaves it unprocessed
// and is a crash of the stream, handled by its ErrorPolicy. On a share group
// stream (ShareGroup), nil accepts the record, Release(err) and Reject(err)
// release or reject it and the stream goes on, and any other error releases
// it, then is a crash.
//
// ctx is canceled when the deadline of a graceful stop (Stop, Remove or
// Run's) has passed; until then it stays live, so that the record in hand
// can finish. Otherwise it stays live until Stop has flushed the producer
// (or Remove has stopped the stream), so that records the handler sent with
// SendAsync under ctx are written rather than failed with ctx's error. A handler may call its engine's Stop or Remove, with ctx:
// they do not wait for the handler's own stream (see Engine.Stop).
type Handler[T any] func(ctx context.Context, rec Record[T]) error

// BatchHandler handles a batch of records (HandleBatches), the Go form of
// kstreams' getmany. Returning nil marks the whole batch processed.
type BatchHandler[T any] func(ctx context.Context, recs []Record[T]) error

// Middleware wraps a Handler with behaviour of its own: retries, a
// dead-letter queue, recovery, a deadline, logging. Middlewares given to
// Handle or HandleBatches apply in the order given: the first is the
// outermost. In HandleBatches a middleware is called once per batch, with
// a record standing for the batch (see Record.Batch).
type Middleware[T any] func(next Handler[T]) Handler[T]

// streamFunc is what an engine runs for a stream.
type streamFunc[T any] struct {
	handler    Handler[T]      // Handle, with its middleware applied
	middleware []Middleware[T] // for records that fail to decode
	batch      BatchHandler[T]
	batchMax   int
	batchWait  time.Duration
	whole      func(ctx context.Context, s *Stream[T]) error
}

// Handle sets the function an engine runs for each record, with optional
// middleware, and returns s. A record that fails to decode goes through the
// middleware with an error in place of the handler: a middleware may handle
// it (DeadLetter does); if none does, it is a crash. Setting a function
// replaces any set before.
func (s *Stream[T]) Handle(h Handler[T], mw ...Middleware[T]) *Stream[T] {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fn = nil
	if h != nil {
		s.fn = &streamFunc[T]{handler: chain(h, mw), middleware: mw}
	}
	return s
}

// HandleBatches sets the function an engine runs for each batch of up to max
// records, yielded as by Batches(ctx, max, wait), with optional middleware,
// and returns s. The middleware are those of Handle, called once per batch
// with the batch's first record, which carries the whole batch
// (Record.Batch): Recover turns a panic of the batch handler into a
// *PanicError, Retry calls it again with the same batch, Timeout gives each
// call a deadline, and DeadLetter dead-letters every record of a batch the
// handler failed. A record that fails to decode is a batch of its own (the
// good records before it come first, in their own batch), which goes
// through the middleware with its *DecodeError in place of the handler, as
// in Handle: DeadLetter dead-letters it and the stream goes on with the
// next batch; if no middleware handles it, it is a crash. Setting a
// function replaces any set before. max must be positive and wait not
// negative: Engine.Add rejects the stream otherwise, with an error wrapping
// ErrInvalidOption.
func (s *Stream[T]) HandleBatches(max int, wait time.Duration, h BatchHandler[T], mw ...Middleware[T]) *Stream[T] {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fn = nil
	if h != nil {
		s.fn = &streamFunc[T]{batch: h, batchMax: max, batchWait: wait, middleware: mw}
	}
	return s
}

// Func sets a function an engine runs once with the stream itself, as
// kstreams runs a stream's coroutine, and returns s. The function ranges over
// s.Records(ctx) (or Batches) itself. Returning an error, or panicking, is a
// crash; returning nil stops the stream. Setting a function replaces any set
// before.
//
// When the engine stops the stream (Stop, Remove, or a crash that stops the
// engine), the stream stops fetching, a range of it ends quietly at its next
// record boundary, and ctx is canceled: at once if no range of the stream
// runs, else when the range ends, so that the record in hand finishes with
// a live ctx. So a function that waits on something other than its range (a
// timer, a channel, a range run on another goroutine) learns of the stop
// from ctx. Work after the range that must still be done on a stop (a last
// flush) needs a context of its own, such as context.WithoutCancel(ctx)
// bounded by a timeout. If the function has not returned by the stop's
// deadline, ctx is canceled then in any case.
func (s *Stream[T]) Func(fn func(ctx context.Context, s *Stream[T]) error) *Stream[T] {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fn = nil
	if fn != nil {
		s.fn = &streamFunc[T]{whole: fn}
	}
	return s
}

func chain[T any](h Handler[T], mw []Middleware[T]) Handler[T] {
	for i := len(mw) - 1; i >= 0; i-- {
		if mw[i] != nil {
			h = mw[i](h)
		}
	}
	return h
}

// The Runnable methods.

func (s *Stream[T]) attach(e *Engine) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.fn == nil:
		return fmt.Errorf("%w: stream %q", ErrNoFunction, s.name)
	case s.eng != nil && s.eng != e:
		return fmt.Errorf("kstream: stream %q already belongs to engine %q", s.name, s.eng.name)
	case s.sess != nil || s.opening != nil:
		return fmt.Errorf("kstream: stream %q is open; an engine opens the streams it runs", s.name)
	case s.running:
		return fmt.Errorf("kstream: stream %q: its function from an earlier run still runs (it was removed from inside it, or it ignored the deadline of the stop that removed it); add it again once it has returned", s.name)
	case s.cfg.concurrency.mode != concurrencySerial && s.fn.handler == nil:
		return fmt.Errorf("%w: stream %q: %v", ErrInvalidOption, s.name, errConcurrencyNeedsHandle)
	case s.fn.batch != nil && s.fn.batchMax <= 0:
		return fmt.Errorf("%w: stream %q: HandleBatches: max must be positive, got %d", ErrInvalidOption, s.name, s.fn.batchMax)
	case s.fn.batch != nil && s.fn.batchWait < 0:
		return fmt.Errorf("%w: stream %q: HandleBatches: wait must not be negative, got %v", ErrInvalidOption, s.name, s.fn.batchWait)
	}
	s.eng = e
	s.inherited = inherited{engine: e, tls: e.cfg.tls, sasl: e.cfg.sasl, brokers: e.cfg.brokers, clientOpts: e.cfg.clientOpts, logger: e.cfg.logger, onError: e.cfg.onError, metrics: e.cfg.metrics, tracing: e.cfg.tracing}
	s.state = stateNew
	return nil
}

func (s *Stream[T]) detach(e *Engine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.eng == e {
		s.eng = nil
		s.inherited = inherited{}
	}
}

// policy returns the stream's error policy: its own, else its engine's.
// The engine's settings are read under s.mu: Remove detaches the stream
// while its function may still run.
func (s *Stream[T]) policy() ErrorPolicy {
	if s.cfg.onErrorSet {
		return s.cfg.onError
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inherited.onError
}

func (s *Stream[T]) topicsForLog() []string {
	if s.cfg.pattern != "" {
		return []string{s.cfg.pattern}
	}
	return s.cfg.topics
}

// closeGracefully is Close, for the engine.
func (s *Stream[T]) closeGracefully() error { return s.Close() }

// forcedCloseTimeout bounds the final commit and the leave of a stream
// closed under a function that ignored the deadline of its stop.
const forcedCloseTimeout = 5 * time.Second

// forceClose closes the stream under a function that ignored the deadline
// of its stop: it commits what was processed (not the record in hand,
// which is not marked) and leaves the group, within forcedCloseTimeout,
// then closes the client. A close already in progress, which has had the
// whole stop to finish, is made to stop waiting for the brokers.
func (s *Stream[T]) forceClose() error {
	s.mu.Lock()
	closing := s.closingSS
	s.mu.Unlock()
	if closing != nil {
		closing.abort()
	}
	return s.closeWithin(forcedCloseTimeout)
}

// metricsSet returns the metrics the stream reports to: its own, else its
// engine's (read under s.mu, as policy does).
func (s *Stream[T]) metricsSet() *metricsSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.metricsOf(s.inherited)
}

// calledFromListener reports whether the caller is one of the stream's
// listener callbacks, running on franz-go's goroutine.
func (s *Stream[T]) calledFromListener() bool {
	s.mu.Lock()
	ss, closing := s.currentSessionLocked(), s.closingSS
	s.mu.Unlock()
	return (ss != nil && ss.calledFromListener()) || (closing != nil && closing.calledFromListener())
}

// missingTopics returns the stream's topics that did not exist at the open
// session's last check.
func (s *Stream[T]) missingTopics() []string {
	s.mu.Lock()
	ss := s.sess
	s.mu.Unlock()
	if ss == nil {
		return nil
	}
	return ss.missingTopics()
}

// decoderUnavailable returns the error of the open session's decoder while
// it is unavailable (codec.ErrUnavailable), or "".
func (s *Stream[T]) decoderUnavailable() string {
	s.mu.Lock()
	ss := s.sess
	s.mu.Unlock()
	if ss == nil {
		return ""
	}
	if p := ss.decodeUnavailable.Load(); p != nil {
		return *p
	}
	return ""
}

// lagSource returns what the engine's metrics read the stream's lag
// from: its group, and its topics or pattern.
func (s *Stream[T]) lagSource() (group string, topics []string, pattern *regexp.Regexp) {
	return s.cfg.group, s.cfg.topics, s.cfg.patternRe
}

// currentSessionLocked returns the open session or, during an Open, the
// session being opened (whose listeners may already run).
func (s *Stream[T]) currentSessionLocked() *session {
	if s.sess == nil && s.opening != nil {
		return s.opening.ss.Load()
	}
	return s.sess
}

// run opens the stream, runs its function until loopCtx is done or the
// function fails, and closes the stream. A panic becomes a *PanicError.
func (s *Stream[T]) run(loopCtx, handlerCtx context.Context) (err error) {
	s.mu.Lock()
	fn := s.fn
	s.running = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()
	if fn == nil {
		return ErrNoFunction
	}
	if err := s.Open(loopCtx); err != nil {
		if loopCtx.Err() != nil || errors.Is(err, ErrClosed) {
			return nil // stopped, or closed by a listener, while connecting
		}
		return err
	}
	ss, err := s.session()
	if err != nil {
		return nil // closed under us already
	}
	defer func() {
		// A function that returned because its bounded stream reached
		// its end finishes the stream (StreamFinished).
		finished := err == nil && ss.reachedEnd()
		if cerr := s.closeSession(ss); cerr != nil {
			s.logger().Error("closing stream", "stream", s.name, "err", cerr)
			if err == nil {
				err = &closeError{err: cerr, finished: finished} // reported by Stop, not a crash
			}
			return
		}
		if finished {
			s.logger().Info("stream finished: every partition consumed up to its end", "stream", s.name)
			err = errStreamFinished
		}
	}()
	// A graceful stop stops fetching; the function's ctx stays live.
	defer context.AfterFunc(loopCtx, ss.stopFetching)()
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Value: p, Stack: debug.Stack()}
		}
	}()
	switch {
	case fn.whole != nil:
		// The function's ctx ends with the stop, so that a function
		// waiting on anything learns of it, but never under a record in
		// hand: while a range of the stream runs, the ctx ends when the
		// range does (fetching has stopped, so that is at its next record
		// boundary), so that the record in hand finishes with a live ctx.
		fctx, cancel := context.WithCancel(handlerCtx)
		defer cancel()
		defer context.AfterFunc(loopCtx, func() { s.cancelAfterRange(cancel) })()
		return fn.whole(fctx, s)
	case fn.batch != nil:
		return s.runBatches(withSource(handlerCtx, ss), ss, fn) // Emit ties to the batch in hand
	default:
		handle := fn.handler
		if m := s.metricsSet(); m != nil {
			hist := m.handlerSeconds.WithLabelValues(s.name)
			handle = func(ctx context.Context, rec Record[T]) error {
				start := time.Now()
				err := fn.handler(ctx, rec)
				hist.Observe(time.Since(start).Seconds())
				return err
			}
		}
		tr := s.tracingOf()
		handle = traced(tr, s.cfg.group, handle)
		if s.cfg.concurrency.mode != concurrencySerial {
			return s.runConcurrent(handlerCtx, fn, handle)
		}
		hctx := withSource(handlerCtx, ss) // Emit ties to the record in hand
		for rec, err := range s.records(hctx, false) {
			if err != nil {
				var de *DecodeError
				var ee *EmitError
				switch {
				case errors.As(err, &de), errors.As(err, &ee):
					// Through the middleware, as the handler's error
					// would be; an *EmitError's partition was rewound.
					failed := func(context.Context, Record[T]) error { return err }
					if herr := traced(tr, s.cfg.group, chain(failed, fn.middleware))(hctx, rec); herr != nil {
						if herr = s.shareOutcome(ss, herr, rec.Raw); herr == nil {
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
			if err := handle(hctx, rec); err != nil {
				// A share stream acknowledges rec: Release and Reject go
				// on, any other error releases it first (share.go).
				if err = s.shareOutcome(ss, err, rec.Raw); err == nil {
					continue
				}
				return err
			}
		}
		return nil
	}
}

// isNonFatalFetch reports whether err is a FetchError a stream run by an
// engine goes on after (the session logged it).
func isNonFatalFetch(err error) bool {
	var fe *FetchError
	return errors.As(err, &fe) && !fe.Fatal
}

func (s *Stream[T]) logger() *slog.Logger {
	s.mu.Lock()
	in := s.inherited
	s.mu.Unlock()
	_, _, l := s.cfg.connection(in)
	return l
}
