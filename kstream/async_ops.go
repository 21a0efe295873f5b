package kstream

import "sync"

// asyncOpPool holds the SendAsync sendOps of an engine's producer (a Start
// makes a new one, so that the late promises of a producer that Stop gave
// up waiting for keep theirs): every one of them, free or in flight, in
// all, which a context's watch scans when the context ends
// (async_watch.go), and the free ones in batches.
//
// A sendOp is taken by a send, on any goroutine, and given back by franz-go's
// promise for its record, on the goroutine that calls the producer's
// promises one after the other (franz-go calls all of a client's promises
// serially). The two sides hand sendOps over in batches of asyncOpBatch, so
// that neither takes a lock per record that the other takes too, and a send
// takes a sendOp from an array rather than by following links: a linked
// list of sendOps freed on the other CPU cost a tight loop of SendAsync a
// cache miss per record just to find the next one.
//
// The sendOps a send takes were last written on the callback's CPU, and
// the ones a callback gives back on the send's: on the AMD EPYC the
// benchmarks ran on, a profile of a tight loop of SendAsync put about 110
// ns per record on the write of the record into its sendOp and the first
// load after it, most likely the wait for those cache lines. So each side
// asks for the lines of a sendOp it will soon write before it needs them
// (prefetchOp): a send for the sendOp prefetchAhead places down its
// batch, a callback for the one its send expected to be taken two sends
// later (sendOp.ahead), which, sends being taken in order and a
// partition's records acknowledged in order, is often the next callback's
// but one. That took the loop from 0.90-0.92x to 1.01-1.03x franz-go's
// (docs/performance.md).
// (When sends are slower than acknowledgements, a callback may take lines
// from a sendOp still free; only the tight loop was measured.)
//
// Garbage collections do not empty it: the producer holds up to
// MaxBufferedRecords records (DefaultMaxBufferedRecords unless ClientOptions
// says otherwise), and a sync.Pool, emptied by every other collection, made
// SendAsync allocate its working set again and again (2.5 allocations per
// record more than franz-go at 1 KiB in benchcompare). It keeps at most
// maxFreeAsyncOps sendOps in full batches (about 2.5 MB); beyond that a
// batch is left to the collector, and so is a sendOp whose context's watch
// failed its record (finishAsync).
type asyncOpPool struct {
	// Sends take from free, under mu, and refill it with a full batch.
	// (Each side's fields are on cache lines of their own.)
	_    [64]byte
	mu   sync.Mutex
	free []*sendOp
	_    [64]byte

	// Promises give back into filling, without a lock: only the
	// producer's promises, which franz-go calls one after the other, touch
	// it.
	filling []*sendOp
	_       [64]byte

	// Full batches and empty arrays, under hmu, which each side takes once
	// per batch.
	hmu   sync.Mutex
	full  [][]*sendOp
	empty [][]*sendOp
	kept  int // sendOps in full

	regMu sync.Mutex
	all   []*sendOp // every sendOp not left to the collector; sendOp.reg is its index
	_     [64]byte
}

const (
	prefetchAhead   = 4 // sends: how far down its batch a send prefetches
	callbackAhead   = 2 // sends: which later send's sendOp a callback prefetches (sendOp.ahead)
	asyncOpBatch    = 256
	maxFreeAsyncOps = DefaultMaxBufferedRecords
)

// get returns a free sendOp for a send, making one if none is free.
func (p *asyncOpPool) get(e *Engine) *sendOp {
	p.mu.Lock()
	if len(p.free) == 0 {
		p.hmu.Lock()
		if n := len(p.full); n > 0 {
			if cap(p.free) > 0 {
				p.empty = append(p.empty, p.free)
			}
			p.free = p.full[n-1]
			p.full[n-1] = nil
			p.full = p.full[:n-1]
			p.kept -= len(p.free)
		}
		p.hmu.Unlock()
	}
	if n := len(p.free); n > 0 {
		op := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		if n > prefetchAhead {
			prefetchOp(p.free[n-1-prefetchAhead])
		}
		var ahead *sendOp // cleared by op's callback
		if n > callbackAhead {
			ahead = p.free[n-1-callbackAhead]
		}
		op.ahead = ahead
		p.mu.Unlock()
		return op
	}
	p.mu.Unlock()
	op := &sendOp{eng: e, pool: p, ch: make(chan error, 1)}
	op.promise = op.finishAsync
	p.regMu.Lock()
	op.reg = len(p.all)
	p.all = append(p.all, op)
	p.regMu.Unlock()
	return op
}

// put gives op back. Only the producer's promises call it.
func (p *asyncOpPool) put(op *sendOp) {
	if p.filling == nil {
		p.filling = make([]*sendOp, 0, asyncOpBatch)
	}
	p.filling = append(p.filling, op)
	if len(p.filling) < asyncOpBatch {
		return
	}
	p.hmu.Lock()
	if p.kept+len(p.filling) > maxFreeAsyncOps {
		p.hmu.Unlock()
		p.forget(p.filling...)
		clear(p.filling)
		p.filling = p.filling[:0]
		return
	}
	p.full = append(p.full, p.filling)
	p.kept += len(p.filling)
	p.filling = nil
	if n := len(p.empty); n > 0 {
		p.filling = p.empty[n-1]
		p.empty[n-1] = nil
		p.empty = p.empty[:n-1]
	}
	p.hmu.Unlock()
}

// forget takes ops out of the registry, to be left to the collector.
func (p *asyncOpPool) forget(ops ...*sendOp) {
	p.regMu.Lock()
	defer p.regMu.Unlock()
	for _, op := range ops {
		last := len(p.all) - 1
		moved := p.all[last]
		p.all[op.reg] = moved
		moved.reg = op.reg
		p.all[last] = nil
		p.all = p.all[:last]
	}
}

// each calls f with every sendOp of the registry, under its lock: f must
// be quick and must not call back into the pool.
func (p *asyncOpPool) each(f func(*sendOp)) {
	p.regMu.Lock()
	defer p.regMu.Unlock()
	for _, op := range p.all {
		f(op)
	}
}
