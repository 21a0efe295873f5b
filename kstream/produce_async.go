package kstream

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// SendAsync produces a record to topic without waiting for its
// acknowledgement: it hands the record to the producer and returns, and
// done is called with the record's metadata, or an error, once the outcome
// is known. Use it to send many records quickly (the producer batches
// them), then Flush to wait for all of them; use Send to wait for each.
//
// done is called exactly once per SendAsync, with every outcome:
//
//   - ErrEngineNotStarted before Start and after Stop has finished;
//   - ctx's error, naming the topic, when ctx ends before the record is
//     acknowledged (it may still be written);
//   - an error naming the topic when the record could not be written
//     (franz-go's error wrapped, so errors.Is works);
//   - the record's metadata and a nil error when the brokers acknowledged it.
//
// ErrEngineNotStarted is given to done on the calling goroutine, before
// SendAsync returns. ctx's end is given as soon as ctx ends, on a goroutine
// that context.AfterFunc starts (one for all the records of ctx's Done
// channel, in the order they were sent), even when the record waits
// behind records whose contexts cannot end (franz-go fails a batch of
// records by the context of its first record only). Every other outcome is
// given on a goroutine of franz-go's that calls back for all records of the
// engine one after the other, so done must be quick and must not block: in
// particular it must not call Send, SendBatch, Flush or Stop, which wait on
// that goroutine (to send from done, start a goroutine). As outcomes come
// on these three kinds of goroutine, done calls for different records may
// run at the same time: a done function shared by several sends must be
// safe for concurrent use. For the records
// of one partition, done calls come in the order of acknowledgement, which
// is the order of the SendAsync calls; a record whose ctx ends first fails
// when it ends, ahead of records sent before it.
//
// done may be nil: then a failure is logged at error level with the topic
// and the error, so that nothing fails silently. The engine's metrics count
// each record sent and each one that failed, as for Send (a record refused
// with ErrEngineNotStarted is not counted: a stopped engine has no series).
//
// SendAsync blocks while the producer holds as many records as it may
// buffer (DefaultMaxBufferedRecords, 10 000, unless ClientOptions sets
// kgo.MaxBufferedRecords) until there is room or ctx ends. During a stop,
// handlers finishing their records may still send: Stop flushes the
// producer after the streams have stopped, and every done function has
// returned when Stop returns (records still unsent at Stop's deadline fail
// with franz-go's ErrClientClosed; Stop waits up to five seconds more for
// their done functions, and reports any still running).
//
// The options are those of Send. value, the key and the headers must not be
// modified until done is called; when done is given ctx's error, the
// producer may still read them (as after Send returned ctx's error), so do
// not modify them then either.
func (e *Engine) SendAsync(ctx context.Context, topic string, value []byte, done func(RecordMetadata, error), opts ...SendOption) {
	e.sendAsync(ctx, topic, nil, value, done, opts)
}

func (e *Engine) sendAsync(ctx context.Context, topic string, key, value []byte, done func(RecordMetadata, error), opts []SendOption) {
	producer, seq, err := e.acquireSend() // counted until done has returned
	if err != nil {
		e.sendFailed(topic, done, err, false)
		return
	}
	ctx = orBackground(ctx)
	gen := e.gone.generation()
	if err := e.gone.forget(ctx, e, producer, topic); err != nil {
		defer e.inflight.finish()
		e.noteSent(topic, 1, err)
		e.sendFailed(topic, done, fmt.Errorf("kstream: send to topic %q: %w", topic, err), false)
		return
	}
	op := e.asyncOps.Load().get(e)
	op.prepare(ctx, topic, key, value, opts)
	e.cfg.tracing.injectTrace(ctx, &op.rec)
	op.done, op.gen, op.seq = done, gen, seq
	if op.topic != topic {
		op.topic = topic
	}
	if ctx.Done() != nil {
		e.watchOp(ctx, op) // async_watch.go
	}
	producer.Produce(ctx, &op.rec, op.promise)
}

// finishAsync is a SendAsync record's promise.
func (op *sendOp) finishAsync(r *kgo.Record, err error) {
	if a := op.ahead; a != nil { // see asyncOpPool
		prefetchOp(a)
		op.ahead = nil
	}
	if !op.claim() {
		// The record's context ended first, and its watch has failed
		// it: its done is not ours to call. Waiting until the watch
		// has called it keeps Flush's promise that every done function
		// has returned (done functions are quick; see SendAsync). The
		// watch has counted the record finished: op is left to the
		// collector (asyncOpPool).
		<-op.ch
		op.rec, op.done = kgo.Record{}, nil // nothing of the caller's is kept
		op.pool.forget(op)
		return
	}
	e, done, topic, gen := op.eng, op.done, op.topic, op.gen
	defer e.inflight.finish()
	var md RecordMetadata
	if err == nil {
		md = metadataOf(r)
	}
	op.release()
	e.noteSent(topic, 1, err)
	e.gone.note(e, topic, err, gen)
	if err != nil {
		e.sendFailed(topic, done, fmt.Errorf("kstream: send to topic %q: %w", topic, err), false)
		return
	}
	if done != nil {
		done(md, nil)
	}
}

// sendFailed reports a SendAsync failure to done, or logs it when done is
// nil; count says whether the failure is still to be counted in the
// metrics (it is not on an engine that is not running, which has no
// series).
func (e *Engine) sendFailed(topic string, done func(RecordMetadata, error), err error, count bool) {
	if count {
		if _, notRunning := e.activeProducer(); notRunning == nil {
			e.noteSent(topic, 1, err)
		}
	}
	if done != nil {
		done(RecordMetadata{}, err)
		return
	}
	e.log.Error("send failed", "topic", topic, "err", err)
}

// Flush waits until every record sent so far (with SendAsync, and by
// concurrent Send and SendBatch calls) has been acknowledged or has failed,
// and their done functions have returned. Records sent while it waits may
// be waited for too. It returns ctx's error if ctx ends first, and
// ErrEngineNotStarted before Start and after Stop has finished (Stop flushes
// by itself).
func (e *Engine) Flush(ctx context.Context) error {
	producer, err := e.activeProducer()
	if err != nil {
		return err
	}
	if err := producer.Flush(ctx); err != nil {
		return fmt.Errorf("kstream: engine %q: flush: %w", e.name, err)
	}
	return nil
}

// SendAsync encodes v and sends it with the given key (nil for none), as
// Engine.SendAsync does. A value that fails to encode is not sent: done is
// called with the encoding error, on the calling goroutine before SendAsync
// returns (and, when done is nil, the error is logged and counted as a
// failed send). So is the error of a producer that lacks an engine, a topic
// or an encoder (see NewProducer), which is logged but not counted.
func (p *Producer[T]) SendAsync(ctx context.Context, key []byte, v T, done func(RecordMetadata, error), opts ...SendOption) {
	if err := p.check(); err != nil {
		if done != nil {
			done(RecordMetadata{}, err)
			return
		}
		log := slog.Default()
		if p != nil && p.eng != nil {
			log = p.eng.log
		}
		log.Error("send failed", "err", err)
		return
	}
	b, err := p.enc.Encode(v)
	if err != nil {
		err = fmt.Errorf("kstream: encode value for topic %q: %w", p.topic, err)
		// Counted only when done is nil, where it would otherwise show
		// in the log alone; Send does not count encoding errors either.
		p.eng.sendFailed(p.topic, done, err, done == nil)
		return
	}
	p.eng.sendAsync(ctx, p.topic, key, b, done, opts)
}

// sendDrainTimeout bounds how long Stop waits, after closing the producer,
// for sends in progress and for the done functions of the records it failed.
// A variable only so that a test can shorten it.
var sendDrainTimeout = 5 * time.Second

// sendCount counts the sends in progress and the SendAsync records whose
// done function has not returned: started less finished. The two counters
// are on cache lines of their own, since sends and franz-go's callbacks run
// on different goroutines: one counter written by both cost a tight loop of
// SendAsync a cache line moved between CPUs twice per record. While wait
// waits, finish sends idle a token when it sees the count at zero; a stale
// token only makes wait look again.
type sendCount struct {
	_        [64]byte
	started  atomic.Int64
	_        [64]byte
	finished atomic.Int64
	_        [64]byte
	waiting  atomic.Int32 // goroutines in wait
	idle     chan struct{}
	_        [64]byte // what follows in Engine is written by the sends
}

// add counts a send in, and returns how many were counted in so far: a
// SendAsync record's place in the engine's order of sends.
func (c *sendCount) add() int64 { return c.started.Add(1) }

func (c *sendCount) finish() {
	f := c.finished.Add(1)
	// finished never passes started, so if started is f now, the count
	// is zero now. wait sets waiting before it looks at the counters:
	// either it sees this finish, or this finish sees it waiting.
	if c.waiting.Load() > 0 && c.started.Load() == f {
		select {
		case c.idle <- struct{}{}:
		default:
		}
	}
}

// zero reports whether the count is zero: finished is read first, so
// finished as read, equal to started as read after it, says both were equal
// when started was read.
func (c *sendCount) zero() bool {
	f := c.finished.Load()
	return c.started.Load() == f
}

// wait reports whether the count reached zero within timeout.
func (c *sendCount) wait(timeout time.Duration) bool {
	c.waiting.Add(1)
	defer c.waiting.Add(-1)
	if c.zero() {
		return true
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for !c.zero() {
		select {
		case <-c.idle:
		case <-t.C:
			return c.zero()
		}
	}
	return true
}
