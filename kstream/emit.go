// Emit: output tied to the record being handled (DESIGN §10).

package kstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gokstreams/kstreams/codec"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrNoRecordInHand is returned by Emit called outside the handling of a
// record: from a range body between records, or with a ctx that carries no
// record of a Handle or HandleBatches function while no range body holds
// one.
var ErrNoRecordInHand = errors.New("kstream: Emit outside the handling of a record: no record in hand to tie the output to")

// EmitError reports a record emitted for a source record that failed for
// good. Topic, Partition and Offset name the source record; To is the topic
// the emitted record was for. The source record and every later record of
// its partition are delivered again (under ExactlyOnce: every record of the
// aborted transaction).
type EmitError struct {
	Topic     string
	Partition int32
	Offset    int64
	To        string
	Err       error
}

func (e *EmitError) Error() string {
	return fmt.Sprintf("kstream: emit to topic %q for record topic %q partition %d offset %d: %v", e.To, e.Topic, e.Partition, e.Offset, e.Err)
}

func (e *EmitError) Unwrap() error { return e.Err }

// Emit writes value to topic without waiting for the broker, tied to the
// record being handled: in a Handle or HandleBatches function, the record
// or batch that function was given (pass the ctx it received: this is how
// it works under PartitionConcurrency and KeyConcurrency); in a range body,
// the record or batch in hand. Without one it returns ErrNoRecordInHand.
//
// In the default mode a record counts as processed only once the body has
// finished with it and every record emitted for it is acknowledged, so no
// commit covers a record whose output may be missing; a commit held back
// this way holds back only the source record's partition. An emitted record
// that fails for good is yielded as an *EmitError (Handle streams: through
// the middleware and the error policy), and the source record and every
// later record of its partition are delivered again. Under ExactlyOnce the
// emitted records are part of the stream's open transaction.
//
// Emit returns an error only for what it can tell at once: no record in
// hand, an empty topic, a stream not open or closed. The emitted record does
// not end with ctx, which only lends it its values: a loop ended by
// canceling its ctx ends normally, the record in hand included, and Close
// writes what it emitted. When the producer's buffer is full
// (kgo.MaxBufferedRecords), Emit waits for room. Records emitted for a record that a body
// breaks on, returns or panics on are not withdrawn (except under
// ExactlyOnce, whose transaction aborts): the record is delivered again,
// and emits again.
func (s *Stream[T]) Emit(ctx context.Context, topic string, value []byte, opts ...SendOption) error {
	if src := sourceFrom(ctx); src != nil && src.ss.handle.name == s.name {
		return src.ss.emit(ctx, src.recs, topic, value, opts)
	}
	ss := s.openSS.Load()
	if ss == nil {
		var err error
		if ss, err = s.session(); err != nil {
			return err
		}
	}
	return ss.emit(ctx, nil, topic, value, opts)
}

// Emit is Stream.Emit, for a listener or an Emitter.
func (h *streamHandle) Emit(ctx context.Context, topic string, value []byte, opts ...SendOption) error {
	var recs []*kgo.Record
	if src := sourceFrom(ctx); src != nil && src.ss == h.ss {
		recs = src.recs
	}
	return h.ss.emit(ctx, recs, topic, value, opts)
}

// Emitter emits values of type V to one topic through a stream, encoded
// with an encoder, as Producer does for Send.
type Emitter[V any] struct {
	s     AnyStream
	topic string
	enc   codec.Encoder[V]
}

// NewEmitter returns an Emitter of values to topic through s. A nil s, an
// empty topic or a nil encoder makes every Emit fail with an error
// wrapping ErrInvalidOption.
func NewEmitter[V any](s AnyStream, topic string, enc codec.Encoder[V]) *Emitter[V] {
	return &Emitter[V]{s: s, topic: topic, enc: enc}
}

// Emit encodes v and emits it with key, as Stream.Emit does. Options given
// after the key may replace it (WithKey).
func (e *Emitter[V]) Emit(ctx context.Context, key []byte, v V, opts ...SendOption) error {
	switch {
	case e.s == nil:
		return fmt.Errorf("%w: NewEmitter: nil stream", ErrInvalidOption)
	case e.topic == "":
		return fmt.Errorf("%w: NewEmitter: empty topic", ErrInvalidOption)
	case e.enc == nil:
		return fmt.Errorf("%w: NewEmitter: nil encoder for topic %q", ErrInvalidOption, e.topic)
	}
	b, err := e.enc.Encode(v)
	if err != nil {
		return fmt.Errorf("kstream: encode value for topic %q: %w", e.topic, err)
	}
	all := make([]SendOption, 0, len(opts)+1)
	all = append(append(all, WithKey(key)), opts...)
	return e.s.Emit(ctx, e.topic, b, all...)
}

// emitSource is what a Handle or HandleBatches function's ctx carries: the
// session and the record or batch the function was given.
type emitSource struct {
	context.Context
	ss   *session
	recs []*kgo.Record // nil: the record or batch in hand of the range
	one  [1]*kgo.Record
}

type emitSourceKey struct{}

func (c *emitSource) Value(key any) any {
	if key == (emitSourceKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// withSource returns ctx carrying ss, for the functions of a serial
// Handle or HandleBatches stream, whose record or batch in hand is the
// session's.
func withSource(ctx context.Context, ss *session) context.Context {
	return &emitSource{Context: ctx, ss: ss}
}

// withRecord returns ctx carrying ss and r, for a handler running on a
// lane of a concurrent stream.
func withRecord(ctx context.Context, ss *session, r *kgo.Record) context.Context {
	src := &emitSource{Context: ctx, ss: ss}
	src.one[0] = r
	src.recs = src.one[:]
	return src
}

func sourceFrom(ctx context.Context) *emitSource {
	if ctx == nil {
		return nil
	}
	src, _ := ctx.Value(emitSourceKey{}).(*emitSource)
	return src
}

// emitOp is one emitted record until its acknowledgement, then kept for
// the next Emit (newEmitOpLocked), its promise bound once.
type emitOp struct {
	rec    kgo.Record
	ss     *session
	one    [1]emitTie // the source partition of a single record
	more   *emitMore  // a batch's source partitions; a share stream's sources
	start  int64      // unix nanos of the Emit, with metrics only
	txnGen uint64     // under ExactlyOnce, the transaction it was emitted in
	next   *emitOp    // in session.acks or session.freedOps, once acknowledged
	// promise is acked, bound once: an emitOp is reused (newEmitOpLocked).
	promise func(*kgo.Record, error)
}

// emitMore is what an emitOp needs beyond one source partition.
type emitMore struct {
	ties []emitTie     // when the source records span partitions
	srcs []*kgo.Record // on a share stream, the records it was emitted for
}

// ties returns the source partitions op holds back.
func (op *emitOp) ties() []emitTie {
	if op.more != nil && op.more.ties != nil {
		return op.more.ties
	}
	return op.one[:]
}

// emitTie names a source partition and record an emit holds back: the
// lowest record of that partition among the records being handled.
type emitTie struct {
	tp  topicPartition
	off int64
	gen uint64
}

func (ss *session) emit(ctx context.Context, recs []*kgo.Record, topic string, value []byte, opts []SendOption) error {
	if topic == "" {
		return fmt.Errorf("%w: Emit: empty topic", ErrInvalidOption)
	}
	// The emitted record does not die with ctx: a loop ended by
	// canceling its ctx ends normally, the record in hand included, and
	// what it emitted is written (Close flushes). ctx's values (a trace)
	// go with the record.
	ctx = orBackground(ctx)
	ss.lockFold()
	op := ss.newEmitOpLocked()
	op.rec.Topic, op.rec.Value = topic, value
	if ctx != ss.emitCtxIn {
		// A range body emits under the same ctx record after record:
		// one WithoutCancel (and one sendCtx for ToPartition) for all
		// of them.
		out := context.WithoutCancel(ctx)
		ss.emitCtxIn, ss.emitCtxOut = ctx, out
		ss.emitCtxManual = &sendCtx{Context: out, manual: true}
	}
	ctx, manualCtx := ss.emitCtxOut, ss.emitCtxManual
	if recs == nil {
		recs = ss.inflight
	}
	if len(recs) == 0 {
		ss.mu.Unlock()
		return ErrNoRecordInHand
	}
	ties := addTie(op.one[:0], recs[0])
	for _, r := range recs[1:] {
		ties = addTie(ties, r)
	}
	if len(ties) > 1 {
		op.more = &emitMore{ties: ties}
	}
	switch {
	case ss.share:
		// The source's Accept waits for the acknowledgement.
		if op.more == nil {
			op.more = &emitMore{}
		}
		op.more.srcs = append(op.more.srcs, recs...)
		ss.shareEmittedLocked(op.more.srcs)
	case ss.txn != nil:
		ss.dirty = true // the transaction holds output
		op.txnGen = ss.txn.gen
	default:
		// The default mode: each source partition's commit waits for it.
		ties := op.ties()
		for i := range ties {
			t := &ties[i]
			ps := ss.ownedPartLocked(t.tp)
			if ps == nil {
				continue // revoked meanwhile: nothing of it will be committed here
			}
			t.gen = ss.emitStateLocked(ps).add(t.off)
		}
	}
	ss.emitting.Add(1)
	ss.mu.Unlock()
	op.rec.Context = ctx
	if applySendOptions(&op.rec, opts) {
		op.rec.Context = manualCtx
	}
	ss.tracing.injectTrace(ctx, &op.rec)
	if ss.m != nil {
		op.start = time.Now().UnixNano() // for the emit latency histogram
	}
	ss.client().Produce(ctx, &op.rec, op.promise)
	return nil
}

// emitOpsKept bounds how many acknowledged emitOps a session keeps for
// reuse: as many as a client buffers by default (franz-go's and the
// engine's 10 000), so that a steady pipeline allocates none; at most
// about 3 MiB.
const emitOpsKept = DefaultMaxBufferedRecords

// newEmitOpLocked returns a zeroed emitOp: one acknowledged and given back
// (freeEmitOpLocked, or under ExactlyOnce the lock-free freed list), or a
// new one with its promise bound. franz-go does not touch a record once its
// promise has returned. ss.mu is held.
func (ss *session) newEmitOpLocked() *emitOp {
	if len(ss.emitOps) == 0 {
		ss.emitOps = takeFree(&ss.freedOps, ss.emitOps, emitOpsKept, emitOpNext)
	}
	if n := len(ss.emitOps); n > 0 {
		op := ss.emitOps[n-1]
		ss.emitOps[n-1] = nil
		ss.emitOps = ss.emitOps[:n-1]
		*op = emitOp{ss: ss, promise: op.promise}
		return op
	}
	op := &emitOp{ss: ss}
	op.promise = op.acked
	return op
}

// freeEmitOpLocked keeps op, acknowledged and settled, for reuse. ss.mu is
// held.
func (ss *session) freeEmitOpLocked(op *emitOp) {
	if len(ss.emitOps) < emitOpsKept {
		op.rec = kgo.Record{} // no reference to the value or the ctx while kept
		ss.emitOps = append(ss.emitOps, op)
	}
}

// addTie adds r's partition to ties, or lowers its offset there.
func addTie(ties []emitTie, r *kgo.Record) []emitTie {
	for i := range ties {
		if ties[i].tp.partition == r.Partition && ties[i].tp.topic == r.Topic {
			ties[i].off = min(ties[i].off, r.Offset)
			return ties
		}
	}
	return append(ties, emitTie{tp: topicPartition{r.Topic, r.Partition}, off: r.Offset})
}

// acked is an emitted record's promise.
func (op *emitOp) acked(r *kgo.Record, err error) {
	ss := op.ss
	if err == nil && ss.txn != nil {
		// Under ExactlyOnce an acknowledgement settles nothing: the
		// transaction's end flushes and commits.
		ss.noteEmit(r.Topic, op.start, nil)
		ss.emitting.Add(-1)
		// Given back for reuse (newEmitOpLocked), without the lock.
		op.rec = kgo.Record{}
		pushFree(&ss.freedOps, op, emitOpNext)
		return
	}
	if err == nil && !ss.share {
		// The common case: queue the acknowledgement and settle the queue
		// now if the lock is free; else its holder settles it
		// (lockFold), so that acknowledgements do not wait for the loop
		// body's Emits, nor those for them.
		ss.noteEmit(r.Topic, op.start, nil)
		pushFree(&ss.acks, op, emitOpNext)
		ss.emitting.Add(-1)
		if !ss.mu.TryLock() {
			return
		}
		ss.foldLocked()
		push := ss.dirty && ss.pushDue.Load() && !ss.closing.Load()
		ss.mu.Unlock()
		if push {
			ss.pushMarks(ss.client())
		}
		return
	}
	push := false
	ss.lockFold()
	if err != nil && ss.txn != nil && op.txnGen != ss.txn.gen {
		err = nil // failed by the abort of its transaction: not a failure of its own
	} else {
		ss.noteEmit(r.Topic, op.start, err)
	}
	if err != nil {
		t := op.ties()[0]
		ss.log.Warn("emitted record failed; its source record will be delivered again", "to", r.Topic, "source_topic", t.tp.topic, "source_partition", t.tp.partition, "source_offset", t.off, "err", err)
	}
	if ss.share {
		// The source's Accept, or its release (share.go).
		for _, src := range op.more.srcs {
			ss.shareEmitDoneLocked(src, err != nil)
		}
		if err != nil {
			t := op.ties()[0]
			ss.errs = append(ss.errs, &EmitError{Topic: t.tp.topic, Partition: t.tp.partition, Offset: t.off, To: r.Topic, Err: err})
		}
	} else {
		op.settleTiesLocked(r, err)
	}
	if err != nil && ss.ctl.wake != nil {
		// A range waiting for records handles the failure now.
		ss.ctl.woken = true
		ss.ctl.wake()
	}
	push = ss.dirty && ss.pushDue.Load() && !ss.closing.Load()
	ss.mu.Unlock()
	ss.emitting.Add(-1)
	if push {
		// The loop may be waiting for records: push now, as the mark
		// timer, which is idle, would have.
		ss.pushMarks(ss.client())
	}
}

// emitOpNext is an emitOp's link in session.acks and session.freedOps
// (freelist.go).
func emitOpNext(op *emitOp) **emitOp { return &op.next }

// settleAcksLocked settles the acknowledgements queued by acked, in the
// order they came. ss.mu is held.
func (ss *session) settleAcksLocked() {
	var fifo *emitOp
	for op := ss.acks.Swap(nil); op != nil; {
		next := op.next
		op.next, fifo = fifo, op
		op = next
	}
	for op := fifo; op != nil; {
		next := op.next
		op.next = nil
		op.settleTiesLocked(&op.rec, nil)
		ss.freeEmitOpLocked(op)
		op = next
	}
}

// settleTiesLocked records the outcome of op's record r for each source
// partition it ties: under ExactlyOnce a failure for the transaction;
// in the default mode the acknowledgement, or the failure, that moves or
// holds the partition's commit watermark. session.mu is held.
func (op *emitOp) settleTiesLocked(r *kgo.Record, err error) {
	ss := op.ss
	for _, t := range op.ties() {
		var fail *EmitError
		if err != nil {
			fail = &EmitError{Topic: t.tp.topic, Partition: t.tp.partition, Offset: t.off, To: r.Topic, Err: err}
		}
		if ss.txn != nil {
			if fail != nil && op.txnGen == ss.txn.gen {
				ss.txn.failures = append(ss.txn.failures, fail)
				ss.emitFailed.Store(true)
			}
			continue
		}
		ps := ss.ownedPartLocked(t.tp)
		if ps == nil || ps.em == nil {
			continue
		}
		if !ps.em.done(t.off, t.gen) {
			continue // rewound past since: it will be emitted again
		}
		if fail != nil && (ps.em.failed == nil || t.off < ps.em.failed.Offset) {
			ps.em.failed = fail
			ss.emitFailed.Store(true)
		}
		ss.settleEmitsLocked(ps)
	}
}

// emitState is the emit bookkeeping of one partition, in the default mode:
// the body's own watermark and the source records whose emits are not yet
// acknowledged. A partition's processed watermark (what commits cover) is
// the body's, held back at the lowest source with emits outstanding or
// failed.
type emitState struct {
	finished      int64 // next offset after the records the body finished
	finishedEpoch int32
	pending       []emitPending // by offset
	failed        *EmitError    // the lowest failure not yet yielded
	gen           uint64
}

type emitPending struct {
	off int64
	gen uint64
	n   int
}

// emitStateLocked returns ps's emit state, making it on the partition's
// first emit. ss.mu is held.
func (ss *session) emitStateLocked(ps *partState) *emitState {
	if ps.em == nil {
		ss.emitGen++
		ps.em = &emitState{finished: ps.processed, finishedEpoch: ps.epoch, gen: ss.emitGen}
	}
	return ps.em
}

// add records one more emit outstanding for the source at off and returns
// the generation to acknowledge it with.
func (em *emitState) add(off int64) uint64 {
	i := len(em.pending)
	for i > 0 && em.pending[i-1].off > off {
		i--
	}
	if i > 0 && em.pending[i-1].off == off && em.pending[i-1].gen == em.gen {
		em.pending[i-1].n++
		return em.gen
	}
	em.pending = append(em.pending, emitPending{})
	copy(em.pending[i+1:], em.pending[i:])
	em.pending[i] = emitPending{off: off, gen: em.gen, n: 1}
	return em.gen
}

// done records one emit of the source at off acknowledged (or failed). It
// reports false when the source is no longer waited for (a rewind dropped
// it).
func (em *emitState) done(off int64, gen uint64) bool {
	for i := range em.pending {
		p := &em.pending[i]
		if p.off > off {
			break
		}
		if p.off == off && p.gen == gen {
			if p.n--; p.n == 0 {
				if i == 0 {
					// The common case, acknowledgements in order: O(1).
					em.pending = em.pending[1:]
				} else {
					em.pending = append(em.pending[:i], em.pending[i+1:]...)
				}
			}
			return true
		}
	}
	return false
}

// capOffset is the offset commits of the partition must not pass: its
// lowest source with emits outstanding or failed; ok is false when there
// is none.
func (em *emitState) capOffset() (int64, bool) {
	off, ok := int64(0), false
	if len(em.pending) > 0 {
		off, ok = em.pending[0].off, true
	}
	if em.failed != nil && (!ok || em.failed.Offset < off) {
		off, ok = em.failed.Offset, true
	}
	return off, ok
}

// rewound forgets, for a partition read again from off, the sources at or
// after off: they will be handled, and emit, again.
func (em *emitState) rewound(off int64, gen uint64) {
	em.finished = min(em.finished, off)
	kept := em.pending[:0]
	for _, p := range em.pending {
		if p.off < off {
			kept = append(kept, p)
		}
	}
	em.pending = kept
	if em.failed != nil && em.failed.Offset >= off {
		em.failed = nil
	}
	em.gen = gen
}

// settleEmitsLocked moves ps.processed up to the body's watermark, held
// back by emits outstanding or failed. ss.mu is held.
func (ss *session) settleEmitsLocked(ps *partState) {
	em := ps.em
	target, epoch := em.finished, em.finishedEpoch
	if c, ok := em.capOffset(); ok && c < target {
		target, epoch = c, -1
	}
	if target > ps.processed {
		ps.processed, ps.epoch = target, epoch
		ss.dirty = true
		if ps.ending {
			ss.checkEndLocked(ps)
		}
	}
}

// markEmittedLocked is markLocked for a partition with emits: the body
// finished r.
func (ss *session) markEmittedLocked(ps *partState, r *kgo.Record) {
	if r.Offset+1 > ps.em.finished {
		ps.em.finished, ps.em.finishedEpoch = r.Offset+1, r.LeaderEpoch
	}
	ss.settleEmitsLocked(ps)
}

// awaitEmits waits until every record emitted so far is acknowledged or
// failed, for a commit that must cover their sources, or until ctx ends.
func (ss *session) awaitEmits(ctx context.Context) error {
	if ss.emitting.Load() == 0 {
		return nil
	}
	if err := ss.client().Flush(ctx); err != nil {
		return fmt.Errorf("kstream: stream %q: waiting for emitted records: %w", ss.name, err)
	}
	return nil
}

// rewindEmitsLocked is the emit side of a default-mode rewind of ps to off
// (off is never past ps.capEmits): the sources at or after off are
// forgotten, so that late acknowledgements of their emits are ignored (they
// are handled, and emit, again), and a failure among them is queued to be
// yielded as an *EmitError. ss.mu is held.
func (ss *session) rewindEmitsLocked(tp topicPartition, ps *partState, off int64) {
	em := ps.em
	if fail := em.failed; fail != nil && fail.Offset >= off {
		ss.errs = append(ss.errs, fail)
		ss.log.Warn("emit failed: partition rewound to the source record", "topic", tp.topic, "partition", tp.partition, "offset", off, "source_offset", fail.Offset, "to", fail.To, "err", fail.Err)
	}
	ss.emitGen++
	em.rewound(off, ss.emitGen)
}

// recoverEmits handles emitted records that failed, at a record boundary
// of the range (nothing in hand): each failure is queued to be yielded as
// an *EmitError and its source partition is rewound to the source record,
// so that the source and every later record are delivered again. A
// concurrent Handle stream's lanes first drop what they have not started
// and finish what runs, as for a rebalance, and every partition is rewound
// to its lowest unfinished record. The emits outstanding are waited for
// first (up to giveWayEmitWait), and no partition is rewound past a source
// whose emits are still outstanding (rewindLocked). Under ExactlyOnce the
// open transaction is aborted instead (txn.go).
func (ss *session) recoverEmits() {
	if ss.txn != nil {
		ss.endTxnNow(false)
		return
	}
	ss.lockFold()
	stop := ss.stopDispatch
	ss.mu.Unlock()
	if stop != nil {
		stop()
	}
	if ss.emitting.Load() > 0 {
		// Emits outstanding below a failure settle first, so that the
		// rewind need not go back past them (rewindLocked).
		ctx, cancel := context.WithTimeout(ss.abortCtx, giveWayEmitWait)
		_ = ss.client().Flush(ctx)
		cancel()
	}
	ss.lockFold()
	ss.emitFailed.Store(false)
	rewind := ss.rewindLocked() // yields the failures of the partitions it rewinds
	for tp, ps := range ss.parts {
		if ps.em == nil || ps.em.failed == nil {
			continue
		}
		// Nothing unfinished or buffered: read again from the failed
		// source record, or from a record below it whose output is not
		// acknowledged yet.
		off := ps.capEmits(ps.em.failed.Offset)
		ss.rewindEmitsLocked(tp, ps, off)
		ps.rewindTo(off)
		if rewind == nil {
			rewind = make(map[string]map[int32]kgo.EpochOffset)
		}
		addOffset(rewind, tp, kgo.EpochOffset{Epoch: -1, Offset: off})
	}
	ss.mu.Unlock()
	if len(rewind) > 0 {
		ss.client().SetOffsets(rewind)
	}
}
