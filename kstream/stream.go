package kstream

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/internal/nopanic"
)

// Stream consumes Kafka records and decodes their values into T. It is the
// Go form of a kstreams Stream: create it with NewStream, then either range
// over Records (or Batches) yourself, or hand it to an Engine.
//
// Lifecycle: NewStream validates and does no I/O. Open connects and joins the
// group; Close commits what was processed, leaves the group and releases
// every goroutine (Shutdown does the same bounded by a context); Open after Close starts again as a new group member from
// the committed offsets. Use wraps Open, a function and Close. Ranging over a
// stream that was never opened opens it for the duration of that loop.
//
// Concurrency: one range at a time per stream (a second concurrent range
// yields ErrConcurrentRange). Close, Commit, CommitRecords, Name,
// Assignment, Pause, Resume, Paused, Seek and SeekToTime are safe from any
// goroutine, including the loop body. The loop body runs on the goroutine
// that ranges; the stream never yields from another goroutine.
type Stream[T any] struct {
	dec    codec.Decoder[T]
	nilDec codec.NilDecoder[T]
	ctxDec codec.ContextDecoder[T]
	// decNoPanic: dec is one of the codec package's decoders that cannot
	// panic, called without a deferred recover.
	decNoPanic bool
	// decBytes: dec is codec.Bytes, whose value is the record's bytes;
	// decodeInto sets it without calling Decode.
	decBytes bool
	// decodeCtx is what a ContextDecoder gets: the range's context, ended
	// also when the stream stops fetching. Set and read by the ranging
	// goroutine only (one range at a time).
	decodeCtx context.Context
	cfg       config
	name      string

	mu        sync.Mutex
	sess      *session
	openSS    atomic.Pointer[session] // sess, for Emit's per-record look-up without mu
	opening   *openAttempt            // an Open in progress (s.mu is not held while connecting)
	closingSS *session                // a session Close is closing, for a concurrent Close to wait on
	state     streamState
	ranging   bool
	inherited inherited // from the engine the stream was added to
	eng       *Engine
	fn        *streamFunc[T]
	running   bool     // an engine runs the stream's function
	afterEnd  []func() // called when the range in progress ends (cancelAfterRange)
}

type streamState int

const (
	stateNew streamState = iota
	stateOpen
	stateClosed
)

var streamSeq atomic.Int64

// NewStream returns a stream that decodes record values with dec. It checks
// the options and their combination (no topics, Topics with TopicPattern, a
// bad pattern, initial offsets for a topic the stream does not read,
// Listener or ManualCommit without Group, an option of engines only) and
// returns an error wrapping ErrInvalidOption that names the option. It does
// no I/O.
func NewStream[T any](dec codec.Decoder[T], opts ...Option) (*Stream[T], error) {
	if dec == nil {
		return nil, fmt.Errorf("%w: NewStream: nil decoder", ErrInvalidOption)
	}
	s := &Stream[T]{dec: dec}
	s.nilDec, _ = dec.(codec.NilDecoder[T])
	s.ctxDec, _ = dec.(codec.ContextDecoder[T])
	_, s.decNoPanic = dec.(nopanic.Decoder)
	_, s.decBytes = dec.(nopanic.Identity)
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.apply(&s.cfg); err != nil {
			return nil, err
		}
	}
	s.cfg.noteDerived()
	if err := s.cfg.checkScope(forStreams); err != nil {
		return nil, err
	}
	if err := s.cfg.validate(); err != nil {
		return nil, err
	}
	s.name = s.cfg.name
	if s.name == "" {
		base := s.cfg.pattern
		if len(s.cfg.topics) > 0 {
			base = s.cfg.topics[0]
		}
		s.name = fmt.Sprintf("%s-%d", nameUnsafe.ReplaceAllString(base, "_"), streamSeq.Add(1))
	}
	return s, nil
}

var nameUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Name returns the stream's name: the Name option, or a unique name made
// from its first topic.
func (s *Stream[T]) Name() string { return s.name }

// Assignment returns the partitions this member currently owns, by topic,
// each list sorted. With a group it is what the group assigned; without one
// it is every partition the stream has fetched from. It is empty when the
// stream is not open.
func (s *Stream[T]) Assignment() map[string][]int32 {
	s.mu.Lock()
	ss := s.sess
	s.mu.Unlock()
	if ss == nil {
		return map[string][]int32{}
	}
	return ss.assignment()
}

// Open connects to the brokers and subscribes; with a group it starts
// joining it. ctx bounds connecting: Open returns once a broker answered,
// without waiting for partitions to be assigned. Open returns ErrAlreadyOpen
// if the stream is open. The group's first assignment, and so the rebalance
// listeners, can run before Open returns; if Close is called meanwhile (by
// a listener, say), Open gives up and returns ErrClosed.
func (s *Stream[T]) Open(ctx context.Context) error {
	s.mu.Lock()
	for s.opening != nil {
		if err := s.waitOpeningLocked(ctx); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	if s.sess != nil {
		s.mu.Unlock()
		return ErrAlreadyOpen
	}
	op := s.beginOpenLocked(ctx)
	s.mu.Unlock()
	_, err := s.finishOpen(op)
	return err
}

// Close stops the stream: it commits the records processed so far (not with
// ManualCommit), leaves the group so that its partitions move to other
// members at once, and waits for every goroutine the stream started. Records
// polled but not processed, and a record whose loop body is still running,
// are not committed: the next owner gets them again. A range in progress ends
// quietly at its next record boundary.
//
// A share group stream (ShareGroup) commits nothing: Close releases every
// record it holds and has not acknowledged, the record in hand included, at
// once, so that other members get them while a loop body may still run.
//
// Close is idempotent and safe from any goroutine, including the loop body.
// It returns the error of the final commit, if any. The final commit and
// the leave are bounded by DefaultCloseTimeout.
//
// Called from one of the stream's rebalance listeners, Close commits and
// starts leaving the group, and returns without waiting for the leave,
// which waits for the callback to return. Called from any other goroutine,
// it returns once the stream has left its group (or the deadline passed),
// also while a listener callback runs.
func (s *Stream[T]) Close() error { return s.closeWithin(DefaultCloseTimeout) }

// Shutdown is Close bounded by ctx in place of DefaultCloseTimeout (a ctx
// without a deadline leaves that bound in place, and its cancellation ends
// the wait too): the final commit, the leave, and a wait for a Close or an
// Open in progress all stop when ctx ends. When ctx ends before the stream
// has left its group, the client is closed without the leave (the group
// notices the member gone after its session timeout, unless it has an
// InstanceID, whose partitions wait for it until then) and Shutdown returns an error
// wrapping ctx's. It follows Close's rules for the calling goroutine: called
// from one of the stream's rebalance listeners it does not wait for the
// leave.
func (s *Stream[T]) Shutdown(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCloseTimeout)
		defer cancel()
	}
	return s.closeCtx(ctx)
}

// closeWithin is Close with the final commit and the leave bounded by
// timeout.
func (s *Stream[T]) closeWithin(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.closeCtx(ctx)
}

// closeCtx is Close bounded by ctx.
func (s *Stream[T]) closeCtx(ctx context.Context) error {
	s.mu.Lock()
	if op := s.opening; op != nil {
		// An Open in progress: it gives up, and closes what it opened.
		op.closeRequested = true
		op.cancel()
		s.mu.Unlock()
		if ss := op.ss.Load(); ss != nil && ss.calledFromListener() {
			return nil // from its listener: the Open finishes once it returns
		}
		select {
		case <-op.done:
		case <-ctx.Done():
			return fmt.Errorf("kstream: stream %q: waiting for an Open in progress to give up: %w", s.name, ctx.Err())
		}
		s.mu.Lock()
	}
	ss := s.sess
	if ss == nil {
		ss = s.closingSS // wait for a Close in progress
	}
	s.sess, s.state, s.closingSS = nil, stateClosed, ss
	s.openSS.Store(nil)
	s.mu.Unlock()
	if ss == nil {
		return nil
	}
	err := ss.closeCtx(ctx)
	s.mu.Lock()
	select {
	case <-ss.left:
		if s.closingSS == ss {
			s.closingSS = nil
		}
	default:
		// A Close from a listener returns while the client is still
		// closing (it waits for the callback): a later Close joins that
		// close and waits for the leave.
	}
	s.mu.Unlock()
	return err
}

// closeSession closes ss if it is still the stream's session: a session
// closed under its user (an engine's force close) may have been followed by
// a new one, which is not this caller's to close.
func (s *Stream[T]) closeSession(ss *session) error {
	s.mu.Lock()
	if s.sess != ss {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	return s.Close()
}

// Use opens the stream, calls fn with the stream's records, and closes the
// stream whatever happens, also when fn panics (the panic then goes on after
// Close). It returns fn's error joined with Close's. It is the Go form of
// kstreams' "async with stream as stream_flow". For a stream with
// PartitionConcurrency or KeyConcurrency, which apply to Handle functions
// run by an engine, it returns an error wrapping ErrInvalidOption and opens
// nothing.
func (s *Stream[T]) Use(ctx context.Context, fn func(records iter.Seq2[Record[T], error]) error) (err error) {
	if err := s.rangeOptionErr(); err != nil {
		return err
	}
	if err := s.Open(ctx); err != nil {
		return err
	}
	panicked := true
	defer func() {
		cerr := s.Close()
		if !panicked {
			err = errors.Join(err, cerr)
		}
	}()
	err = fn(s.Records(ctx))
	panicked = false
	return err
}

// session returns the open session, or why there is none.
func (s *Stream[T]) session() (*session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess != nil {
		return s.sess, nil
	}
	if s.state == stateClosed {
		return nil, ErrClosed
	}
	return nil, ErrNotOpen
}

// rangeOptionErr returns why the stream cannot be ranged over directly:
// PartitionConcurrency and KeyConcurrency apply to Handle streams run by an
// engine, which do not range with Records or Batches.
func (s *Stream[T]) rangeOptionErr() error {
	name := ""
	switch s.cfg.concurrency.mode {
	case concurrencyPartition:
		name = "PartitionConcurrency"
	case concurrencyKey:
		name = "KeyConcurrency"
	default:
		return nil
	}
	return fmt.Errorf("%w: stream %q: %s applies to a Handle function run by an engine; a stream ranged over (Records, Batches, Use, Func) handles one record at a time", ErrInvalidOption, s.name, name)
}

// rangeClaim carries, in the context of a range over a stream that was
// never opened, what closing the stream at the end of the range returned,
// from beginRange's release to unopenedRange.
type rangeClaim struct {
	owner    any // the stream ranged over: a range of another stream in the loop body must not take the claim
	closeErr error
	log      *slog.Logger
}

type rangeClaimKey struct{}

// unopenedRange runs loop, a range's loop that reports whether a call of
// yield returned false, for a stream that was never opened,
// which opens the stream and closes it at the end of the loop, so that the
// error of that close (its final commit) reaches the loop: it is yielded as
// the last value when the loop ended without break (its ctx ended, or the
// stream was closed, or the last value was a fatal error); after a break,
// a return or a panic, when yield may not be called again, it is logged. It
// reports false, doing nothing, for a stream that is open (or opening, or
// closed, or being ranged over): the range deals with those itself.
func unopenedRange[T, V any](ctx context.Context, s *Stream[T], loop func(context.Context) (broke bool), yield func(V, error) bool) bool {
	if c, _ := ctx.Value(rangeClaimKey{}).(*rangeClaim); c != nil && c.owner == any(s) {
		return false // the inner range of unopenedRange itself
	}
	s.mu.Lock()
	unopened := s.sess == nil && s.opening == nil && s.state != stateClosed && !s.ranging
	s.mu.Unlock()
	if !unopened {
		return false
	}
	claim := &rangeClaim{owner: s}
	ended := false
	defer func() {
		if !ended && claim.closeErr != nil { // a panic went through the loop
			claim.log.Error("closing stream opened by its loop", "err", claim.closeErr)
		}
	}()
	broke := loop(context.WithValue(ctx, rangeClaimKey{}, claim))
	ended = true
	switch {
	case claim.closeErr == nil:
	case broke:
		claim.log.Error("closing stream opened by its loop", "err", claim.closeErr)
	default:
		var zero V
		yield(zero, claim.closeErr)
	}
	return true
}

// beginRange claims the stream for one range, opening it if it was never
// opened. release ends the claim, and closes what beginRange opened.
func (s *Stream[T]) beginRange(ctx context.Context) (ss *session, release func(), err error) {
	claim, _ := ctx.Value(rangeClaimKey{}).(*rangeClaim)
	if claim != nil && claim.owner != any(s) {
		claim = nil
	}
	s.mu.Lock()
	if s.ranging {
		s.mu.Unlock()
		return nil, nil, ErrConcurrentRange
	}
	auto := false
	for s.sess == nil {
		if s.state == stateClosed {
			s.mu.Unlock()
			return nil, nil, ErrClosed
		}
		if s.opening != nil {
			if err := s.waitOpeningLocked(ctx); err != nil {
				s.mu.Unlock()
				return nil, nil, err
			}
			continue
		}
		op := s.beginOpenLocked(ctx)
		s.ranging = true // the range is claimed while it opens
		s.mu.Unlock()
		_, err := s.finishOpen(op)
		s.mu.Lock()
		s.ranging = false
		if err != nil {
			afterEnd := s.afterEnd
			s.afterEnd = nil
			s.mu.Unlock()
			for _, f := range afterEnd {
				f()
			}
			return nil, nil, err
		}
		auto = true
	}
	s.ranging = true
	ss = s.sess
	s.mu.Unlock()
	ss.beginRange()
	return ss, func() {
		ss.endRange()
		s.mu.Lock()
		s.ranging = false
		afterEnd := s.afterEnd
		s.afterEnd = nil
		closeIt := auto && s.sess == ss
		if closeIt {
			// The loop owned this Open; after it the stream is as new.
			s.sess, s.state = nil, stateNew
			s.openSS.Store(nil)
		}
		s.mu.Unlock()
		for _, f := range afterEnd {
			f()
		}
		if closeIt {
			err := ss.close(DefaultCloseTimeout)
			switch {
			case err == nil:
			case claim != nil:
				claim.closeErr, claim.log = err, ss.log // unopenedRange yields or logs it
			default:
				ss.log.Error("closing stream opened by its loop", "err", err)
			}
		}
	}, nil
}

// cancelAfterRange calls cancel once no range of the stream runs: at once,
// or when the range in progress ends.
func (s *Stream[T]) cancelAfterRange(cancel context.CancelFunc) {
	s.mu.Lock()
	if s.ranging {
		s.afterEnd = append(s.afterEnd, cancel)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	cancel()
}

// decode turns a fetched record into a Record[T]. A decoder's error or panic
// becomes a *DecodeError naming the record's position.
func (s *Stream[T]) decode(r *kgo.Record) (Record[T], error) {
	var rec Record[T]
	err := s.decodeInto(&rec, r)
	return rec, err
}

// decodeInto fills rec from r; it saves the hot loop a copy of the Record.
func (s *Stream[T]) decodeInto(rec *Record[T], r *kgo.Record) error {
	rec.Topic, rec.Partition, rec.Offset = r.Topic, r.Partition, r.Offset
	rec.Key, rec.Headers, rec.Timestamp, rec.Raw = r.Key, r.Headers, r.Timestamp, r
	if s.cfg.shareGroup != "" {
		rec.DeliveryCount = r.DeliveryCount()
	}
	if s.decBytes {
		if v, ok := any(&rec.Value).(*[]byte); ok {
			*v = r.Value // codec.Bytes: the value is the record's bytes
			return nil
		}
	}
	var err error
	if r.Value == nil {
		var zero T
		rec.Value = zero
		if s.nilDec != nil {
			rec.Value, err = s.safeDecodeNil()
		}
	} else {
		rec.Value, err = s.safeDecode(r.Value)
	}
	if err != nil {
		var zero T
		rec.Value = zero
		return &DecodeError{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Record: r, Err: err}
	}
	return nil
}

func (s *Stream[T]) safeDecode(b []byte) (v T, err error) {
	if s.decNoPanic {
		return s.dec.Decode(b)
	}
	defer func() {
		if p := recover(); p != nil {
			err = panicError("decoder panicked", p)
		}
	}()
	if s.ctxDec != nil && s.decodeCtx != nil {
		return s.ctxDec.DecodeContext(s.decodeCtx, b)
	}
	return s.dec.Decode(b)
}

// panicError describes a recovered panic, wrapping the value if it is an
// error so that errors.Is finds it.
func panicError(what string, p any) error {
	if err, ok := p.(error); ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %v", what, p)
}

func (s *Stream[T]) safeDecodeNil() (v T, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicError("decoder panicked on a tombstone", p)
		}
	}()
	return s.nilDec.DecodeNil()
}
