package kstream

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/internal/nopanic"
)

// RecordMetadata is where a sent record was written.
type RecordMetadata struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
}

// SendOption sets a property of a record to send: its key (WithKey), a
// header (WithHeader), its partition (ToPartition) or its timestamp
// (WithTimestamp). It is a value that kstream reads when it builds the
// record, never a function that sees the record, so the options of one send
// cannot undo each other: ToPartition holds whatever comes after it, and a
// later WithKey or WithTimestamp replaces an earlier one. The zero SendOption
// sets nothing. Building options allocates nothing, so a send may build them
// on every call.
type SendOption struct {
	field sendField
	name  string // WithHeader's key
	bytes []byte // WithKey's key, WithHeader's value
	part  int32
	time  time.Time
}

type sendField uint8

const (
	sendNothing sendField = iota
	sendKey
	sendHeader
	sendPartition
	sendTimestamp
)

// WithKey sets the record's key. Records with the same key go to the same
// partition (Kafka's murmur2 hash), unless ToPartition says otherwise.
func WithKey(key []byte) SendOption {
	return SendOption{field: sendKey, bytes: key}
}

// WithHeader adds a header to the record. Repeating it adds headers, in the
// order given.
func WithHeader(key string, value []byte) SendOption {
	return SendOption{field: sendHeader, name: key, bytes: value}
}

// ToPartition sends the record to the given partition, overriding the
// partitioner. A partition the topic does not have fails the send.
func ToPartition(p int32) SendOption {
	return SendOption{field: sendPartition, part: p}
}

// WithTimestamp sets the record's timestamp, overriding the time of sending.
func WithTimestamp(t time.Time) SendOption {
	return SendOption{field: sendTimestamp, time: t}
}

// Message is one record of a batch send (SendBatch).
//
// Partition is a pointer because partition 0 is a partition like any other:
// a nil Partition leaves the record to the partitioner (the key's hash, as
// for Send), and a non-nil one sends it to that partition, as ToPartition
// does: Message[T]{Value: v, Partition: new(int32(2))}. A zero Timestamp
// means the time of sending, as for a send without WithTimestamp.
type Message[T any] struct {
	Key       []byte
	Value     T
	Headers   []Header
	Partition *int32    // nil: chosen by the partitioner
	Timestamp time.Time // zero: the time of sending
}

// Send produces a record to topic and waits until the brokers acknowledge
// it. It honours ctx: it returns by ctx's deadline even if a broker stops
// answering (the record may then still be written: retrying it can
// duplicate it; and since the producer may still read value, key and
// headers then, do not modify them after Send returned ctx's error). It
// returns ErrEngineNotStarted before Start and once Stop has stopped the
// streams; during a stop, handlers finishing their records may still send.
// To send without waiting for each acknowledgement, use SendAsync.
//
// The engine's producer does not linger (franz-go's default is 10ms): a
// record is sent as soon as no request to its partition is in flight, so
// Send takes one round trip. With ClientOptions(kgo.ProducerLinger(d)),
// each Send may wait up to d for more records to batch with, as a send
// followed by a wait does with Kafka's Java client.
func (e *Engine) Send(ctx context.Context, topic string, value []byte, opts ...SendOption) (RecordMetadata, error) {
	return e.send(ctx, topic, nil, value, opts)
}

// send is Send with a key set before the options (which may replace it).
func (e *Engine) send(ctx context.Context, topic string, key, value []byte, opts []SendOption) (RecordMetadata, error) {
	producer, err := e.acquireProducer()
	if err != nil {
		return RecordMetadata{}, err
	}
	defer e.inflight.finish()
	ctx = orBackground(ctx)
	gen := e.gone.generation()
	if err := e.gone.forget(ctx, e, producer, topic); err != nil {
		e.noteSent(topic, 1, err)
		return RecordMetadata{}, fmt.Errorf("kstream: send to topic %q: %w", topic, err)
	}
	op := syncOps.Get().(*sendOp)
	op.prepare(ctx, topic, key, value, opts)
	e.cfg.tracing.injectTrace(ctx, &op.rec)
	// Produce, and a wait of our own rather than ProduceSync's: it
	// allocates nothing, and it returns at ctx's end even when the record
	// is not the first of its batch (franz-go fails a batch by the context
	// of its first record only). The producer does not linger (see
	// Engine.Start), so nothing waits for more records to batch.
	producer.Produce(ctx, &op.rec, op.promise)
	select {
	case err = <-op.ch:
	case <-ctx.Done():
		select {
		case err = <-op.ch: // both were ready
		default:
			// franz-go still has the record and calls back later: op
			// is left to it, and to the garbage collector after that.
			// (It may still write the record, reading value and key.)
			e.noteSent(topic, 1, ctx.Err())
			return RecordMetadata{}, fmt.Errorf("kstream: send to topic %q: %w", topic, ctx.Err())
		}
	}
	md := metadataOf(&op.rec)
	op.release()
	e.noteSent(topic, 1, err)
	e.gone.note(e, topic, err, gen)
	if err != nil {
		return RecordMetadata{}, fmt.Errorf("kstream: send to topic %q: %w", topic, err)
	}
	return md, nil
}

// SendBatch produces records to topic and waits until all are
// acknowledged. It returns their metadata in the order of msgs, or the
// first error (the other records may have been written). It honours ctx as
// Send does: it returns ctx's error by ctx's deadline even if a broker stops
// answering (records may then still be written, and the producer may still
// read the messages' values, keys and headers: do not modify them after
// SendBatch returned ctx's error). A message's Partition and Timestamp
// work as ToPartition and WithTimestamp do.
func (e *Engine) SendBatch(ctx context.Context, topic string, msgs ...Message[[]byte]) ([]RecordMetadata, error) {
	producer, err := e.acquireProducer()
	if err != nil {
		return nil, err
	}
	defer e.inflight.finish()
	ctx = orBackground(ctx)
	gen := e.gone.generation()
	if err := e.gone.forget(ctx, e, producer, topic); err != nil {
		e.noteSent(topic, len(msgs), err)
		return nil, fmt.Errorf("kstream: send batch to topic %q: %w", topic, err)
	}
	if len(msgs) == 0 {
		return []RecordMetadata{}, nil
	}
	// One sendCtx for the records the partitioner places, which tells it
	// at once that they have no partition of their own, and one for those
	// that do.
	placed := &sendCtx{Context: ctx}
	var manual *sendCtx
	recs := make([]kgo.Record, len(msgs))
	ptrs := make([]*kgo.Record, len(msgs))
	for i := range msgs {
		// Field by field: recs is zeroed already, and a composite
		// literal would write all of the record again.
		m, r := &msgs[i], &recs[i]
		r.Topic, r.Key, r.Value, r.Headers, r.Timestamp, r.Context = topic, m.Key, m.Value, m.Headers, m.Timestamp, placed
		if m.Partition != nil {
			if manual == nil {
				manual = &sendCtx{Context: ctx, manual: true}
			}
			r.Partition, r.Context = *m.Partition, manual
		}
		e.cfg.tracing.injectTrace(ctx, r)
		ptrs[i] = r
	}
	// franz-go fails a batch by the context of its first record only, so
	// records queued behind one whose context has no deadline would wait
	// for the brokers for as long as they take. ProduceSync (which also
	// sends at once what a linger would hold back) runs on a goroutine of
	// its own, counted in e.inflight so that Stop waits for it, and
	// SendBatch waits for it or for ctx, whichever comes first.
	results := make(chan kgo.ProduceResults, 1)
	e.inflight.add() // SendBatch holds one too: the count cannot reach zero in between
	go func() {
		defer e.inflight.finish()
		res := producer.ProduceSync(ctx, ptrs...)
		for _, pr := range res {
			if pr.Err != nil {
				e.gone.note(e, topic, pr.Err, gen)
			}
		}
		results <- res
	}()
	var res kgo.ProduceResults
	select {
	case res = <-results:
	case <-ctx.Done():
		select {
		case res = <-results: // both were ready
		default:
			// The batch failed as far as the caller knows, so all of
			// it counts as failed, as Send counts its record.
			e.noteSent(topic, len(msgs), ctx.Err())
			return nil, fmt.Errorf("kstream: send batch to topic %q: %w", topic, ctx.Err())
		}
	}
	failed := 0
	for _, pr := range res {
		if pr.Err != nil {
			failed++
		}
	}
	if m := e.cfg.metrics; m != nil {
		m.sent.WithLabelValues(e.name, topic).Add(float64(len(res) - failed))
		m.sendErrors.WithLabelValues(e.name, topic).Add(float64(failed))
	}
	if err := res.FirstErr(); err != nil {
		return nil, fmt.Errorf("kstream: send batch to topic %q: %w", topic, err)
	}
	// res is in the order of acknowledgement, which differs from the
	// order of msgs when the records went to several partitions.
	out := make([]RecordMetadata, len(recs))
	for i := range recs {
		out[i] = metadataOf(&recs[i])
	}
	return out, nil
}

func (e *Engine) noteSent(topic string, n int, err error) {
	m := e.cfg.metrics
	if m == nil {
		return
	}
	if err != nil {
		m.sendErrors.WithLabelValues(e.name, topic).Add(float64(n))
	} else {
		m.sent.WithLabelValues(e.name, topic).Add(float64(n))
	}
}

func (e *Engine) activeProducer() (*kgo.Client, error) {
	if p := e.sendable.Load(); p != nil {
		return p, nil
	}
	return nil, ErrEngineNotStarted
}

// setSendableLocked sets e.sendable from the engine's state: its producer
// while the engine is starting, running or stopping and sends are not
// closed. e.mu is held.
func (e *Engine) setSendableLocked() {
	var p *kgo.Client
	switch e.state {
	case engineStarting, engineRunning, engineStopping:
		if e.producer != nil && !e.sendsClosed {
			p = e.producer
		}
	}
	e.sendable.Store(p)
}

// acquireProducer is activeProducer for a send: the send is counted in
// e.inflight (the caller calls e.inflight.finish when done), and it is
// counted before the engine's state is read, so that Stop, which closes
// sends and then waits for the count, either refuses the send or waits
// for it.
func (e *Engine) acquireProducer() (*kgo.Client, error) {
	producer, _, err := e.acquireSend()
	return producer, err
}

// acquireSend is acquireProducer that also returns the send's place in the
// engine's order of sends.
func (e *Engine) acquireSend() (*kgo.Client, int64, error) {
	seq := e.inflight.add()
	producer, err := e.activeProducer()
	if err != nil {
		e.inflight.finish()
		return nil, 0, err
	}
	return producer, seq, nil
}

func metadataOf(r *kgo.Record) RecordMetadata {
	return RecordMetadata{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp}
}

// Producer sends values of type T to one topic through an engine, encoding
// them with its encoder. Its methods are safe for concurrent use.
type Producer[T any] struct {
	eng   *Engine
	topic string
	enc   codec.Encoder[T]
}

// NewProducer returns a producer of T values to topic through eng. It does
// no I/O and cannot fail: a producer made with a nil engine, an empty topic
// or a nil encoder returns an error wrapping ErrInvalidOption that names
// what is missing from every Send and SendBatch, and gives it to the done
// function of every SendAsync.
func NewProducer[T any](eng *Engine, topic string, enc codec.Encoder[T]) *Producer[T] {
	return &Producer[T]{eng: eng, topic: topic, enc: enc}
}

// check returns nil if p can send, and otherwise an error naming what it
// lacks. It is checked on every send rather than in NewProducer, whose
// signature has no error, and so covers a nil or zero Producer too.
func (p *Producer[T]) check() error {
	if p != nil && p.eng != nil && p.topic != "" && p.enc != nil {
		return nil
	}
	var missing []string
	switch {
	case p == nil:
		missing = append(missing, "the producer is nil (use NewProducer)")
	default:
		if p.eng == nil {
			missing = append(missing, "the engine is nil")
		}
		if p.topic == "" {
			missing = append(missing, "the topic is empty")
		}
		if p.enc == nil {
			missing = append(missing, "the encoder is nil")
		}
	}
	return fmt.Errorf("%w: NewProducer: %s", ErrInvalidOption, strings.Join(missing, ", "))
}

// Send encodes v and sends it with the given key (nil for none), as
// Engine.Send does.
func (p *Producer[T]) Send(ctx context.Context, key []byte, v T, opts ...SendOption) (RecordMetadata, error) {
	if err := p.check(); err != nil {
		return RecordMetadata{}, err
	}
	b, err := p.enc.Encode(v)
	if err != nil {
		return RecordMetadata{}, fmt.Errorf("kstream: encode value for topic %q: %w", p.topic, err)
	}
	return p.eng.send(ctx, p.topic, key, b, opts)
}

// SendBatch encodes and sends msgs, as Engine.SendBatch does. Nothing is
// sent if any value fails to encode.
func (p *Producer[T]) SendBatch(ctx context.Context, msgs ...Message[T]) ([]RecordMetadata, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	if _, identity := p.enc.(nopanic.Identity); identity {
		// codec.Bytes: the messages are the bytes to send.
		if raw, ok := any(msgs).([]Message[[]byte]); ok {
			return p.eng.SendBatch(ctx, p.topic, raw...)
		}
	}
	raw := make([]Message[[]byte], len(msgs))
	for i, m := range msgs {
		b, err := p.enc.Encode(m.Value)
		if err != nil {
			return nil, fmt.Errorf("kstream: encode value %d for topic %q: %w", i, p.topic, err)
		}
		raw[i] = Message[[]byte]{Key: m.Key, Value: b, Headers: m.Headers, Partition: m.Partition, Timestamp: m.Timestamp}
	}
	return p.eng.SendBatch(ctx, p.topic, raw...)
}

// partitioner honours ToPartition and otherwise partitions as franz-go's
// default does, which is what Kafka's Java client does since Kafka 3.3:
// murmur2 of the key; records without a key go to one partition until 64
// KiB have gone there, then to another, preferring partitions with less
// buffered (KIP-794's uniform sticky partitioning).
//
// franz-go's older StickyKeyPartitioner (KIP-480) switches partitions on a
// new batch, which franz-go implements by building the batch, dropping it
// and partitioning again, under a lock held while buffering: two
// allocations and a lock per record when every record is a batch of its
// own, as with Send.
type partitioner struct{ ctx *recordContexts }

// recordContexts says whether a client's records keep the Context they were
// produced with up to the partitioner: set once, after the client is made
// and before it produces.
type recordContexts struct{ rewritten bool }

// newPartitioner returns the partitioner of a client; call noteHooks once
// the client is made.
func newPartitioner() (kgo.Partitioner, *recordContexts) {
	rc := &recordContexts{rewritten: true}
	return partitioner{rc}, rc
}

// noteHooks records whether cl has a hook that may replace a record's
// Context before it is partitioned (OnProduceRecordBuffered; kotel's does,
// wrapping it in a span's): without one, isManual needs no look-up through
// the context.
func (rc *recordContexts) noteHooks(cl *kgo.Client) {
	rc.rewritten = false
	hooks, _ := cl.OptValue(kgo.WithHooks).([]kgo.Hook)
	for _, h := range hooks {
		if _, ok := h.(kgo.HookProduceRecordBuffered); ok {
			rc.rewritten = true
		}
	}
}

var uniformBytes = kgo.UniformBytesPartitioner(64<<10, true, true, nil)

func (p partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	// franz-go's UniformBytesPartitioner partitions by backlog.
	return &topicPartitioner{byKey: uniformBytes.ForTopic(topic).(kgo.TopicBackupPartitioner), ctx: p.ctx}
}

// isManual reports whether r was given a partition with ToPartition.
func (t *topicPartitioner) isManual(r *kgo.Record) bool {
	if c, ok := r.Context.(*sendCtx); ok {
		return c.manual
	}
	if r.Context == nil || !t.ctx.rewritten {
		return false
	}
	// A context that a hook (OnProduceRecordBuffered runs before
	// partitioning) made around a sendCtx, or the caller's.
	c, _ := r.Context.Value(sendCtxKey{}).(*sendCtx)
	return c != nil && c.manual
}

// topicPartitioner partitions one topic. franz-go calls only
// PartitionByBackup on a TopicBackupPartitioner; Partition is there for the
// interface.
type topicPartitioner struct {
	byKey kgo.TopicBackupPartitioner
	ctx   *recordContexts
}

func (t *topicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	return t.isManual(r) || t.byKey.RequiresConsistency(r)
}

func (t *topicPartitioner) Partition(r *kgo.Record, n int) int {
	if t.isManual(r) {
		return int(r.Partition)
	}
	return t.byKey.Partition(r, n)
}

func (t *topicPartitioner) PartitionByBackup(r *kgo.Record, n int, backup kgo.TopicBackupIter) int {
	if t.isManual(r) {
		return int(r.Partition)
	}
	return t.byKey.PartitionByBackup(r, n, backup)
}

// sendCtx wraps the context of a record sent with ToPartition, which the
// partitioner reads (it keeps the caller's context, which hooks such as
// tracing read). SendBatch gives its records one sendCtx that is not manual,
// which tells the partitioner so at once.
type sendCtx struct {
	context.Context
	manual bool
}

type sendCtxKey struct{}

func (c *sendCtx) Value(key any) any {
	if key == (sendCtxKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func orBackground(ctx context.Context) context.Context {
	if ctx == nil {
		return context.Background()
	}
	return ctx
}

// sendOp is one record of Send or SendAsync, with what it needs until
// franz-go calls back for it. sendOps are reused: a send allocates neither
// the record nor a callback, so that kstream adds no allocation per record
// to franz-go's own.
//
// franz-go does not touch a record once it has called its promise, so the
// sendOp is free again once the promise has run (SendAsync) or signalled
// (Send). A Send that returns at its context's end, before the promise,
// leaves its sendOp to franz-go for good. A SendAsync record whose context
// ends first is failed by its context's watch, and its sendOp is left to
// the collector once the callback has run after that. (The record's
// Context, which franz-go may still read after the promise, is the
// caller's, or a sendCtx of ToPartition's own: never part of the sendOp.)
type sendOp struct {
	rec kgo.Record

	// What a send writes per record comes right after rec, on the cache
	// line of the record's Offset, which franz-go writes just before the
	// callback takes the record with a compare-and-swap on state; ahead
	// is on the last line. A SendAsync writes all four lines of its
	// sendOp, which the callback wrote last (it clears rec and ahead), so
	// both sides prefetch the sendOps they are about to write (asyncOpPool).
	//
	// state says, for a SendAsync record whose context can end, which
	// watch it is attached to and who has its outcome (async_watch.go).
	state atomic.Uint64
	done  func(RecordMetadata, error) // SendAsync's
	gen   uint64                      // e.gone's generation when the send began
	seq   int64                       // its place in the engine's order of sends

	// promise is bound once: a method value made per send would be an
	// allocation. Send's signals the outcome on ch; SendAsync's calls done
	// (finishAsync), or, when the record's watch has taken it, waits on ch
	// until the watch has called done.
	promise func(*kgo.Record, error)
	ch      chan error
	eng     *Engine      // SendAsync's
	pool    *asyncOpPool // SendAsync's, which it goes back to
	reg     int          // its index in pool.all
	topic   string       // SendAsync's, written when it changes: the callback reads it
	ahead   *sendOp      // SendAsync's: the sendOp expected to be taken two sends later, which its callback prefetches (async_ops.go)

	// 256 bytes in all (TestSendOpIsFourCacheLines), a size class whose
	// objects start on a cache line: prefetchOp asks for four lines.
}

// DefaultMaxBufferedRecords is how many records an engine's producer
// buffers (kgo.MaxBufferedRecords, overriding franz-go's 50 000; the
// engine's ClientOptions override it again): SendAsync blocks while it
// holds that many unacknowledged records. It bounds the producer's memory
// (10 000 records of 10 KiB are 100 MB) and keeps SendAsync allocation-free
// (its pool keeps as many sendOps).
const DefaultMaxBufferedRecords = 10_000

// Send's sendOps are in a sync.Pool: a Send holds one for a round trip, so
// few are in use at once. SendAsync's are in the engine's asyncOpPool.
var syncOps = sync.Pool{New: func() any {
	op := &sendOp{ch: make(chan error, 1)}
	op.promise = op.signalAcked
	return op
}}

func (op *sendOp) signalAcked(_ *kgo.Record, err error) { op.ch <- err }

// prepare readies op's record: topic, key and value, then the options
// applied in order. A record with a partition of its own gets a sendCtx
// that says so, made after the options, so that no option can undo it.
func (op *sendOp) prepare(ctx context.Context, topic string, key, value []byte, opts []SendOption) {
	op.rec = kgo.Record{Topic: topic, Key: key, Value: value, Context: ctx}
	if applySendOptions(&op.rec, opts) {
		op.rec.Context = &sendCtx{Context: ctx, manual: true}
	}
}

// release clears op, so that nothing of the caller's is kept, and makes it
// free for the next send.
func (op *sendOp) release() {
	op.rec = kgo.Record{}
	if op.pool == nil {
		syncOps.Put(op)
		return
	}
	op.done = nil
	op.pool.put(op)
}

// applySendOptions applies opts to r, for sends (sendOp.prepare) and Emit, and
// reports whether one of them chose the partition (ToPartition): the
// record's Context must then say so to the partitioner (sendCtx).
func applySendOptions(r *kgo.Record, opts []SendOption) (manual bool) {
	for i := range opts {
		switch o := &opts[i]; o.field {
		case sendKey:
			r.Key = o.bytes
		case sendHeader:
			r.Headers = append(r.Headers, Header{Key: o.name, Value: o.bytes})
		case sendPartition:
			r.Partition, manual = o.part, true
		case sendTimestamp:
			r.Timestamp = o.time
		}
	}
	return manual
}
