package kstream

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// A SendAsync record whose context ends before franz-go calls back for it
// is failed at once with the context's error by its context's watch:
// franz-go fails a batch by the context of its first record only, so a
// record behind one whose context cannot end would otherwise wait for the
// brokers however long they take.
//
// An engine has a live watch per Done channel its SendAsync records are
// sent under (contexts that end together share one: a handler's context
// with values added, for instance): a ctxWatch, made for the first record
// of its channel, which registers one context.AfterFunc. A send attaches
// its sendOp by writing the watch's id into the sendOp's state; the watch
// a send found last is kept, so that a loop of sends under one context
// looks nothing up. The watch does not list its records: when its context
// ends, it finds them among the sendOps of the engine's pool
// (asyncOpPool.all), or, if it has had no more than watchSlots of them, in
// its slots. It fails each one that franz-go has not called back for,
// taking it with a compare-and-swap on the sendOp's state, as the callback
// does.
//
// A send and franz-go's callback for an earlier record run at the same
// time on different CPUs, and a tight loop of sends is as fast as the
// sending goroutine: so a send writes nothing, beyond its own sendOp, that
// the callback or another send writes (a list of records per watch, or a
// count of them, cost a tight loop of SendAsync a third of its time), and
// the callback does one compare-and-swap on its sendOp.
//
// A watch is marked dead before it looks for its records, and a send looks
// whether its watch is dead after attaching: either the watch finds the
// record, or the send sees it dead and attaches the record to another
// watch (whose AfterFunc, if the context has ended, runs at once).
//
// Every watchIdle, while the engine has watches, a sweep finds the watches
// of the records in flight. A live watch that a sweep finds with none is
// retired by the next sweep (dead: sends make a new one), and stopped (its
// AfterFunc undone) by the first sweep after that which finds none of its
// records in flight. A retired watch may still have records when its
// context ends, as may the live watch made after it for the same channel:
// the first of them to run fails the records of both, in the order they
// were sent. Stop stops them all.
type asyncWatches struct {
	mu      sync.Mutex
	live    sync.Map       // Done channel → its *ctxWatch, none dead; written under mu, read by sends without it
	retired []*ctxWatch    // dead, perhaps with records in flight
	idle    []*ctxWatch    // live ones the last sweep found idle
	exiting []*ctxWatch    // stopped by a sweep after their AfterFunc began
	ids     uint64         // the last watch's id
	timer   *time.Timer    // the next sweep; nil while there is no watch
	pending sync.WaitGroup // sweeps scheduled or running

	last atomic.Pointer[ctxWatch] // the watch a send found last
}

// watchSlots is how many records a watch keeps itself: a context that ends
// after a few records (a request's, a per-record timeout) fails them
// without scanning the pool.
const watchSlots = 4

// watchIdle is how often the engine's watches are swept. A variable only so
// that a test can shorten it.
var watchIdle = 50 * time.Millisecond

// ctxWatch is a watch of one Done channel.
type ctxWatch struct {
	e    *Engine
	pool *asyncOpPool // the sendOps of the engine's producer when the watch was made
	ch   <-chan struct{}
	ctx  context.Context // the context of the first record, whose Err is the channel's
	stop func() bool     // the AfterFunc's

	id    uint64       // in the states of the sendOps attached to it
	dead  atomic.Bool  // retired or expired: sends attach to another watch
	sends atomic.Int32 // records attached, counted up to watchSlots+1
	many  atomic.Bool  // more than watchSlots attached: the pool is scanned
	slots [watchSlots]atomic.Pointer[sendOp]

	finished bool          // expired or stopped; under asyncWatches.mu
	exited   chan struct{} // closed when its AfterFunc, once begun, has returned
}

// A sendOp's state, one word so that one compare-and-swap decides who has a
// watched record's outcome: 0 while the sendOp is free or its record is
// not watched; opAttached and the watch's id while the record is in flight
// under a watch; opExpired added once the watch has taken it. Ids are not
// reused, so a state names one watch.
const (
	opAttached = 1 << iota
	opExpired

	opIDShift = 2
)

// attached reports whether state s is that of a record in flight under the
// watch with id, and not taken by it.
func attached(s, id uint64) bool { return s == id<<opIDShift|opAttached }

// claim is the callback's: it reports whether the outcome of op's record
// is the callback's to give, taking it from the record's watch if it has
// one. A sendOp that is not attached is the callback's alone.
func (op *sendOp) claim() bool {
	s := op.state.Load()
	if s&opAttached == 0 {
		return true
	}
	return s&opExpired == 0 && op.state.CompareAndSwap(s, 0)
}

// watchOp attaches op, about to be produced under ctx, to the watch of
// ctx's Done channel, making the watch if there is none.
func (e *Engine) watchOp(ctx context.Context, op *sendOp) {
	ws := &e.watches
	ch := ctx.Done()
	var s uint64 // op's state once attached
	for {
		w := ws.last.Load()
		if w == nil || w.ch != ch || w.dead.Load() {
			w = ws.find(e, op.pool, ctx, ch)
		}
		if !w.many.Load() {
			if i := w.sends.Add(1); i <= watchSlots {
				w.slots[i-1].Store(op)
			} else {
				w.many.Store(true)
			}
		}
		to := w.id<<opIDShift | opAttached
		if s == 0 {
			// A free sendOp's state is 0: one atomic operation
			// attaches it, without reading it first (its cache
			// line comes from the callback's CPU).
			op.state.Or(to)
		} else if !op.state.CompareAndSwap(s, to) {
			return // the dead watch has taken it: its context has ended
		}
		s = to
		if !w.dead.Load() {
			return
		}
	}
}

// find returns the live watch of ch, making it if there is none.
func (ws *asyncWatches) find(e *Engine, pool *asyncOpPool, ctx context.Context, ch <-chan struct{}) *ctxWatch {
	if v, ok := ws.live.Load(ch); ok {
		if w := v.(*ctxWatch); !w.dead.Load() {
			// Cached only if the one cached is gone: sends under
			// contexts of their own would otherwise all write it.
			if l := ws.last.Load(); l == nil || l.dead.Load() {
				ws.last.Store(w)
			}
			return w
		}
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if v, ok := ws.live.Load(ch); ok { // made meanwhile
		w := v.(*ctxWatch)
		ws.last.Store(w)
		return w
	}
	ws.ids++
	w := &ctxWatch{e: e, pool: pool, ch: ch, ctx: ctx, id: ws.ids, exited: make(chan struct{})}
	ws.live.Store(ch, w)
	// If ctx has ended, expire runs at once on a goroutine of its own, and
	// waits for ws.mu.
	w.stop = context.AfterFunc(ctx, w.expire)
	if ws.timer == nil {
		ws.pending.Add(1)
		ws.timer = time.AfterFunc(watchIdle, e.sweepWatches)
	}
	ws.last.Store(w)
	return w
}

// eachLive calls f with every live watch. ws.mu is held.
func (ws *asyncWatches) eachLive(f func(*ctxWatch)) {
	ws.live.Range(func(_, v any) bool {
		f(v.(*ctxWatch))
		return true
	})
}

// retireLocked marks w dead, so that sends make another watch for its
// channel. ws.mu is held.
func (ws *asyncWatches) retireLocked(w *ctxWatch) {
	w.dead.Store(true)
	ws.live.CompareAndDelete(w.ch, w)
	ws.last.CompareAndSwap(w, nil)
}

// expire runs when w's context ends: it fails every record still in flight
// under w, or under another watch of its channel, in the order they were
// sent, with the context's error.
func (w *ctxWatch) expire() {
	defer close(w.exited)
	e := w.e
	ws := &e.watches
	ws.mu.Lock()
	if w.finished {
		ws.mu.Unlock()
		return
	}
	same := []*ctxWatch{w}
	if v, ok := ws.live.Load(w.ch); ok && v.(*ctxWatch) != w {
		same = append(same, v.(*ctxWatch))
	}
	for _, r := range ws.retired {
		if r.ch == w.ch && r != w && !r.finished {
			same = append(same, r)
		}
	}
	for _, x := range same {
		x.finished = true
		ws.retireLocked(x)
	}
	ws.mu.Unlock()

	var ops []*sendOp
	for _, x := range same {
		ops = x.take(ops)
	}
	slices.SortFunc(ops, func(a, b *sendOp) int { return cmp.Compare(a.seq, b.seq) })
	cause := w.ctx.Err()
	for _, op := range ops {
		done, topic := op.done, op.topic
		err := fmt.Errorf("kstream: send to topic %q: %w", topic, cause)
		e.noteSent(topic, 1, err)
		e.sendFailed(topic, done, err, false)
		e.inflight.finish() // done has returned
		op.ch <- nil        // the callback may go on
	}
	for _, x := range same[1:] {
		if !x.stop() {
			<-x.exited // begun: it finds itself finished
		}
	}
}

// take takes the records of w in flight from franz-go's callback, appending
// them to ops. w is dead.
func (w *ctxWatch) take(ops []*sendOp) []*sendOp {
	claim := func(op *sendOp) {
		if s := op.state.Load(); attached(s, w.id) && op.state.CompareAndSwap(s, s|opExpired) {
			ops = append(ops, op)
		}
	}
	if n := w.sends.Load(); n <= watchSlots {
		for i := range n {
			if op := w.slots[i].Load(); op != nil {
				claim(op)
			}
		}
	} else {
		w.pool.each(claim)
	}
	return ops
}

// sweepWatches is the sweep of e's watches (see asyncWatches).
func (e *Engine) sweepWatches() {
	ws := &e.watches
	defer ws.pending.Done()
	ws.mu.Lock()
	if ws.timer == nil { // stopped
		ws.mu.Unlock()
		return
	}
	for _, w := range ws.idle {
		if !w.finished && !w.dead.Load() {
			ws.retireLocked(w)
			ws.retired = append(ws.retired, w)
		}
	}
	clear(ws.idle)
	ws.idle = ws.idle[:0]
	pools := make(map[*asyncOpPool]bool)
	ws.eachLive(func(w *ctxWatch) { pools[w.pool] = true })
	for _, w := range ws.retired {
		pools[w.pool] = true
	}
	ws.mu.Unlock()

	// After the retired watches were marked dead: a record attached to
	// one of them since is either seen here or moved by its send.
	inFlight := make(map[uint64]bool)
	for p := range pools {
		p.each(func(op *sendOp) {
			if s := op.state.Load(); s&(opAttached|opExpired) == opAttached {
				inFlight[s>>opIDShift] = true
			}
		})
	}

	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.timer == nil {
		return
	}
	retired := ws.retired[:0]
	for _, w := range ws.retired {
		switch {
		case w.finished:
		case inFlight[w.id]:
			retired = append(retired, w)
		default:
			w.finished = true
			if !w.stop() { // expire has begun all the same: it finds w finished
				ws.exiting = append(ws.exiting, w)
			}
		}
	}
	exiting := ws.exiting[:0]
	for _, w := range ws.exiting {
		select {
		case <-w.exited:
		default:
			exiting = append(exiting, w)
		}
	}
	clear(ws.exiting[len(exiting):])
	ws.exiting = exiting
	clear(ws.retired[len(retired):])
	ws.retired = retired
	live := false
	ws.eachLive(func(w *ctxWatch) {
		live = true
		if !inFlight[w.id] {
			ws.idle = append(ws.idle, w)
		}
	})
	if !live && len(ws.retired) == 0 {
		ws.timer = nil
		return
	}
	ws.pending.Add(1)
	ws.timer.Reset(watchIdle)
}

// stopWatches stops every watch of e and the sweeps, and waits for a sweep,
// and the AfterFunc of a watch, that has begun. Stop calls it once no
// record is in flight.
func (e *Engine) stopWatches() {
	ws := &e.watches
	ws.mu.Lock()
	var begun []*ctxWatch
	stop := func(w *ctxWatch) {
		w.dead.Store(true)
		w.finished = true
		if !w.stop() {
			begun = append(begun, w)
		}
	}
	ws.eachLive(stop)
	for _, w := range ws.retired {
		if !w.finished {
			stop(w)
		}
	}
	begun = append(begun, ws.exiting...)
	ws.live.Clear()
	ws.retired, ws.idle, ws.exiting = nil, nil, nil
	ws.last.Store(nil)
	if ws.timer != nil && ws.timer.Stop() {
		ws.pending.Done() // it will not run
	}
	ws.timer = nil
	ws.mu.Unlock()
	ws.pending.Wait()
	for _, w := range begun {
		<-w.exited
	}
}
