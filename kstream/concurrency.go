package kstream

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// PartitionConcurrency lets a Handle stream run by an engine handle up to n
// partitions at once, one record at a time within each partition, so that
// records of a partition are handled in offset order. Without it (or with
// n = 1) the stream handles one record at a time.
//
// Commits stay exact: a partition's commit (automatic, Commit,
// CommitRecords, or a listener's) never passes its lowest unfinished record.
// Before the group rebalances, the handlers running finish, and records
// dispatched but not started are given back: each partition is read again
// from its lowest unfinished record, so a rebalance waits for at most one
// record per running handler, and a revoke commits what was handled and
// nothing else. A record whose handler fails stops the stream (its
// ErrorPolicy applies) with the records after it in its partition
// unhandled.
func PartitionConcurrency(n int) Option {
	return optionFunc(func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: PartitionConcurrency: must be at least 1, got %d", ErrInvalidOption, n)
		}
		if c.concurrency.mode == concurrencyKey {
			return fmt.Errorf("%w: PartitionConcurrency and KeyConcurrency cannot be combined", ErrInvalidOption)
		}
		c.concurrency = concurrency{mode: concurrencyPartition, n: n}
		return nil
	})
}

// KeyConcurrency lets a Handle stream run by an engine handle up to n
// records at once, also within a partition: records with the same key are
// handled one at a time in offset order, records with different keys may
// run in parallel. It helps a hot partition. Records without a key are
// handled in the order of their partition, one at a time per partition (as
// with PartitionConcurrency), since nothing says their order does not
// matter. Commits and rebalances follow the same rules as with
// PartitionConcurrency: never past a partition's lowest unfinished record.
func KeyConcurrency(n int) Option {
	return optionFunc(func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: KeyConcurrency: must be at least 1, got %d", ErrInvalidOption, n)
		}
		if c.concurrency.mode == concurrencyPartition {
			return fmt.Errorf("%w: PartitionConcurrency and KeyConcurrency cannot be combined", ErrInvalidOption)
		}
		c.concurrency = concurrency{mode: concurrencyKey, n: n}
		return nil
	})
}

type concurrencyMode int

const (
	concurrencySerial concurrencyMode = iota
	concurrencyPartition
	concurrencyKey
)

type concurrency struct {
	mode concurrencyMode
	n    int
}

// dispatcher runs a Handle stream's records on lanes: one lane per
// partition (PartitionConcurrency) or per key hash (KeyConcurrency), each
// handling its records in order, at most n handlers at once.
type dispatcher[T any] struct {
	s          *Stream[T]
	ss         *session
	handle     Handler[T]
	middleware []Middleware[T]
	handlerCtx context.Context
	tracing    *tracing // Tracing, for the records that fail to decode
	mode       concurrencyMode
	sem        chan struct{}
	seed       maphash.Seed
	limit      int // records dispatched and not finished, at most

	mu       sync.Mutex
	changed  *sync.Cond // broadcast when a record finishes
	lanes    map[laneKey]*lane[T]
	parts    map[topicPartition]*progress
	inFlight atomic.Int64  // changed under mu; read without it
	gen      atomic.Uint64 // give-ways so far; changed under mu
	failure  error
	hasFail  atomic.Bool
	wg       sync.WaitGroup
}

type laneKey struct {
	tp   topicPartition
	hash uint64
}

// lane is a queue of records handled one at a time, in order. Its queue is
// guarded by the dispatcher's mu; wake tells its goroutine there is more.
type lane[T any] struct {
	queue  []job[T]
	wake   chan struct{}
	closed bool
}

type job[T any] struct {
	rec  Record[T]
	derr error // a *DecodeError instead of a record to handle
	raw  *kgo.Record
	gen  uint64 // d.gen when a lane took it: a give-way since drops it
}

// progress tracks a partition's dispatched records in offset order, to
// find the lowest unfinished one.
type progress struct {
	queue []*kgo.Record
	done  map[*kgo.Record]bool
}

func (s *Stream[T]) runConcurrent(handlerCtx context.Context, fn *streamFunc[T], handle Handler[T]) (err error) {
	ss, release, err := s.beginRange(handlerCtx)
	if err != nil {
		return err
	}
	d := &dispatcher[T]{
		s: s, ss: ss, handle: handle, middleware: fn.middleware, handlerCtx: handlerCtx, tracing: s.tracingOf(),
		mode: s.cfg.concurrency.mode, sem: make(chan struct{}, s.cfg.concurrency.n), seed: maphash.MakeSeed(),
		lanes: map[laneKey]*lane[T]{}, parts: map[topicPartition]*progress{},
		// Enough that every lane has work while a poll's records, which
		// come partition by partition, are handed out.
		limit: max(2*s.cfg.maxPoll, 64*s.cfg.concurrency.n),
	}
	d.changed = sync.NewCond(&d.mu)
	ss.setStopDispatch(d.giveWay, d.drain)
	defer func() {
		d.closeLanes()
		ss.setStopDispatch(nil, nil)
		if err == nil {
			err = d.failed()
		}
		if err != nil && ss.txn != nil && !ss.closing.Load() {
			// A failed handler aborts the open transaction (its lanes
			// have stopped).
			ss.endTxnNow(false)
		}
	}()
	// At the end of the range (a stop, a failure), the lanes drop what
	// they have not started and the handlers running finish, before the
	// range is released and a rebalance or Close may run: a stop waits for
	// the records in hand, not for the lanes' queues.
	defer release()
	defer func() { ss.noteDropped(d.giveWay()) }()
	defer s.useDecodeCtx(handlerCtx, ss)()
	done := handlerCtx.Done()
	var retry decodeRetry
	for {
		if err := d.failed(); err != nil {
			return err
		}
		r, fe, st := ss.nextUnmarked(handlerCtx, done, d.busy())
		switch st {
		case popEnd:
			return nil
		case popYield, popTimeout:
			if ss.share {
				// A share stream polls only once the lanes have
				// finished the last poll's records (share.go).
				d.waitIdle(handlerCtx)
			}
			continue // nextUnmarked gave way to the rebalance
		}
		if fe != nil {
			if err := d.yieldedErr(fe); err != nil {
				return err
			}
			continue
		}
		var rec Record[T]
		derr := s.decodeInto(&rec, r)
		if derr != nil {
			if unavailable(derr) {
				if !retry.retry(handlerCtx, ss, []*kgo.Record{r}, derr) {
					return nil
				}
				continue
			}
			ss.noteDecodeError(r.Topic)
		}
		retry.ok(ss)
		d.dispatch(job[T]{rec: rec, derr: derr, raw: r})
	}
}

func (d *dispatcher[T]) dispatch(j job[T]) {
	tp := topicPartition{j.raw.Topic, j.raw.Partition}
	key := laneKey{tp: tp}
	if d.mode == concurrencyKey && j.raw.Key != nil {
		// Keyless records keep the lane of their partition: in partition
		// order, and spread over lanes as the partitions are.
		key = laneKey{hash: maphash.Bytes(d.seed, j.raw.Key) % uint64(cap(d.sem))}
	}
	d.mu.Lock()
	for d.inFlight.Load() >= int64(d.limit) {
		d.changed.Wait()
	}
	p := d.parts[tp]
	if p == nil {
		p = &progress{done: map[*kgo.Record]bool{}}
		d.parts[tp] = p
	}
	p.queue = append(p.queue, j.raw)
	d.inFlight.Add(1)
	l := d.lanes[key]
	if l == nil {
		l = &lane[T]{wake: make(chan struct{}, 1)}
		d.lanes[key] = l
		d.wg.Add(1)
		go d.run(l)
	}
	l.queue = append(l.queue, j)
	d.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// next takes l's next job, waiting for one; ok is false once l is closed
// and empty.
func (d *dispatcher[T]) next(l *lane[T]) (j job[T], ok bool) {
	d.mu.Lock()
	for len(l.queue) == 0 {
		if l.closed {
			d.mu.Unlock()
			return j, false
		}
		d.mu.Unlock()
		<-l.wake
		d.mu.Lock()
	}
	j = l.queue[0]
	l.queue[0] = job[T]{}
	l.queue = l.queue[1:]
	j.gen = d.gen.Load()
	d.mu.Unlock()
	return j, true
}

// run handles a lane's records in order.
func (d *dispatcher[T]) run(l *lane[T]) {
	defer d.wg.Done()
	for {
		j, ok := d.next(l)
		if !ok {
			return
		}
		if d.hasFail.Load() {
			d.finish(j.raw, false)
			continue
		}
		d.sem <- struct{}{}
		if d.gen.Load() != j.gen {
			// Taken, but a give-way came while it waited for a
			// handler slot: dropped like the records not taken.
			<-d.sem
			d.dropTaken()
			continue
		}
		err := d.call(j)
		<-d.sem
		if err != nil {
			// Share streams: Release and Reject are not failures.
			err = d.s.shareOutcome(d.ss, err, j.raw)
		}
		if err != nil {
			d.fail(err)
		}
		d.finish(j.raw, err == nil)
	}
}

func (d *dispatcher[T]) call(j job[T]) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Value: p, Stack: debug.Stack()}
		}
	}()
	ctx := withRecord(d.handlerCtx, d.ss, j.raw) // Emit ties to j's record
	if j.derr != nil {
		return d.callDecodeError(ctx, j.rec, j.derr)
	}
	return d.handle(ctx, j.rec)
}

// yieldedErr is what the range goroutine does with an error popLocked
// gave: a fatal one ends the stream; an *EmitError goes through the
// middleware as a handler's error would (its partition was rewound).
func (d *dispatcher[T]) yieldedErr(err error) error {
	if isFatal(err) {
		return err
	}
	if _, ok := err.(*EmitError); ok {
		failed := func(context.Context, Record[T]) error { return err }
		return chain(failed, d.middleware)(d.handlerCtx, errRecord[T](err))
	}
	return nil
}

// callDecodeError runs the middleware for a record that failed to decode.
// It is a function of its own so that the closure does not make every job
// escape to the heap.
func (d *dispatcher[T]) callDecodeError(ctx context.Context, rec Record[T], derr error) error {
	failed := func(context.Context, Record[T]) error { return derr }
	return traced(d.tracing, d.s.cfg.group, chain(failed, d.middleware))(ctx, rec)
}

// finish records the end of a record; ok says it was handled. The
// partition's mark advances over the finished records at the front of its
// queue, never past an unfinished or failed one.
func (d *dispatcher[T]) finish(r *kgo.Record, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ss.share {
		// Each record is acknowledged on its own (share.go): accepted
		// if handled; a failed one was released by shareOutcome.
		d.ss.shareFinish(r, ok)
	} else if last := d.parts[topicPartition{r.Topic, r.Partition}].finish(r, ok); last != nil {
		d.ss.markDone(last)
	}
	d.inFlight.Add(-1)
	d.changed.Broadcast()
}

// dropTaken ends a record a lane took but did not start (giveWay).
func (d *dispatcher[T]) dropTaken() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inFlight.Add(-1)
	d.changed.Broadcast()
}

// finish records that r ended (handled if ok) and returns the last record of
// the finished run at the front of the queue, which the partition's mark may
// advance to, or nil: the mark never passes an unfinished or failed record.
func (p *progress) finish(r *kgo.Record, ok bool) (last *kgo.Record) {
	if ok {
		p.done[r] = true
	}
	for len(p.queue) > 0 && p.done[p.queue[0]] {
		last = p.queue[0]
		delete(p.done, last)
		p.queue[0] = nil
		p.queue = p.queue[1:]
	}
	return last
}

func (d *dispatcher[T]) fail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failure == nil {
		d.failure = err
		d.hasFail.Store(true)
	}
}

func (d *dispatcher[T]) failed() error {
	if !d.hasFail.Load() {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failure
}

func (d *dispatcher[T]) busy() bool { return d.inFlight.Load() > 0 }

// giveWay prepares the lanes for a rebalance: records dispatched but not
// started are dropped (the session rewinds their partitions to the lowest
// unfinished record, so they are fetched again, by this member or the
// partition's next owner), and the handlers running are waited for. Then
// no record is in flight and every partition's progress starts afresh. It
// reports whether some record finished above one dropped or failed: the
// mark cannot cover it, so under ExactlyOnce the transaction that holds
// its output must abort (endTxn).
func (d *dispatcher[T]) giveWay() (gap bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen.Add(1)
	dropped := 0
	for _, l := range d.lanes {
		dropped += len(l.queue)
		clear(l.queue)
		l.queue = l.queue[:0]
	}
	d.inFlight.Add(int64(-dropped))
	d.changed.Broadcast()
	for d.inFlight.Load() > 0 {
		d.changed.Wait()
	}
	// What is left in each partition's progress is dropped or failed: the
	// rewind covers it.
	for _, p := range d.parts {
		if len(p.done) > 0 {
			gap = true
		}
	}
	clear(d.parts)
	return gap
}

// drain waits until every record dispatched has finished, for the end of
// a transaction (ExactlyOnce), which must not leave a record finished
// above one not started. Only the range goroutine dispatches, and it is
// the caller.
func (d *dispatcher[T]) drain() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.inFlight.Load() > 0 {
		d.changed.Wait()
	}
}

// closeLanes lets every lane finish what it holds and waits for it.
func (d *dispatcher[T]) closeLanes() {
	d.mu.Lock()
	for _, l := range d.lanes {
		l.closed = true
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	d.lanes = nil
	d.mu.Unlock()
	d.wg.Wait()
}

// busyPoll is how long a poll waits while records are in flight, so that a
// waiting rebalance is noticed soon after they finish.
const busyPoll = 50 * time.Millisecond

// setStopDispatch installs the hook of a concurrent Handle stream that
// stops its lanes before a rebalance (dispatcher.giveWay).
func (ss *session) setStopDispatch(stop func() bool, drain func()) {
	ss.lockFold()
	defer ss.mu.Unlock()
	ss.stopDispatch, ss.drainDispatch = stop, drain
}

// nextUnmarked takes the next record for a dispatcher, which marks records
// itself as they finish. While records are in flight (busy), polls are
// short and do not let a rebalance run; a waiting rebalance first stops the
// lanes (giveWay).
func (ss *session) nextUnmarked(ctx context.Context, done <-chan struct{}, busy bool) (*kgo.Record, error, popStatus) {
	if busy && ss.txn != nil && ss.txn.due.Load() {
		// Lanes busy when the transaction is due: end it once the
		// handlers running have finished (endTxn stops the lanes).
		ss.endTxnNow(true)
	}
	ss.lockFold()
	ss.inflight = ss.inflight[:0]
	var deadline time.Time
	if busy && ss.pos >= len(ss.buf) { // a poll is due: keep it short
		deadline = time.Now().Add(busyPoll)
	}
	r, fe, st := ss.popLocked(ctx, done, deadline, !busy)
	if r != nil {
		ss.last.noteYield(r)
	}
	ss.mu.Unlock()
	if st == popYield {
		if ss.emitFailed.Load() {
			ss.recoverEmits()
		} else {
			ss.rebalancePending.Store(false)
			ss.giveWay(ss.client())
		}
	}
	return r, fe, st
}

// markDone marks r, and so every record before it in its partition,
// processed.
func (ss *session) markDone(r *kgo.Record) {
	ss.lockFold()
	if ss.closing.Load() && ss.txn == nil { // under ExactlyOnce, as step
		ss.mu.Unlock()
		return
	}
	ss.markLocked(r)
	push := ss.dirty && ss.pushDue.Load()
	ss.mu.Unlock()
	if push {
		ss.pushMarks(ss.client())
	}
}

var errConcurrencyNeedsHandle = errors.New("PartitionConcurrency and KeyConcurrency apply to Handle streams only")
