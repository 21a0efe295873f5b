package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	kafka "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// Every producer writes unkeyed records of random bytes with acks=all and
// no compression, to a topic of its own created for the run, and is
// measured from just before its client is created to the last
// acknowledgement. Each library partitions unkeyed records its own default
// way (franz-go and kstream: sticky; kafka-go: round robin; sarama: random).

type producer struct {
	name string
	how  string
	run  func(ctx context.Context, sp spec, m *meter, v values) (acked int64, err error)
}

const (
	scenarioConsume      = "consume"
	scenarioProduceSync  = "produce-sync"
	scenarioProduceBatch = "produce-batch"
	scenarioProduceAsync = "produce-async"
)

var producers = map[string]map[string]producer{
	scenarioProduceSync: {
		"franz-go": {
			name: "franz-go ProduceSync",
			how:  "ProduceSync(ctx, record) per record",
			run:  produceFranzSync,
		},
		"kstream-send": {
			name: "kstream Engine.Send",
			how:  "Engine.Send(ctx, topic, value) per record",
			run:  produceKstreamSend,
		},
		"kstream-producer": {
			name: "kstream Producer.Send",
			how:  "Producer[[]byte] (codec.Bytes) Send(ctx, nil, value) per record",
			run:  produceKstreamProducer,
		},
		"kafka-go": {
			name: "kafka-go Writer",
			how:  "Writer (RequireAll, BatchSize 1) WriteMessages(ctx, msg) per record",
			run:  produceKafkaGoSync,
		},
		"sarama": {
			name: "sarama SyncProducer",
			how:  "SyncProducer (WaitForAll) SendMessage per record",
			run:  produceSaramaSync,
		},
	},
	scenarioProduceBatch: {
		"franz-go": {
			name: "franz-go ProduceSync(batch)",
			how:  "ProduceSync(ctx, batch...) per batch of new records",
			run:  produceFranzBatch,
		},
		"franz-go-engine": {
			name: "franz-go ProduceSync(batch), the engine's settings",
			how:  "as franz-go ProduceSync(batch), with the kstream engine's producer settings: kgo.ProducerLinger (0, or -engine-linger), kgo.MaxBufferedRecords (10 000) and its partitioner (kgo.UniformBytesPartitioner(64 KiB, adaptive, keys)); baseline of the targets",
			run:  produceFranzBatch,
		},
		"kstream-send": {
			name: "kstream Engine.SendBatch",
			how:  "Engine.SendBatch(ctx, topic, msgs...) per batch",
			run:  produceKstreamSendBatch,
		},
		"kstream-producer": {
			name: "kstream Producer.SendBatch",
			how:  "Producer[[]byte].SendBatch(ctx, msgs...) per batch",
			run:  produceKstreamProducerBatch,
		},
		"kafka-go": {
			name: "kafka-go Writer(batch)",
			how:  "Writer (RequireAll, BatchSize = batch, BatchTimeout 1µs) WriteMessages(ctx, batch...) per batch",
			run:  produceKafkaGoBatch,
		},
		"sarama": {
			name: "sarama SyncProducer.SendMessages",
			how:  "SyncProducer (WaitForAll) SendMessages(batch) per batch",
			run:  produceSaramaBatch,
		},
	},
	scenarioProduceAsync: {
		"franz-go": {
			name: "franz-go Produce+Flush",
			how:  "Produce(ctx, record, callback) per record, then Flush",
			run:  produceFranzAsync,
		},
		"franz-go-engine": {
			name: "franz-go Produce+Flush, the engine's settings",
			how:  "as franz-go Produce+Flush, with the kstream engine's producer settings: kgo.ProducerLinger (0, or -engine-linger), kgo.MaxBufferedRecords (10 000) and its partitioner (kgo.UniformBytesPartitioner(64 KiB, adaptive, keys)); baseline of the targets",
			run:  produceFranzAsync,
		},
		"kstream-send": {
			name: "kstream Engine.SendAsync+Flush",
			how:  "Engine.SendAsync(ctx, topic, value, done) per record, then Engine.Flush",
			run:  produceKstreamSendAsync,
		},
		"kstream-producer": {
			name: "kstream Producer.SendAsync+Flush",
			how:  "Producer[[]byte] (codec.Bytes) SendAsync(ctx, nil, value, done) per record, then Engine.Flush",
			run:  produceKstreamProducerAsync,
		},
		"kafka-go": {
			name: "kafka-go Writer Async",
			how:  "Writer (RequireAll, Async, BatchSize = batch, BatchTimeout 10ms, Completion callback) WriteMessages per batch, then Close",
			run:  produceKafkaGoAsync,
		},
		"sarama": {
			name: "sarama AsyncProducer",
			how:  "AsyncProducer (WaitForAll, Return.Successes) Input() per record, Successes/Errors drained",
			run:  produceSaramaAsync,
		},
		"kcat": {
			name: "kcat (librdkafka) -P",
			how:  "kcat -P, one record per line of its stdin (written by the child, not counted), acks=all, no compression, idempotent like franz-go; exits once every record is acknowledged (external process: its CPU and peak RSS)",
			run:  produceKcat,
		},
	},
}

var producerOrder = []string{"franz-go", "franz-go-engine", "kstream-send", "kstream-producer", "kafka-go", "sarama", "kcat"}

// franzProduceOpts are the franz-go options of every franz-go and kstream
// producer: no compression, and idempotent writes unless the run says not.
func franzProduceOpts(sp spec) []kgo.Opt {
	opts := []kgo.Opt{kgo.ProducerBatchCompression(kgo.NoCompression())}
	if sp.NotIdempotent {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	return opts
}

// engineProduceOpts are a kstream engine's client options: franzProduceOpts
// and, with -engine-linger, kgo.ProducerLinger (the engine's own default is
// no linger, so that Send is one round trip).
func engineProduceOpts(sp spec) []kgo.Opt {
	opts := franzProduceOpts(sp)
	if sp.EngineLinger > 0 {
		opts = append(opts, kgo.ProducerLinger(time.Duration(sp.EngineLinger)))
	}
	return opts
}

// newFranzProducer is the franz-go producers' client: franz-go's defaults
// (a 10 ms linger, 50 000 buffered records, sticky partitioning), or for
// the franz-go-engine rows the kstream engine's producer settings: its
// linger (none, or -engine-linger), DefaultMaxBufferedRecords, and the
// partitioner its own wraps (adaptive uniform bytes, Kafka's default).
func newFranzProducer(sp spec) (*kgo.Client, error) {
	opts := append(franzProduceOpts(sp), kgo.SeedBrokers(sp.Brokers...))
	if sp.Client == "franz-go-engine" {
		opts = append(opts, kgo.ProducerLinger(time.Duration(sp.EngineLinger)),
			kgo.MaxBufferedRecords(kstream.DefaultMaxBufferedRecords),
			kgo.RecordPartitioner(kgo.UniformBytesPartitioner(64<<10, true, true, nil)))
	}
	return kgo.NewClient(opts...)
}

func produceFranzSync(ctx context.Context, sp spec, m *meter, v values) (int64, error) {
	m.Start()
	cl, err := newFranzProducer(sp)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var n int64
	for i := range sp.Records {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: sp.Topic, Value: v.at(i)}).FirstErr(); err != nil {
			return n, err
		}
		n++
	}
	m.Stop()
	return n, nil
}

func produceFranzBatch(ctx context.Context, sp spec, m *meter, v values) (int64, error) {
	m.Start()
	cl, err := newFranzProducer(sp)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var n int64
	recs := make([]*kgo.Record, 0, sp.Batch)
	for i := 0; i < sp.Records; {
		recs = recs[:0]
		for ; i < sp.Records && len(recs) < sp.Batch; i++ {
			recs = append(recs, &kgo.Record{Topic: sp.Topic, Value: v.at(i)})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return n, err
		}
		n += int64(len(recs))
	}
	m.Stop()
	return n, nil
}

func produceFranzAsync(ctx context.Context, sp spec, m *meter, v values) (int64, error) {
	m.Start()
	cl, err := newFranzProducer(sp)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var a asyncAcks
	cb := func(_ *kgo.Record, err error) { a.note(err) }
	for i := range sp.Records {
		cl.Produce(ctx, &kgo.Record{Topic: sp.Topic, Value: v.at(i)}, cb)
	}
	if err := cl.Flush(ctx); err != nil {
		return a.acked.Load(), err
	}
	if e := a.firstErr.Load(); e != nil {
		return a.acked.Load(), *e
	}
	m.Stop()
	return a.acked.Load(), nil
}

// newEngine starts an engine for producing.
func newEngine(ctx context.Context, sp spec) (*kstream.Engine, func(), error) {
	eng, err := kstream.NewEngine(
		kstream.Brokers(sp.Brokers...),
		kstream.Logger(discardLogger),
		kstream.ClientOptions(engineProduceOpts(sp)...),
	)
	if err != nil {
		return nil, nil, err
	}
	if err := eng.Start(ctx); err != nil {
		return nil, nil, err
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = eng.Stop(sctx)
	}
	return eng, stop, nil
}

func produceKstreamSend(ctx context.Context, sp spec, m *meter, v values) (int64, error) {
	m.Start()
	eng, stop, err := newEngine(ctx, sp)
	if err != nil {
		return 0, err
	}
	defer stop()
	var n int64
	for i := range sp.Records {
		if _, err := eng.Send(ctx, sp.Topic, v.at(i)); err != nil {
			return n, err
		}
		n++
	}
	m.Stop()
	return n, nil
}

func produceKstreamProducer(ctx context.Context, sp spec, m *meter, v values) (int64, error) {
	m.Start()
	eng, stop, err := newEngine(ctx, sp)
	if err != nil {
		return 0, err
	}
	defer stop()
	p := kstream.NewProducer(eng, sp.Topic, codec.Bytes())
	var n int64
	for i := range sp.Records {
		if _, err := p.Send(ctx, nil, v.at(i)); err != nil {
			return n, err
		}
		n++
	}
	m.Stop()
	return n, nil
}

func produceKstreamSendBatch(ctx context.Context, sp spec, m *meter, v values) (int64, error) {
	m.Start()
	eng, stop, err := newEngine(ctx, sp)
	if err != nil {
		return 0, err
	}
	defer stop()
	var n int64
	msgs := make([]kstream.Message[[]byte], 0, sp.Batch)
	for i := 0; i < sp.Records; {
		msgs = msgs[:0]
		for ; i < sp.Records && len(msgs) < sp.Batch; i++ {
			msgs = append(msgs, kstream.Message[[]byte]{Value: v.at(i)})
		}
		if _, err := eng.SendBatch(ctx, sp.Topic, msgs...); err != nil {
			return n, err
		}
		n += int64(len(msgs))
	}
	m.Stop()
	return n, nil
}

func produceKstreamProducerBatch(ctx context.Context, sp spec, m *meter, v values) (int64, error) {
	m.Start()
	eng, stop, err := newEngine(ctx, sp)
	if err != nil {
		return 0, err
	}
	defer stop()
	p := kstream.NewProducer(eng, sp.Topic, codec.Bytes())
	var n int64
	msgs := make([]kstream.Message[[]byte], 0, sp.Batch)
	for i := 0; i < sp.Records; {
		msgs = msgs[:0]
		for ; i < sp.Records && len(msgs) < sp.Batch; i++ {
			msgs = append(msgs, kstream.Message[[]byte]{Value: v.at(i)})
		}
		if _, err := p.SendBatch(ctx, msgs...); err != nil {
			return n, err
		}
		n += int64(len(msgs))
	}
	m.Stop()
	return n, nil
}

// asyncAcks counts the records a pipelined run (franz-go's Produce, kstream's
// SendAsync) had acknowledged and keeps its first error. Its counters are
// on cache lines of their own: next to what the sending goroutine reads
// (the callback's func value, allocated after it), every acknowledgement
// cost both goroutines a cache miss.
type asyncAcks struct {
	_        [64]byte
	acked    atomic.Int64
	firstErr atomic.Pointer[error]
	_        [64]byte
}

func (a *asyncAcks) note(err error) {
	if err != nil {
		keepFirst(&a.firstErr, err)
		return
	}
	a.acked.Add(1)
}

func (a *asyncAcks) done(_ kstream.RecordMetadata, err error) { a.note(err) }

// keepFirst keeps err in first unless it holds an error already. Taking
// err's address here, not in the callbacks, keeps a callback from moving
// its err to the heap on every call, success or not.
func keepFirst(first *atomic.Pointer[error], err error) { first.CompareAndSwap(nil, &err) }

// wait flushes eng and returns what was acknowledged, or the first error.
func (a *asyncAcks) wait(ctx context.Context, eng *kstream.Engine, m *meter) (int64, error) {
	if err := eng.Flush(ctx); err != nil {
		return a.acked.Load(), err
	}
	if e := a.firstErr.Load(); e != nil {
		return a.acked.Load(), *e
	}
	m.Stop()
	return a.acked.Load(), nil
}

func produceKstreamSendAsync(ctx context.Context, sp spec, m *meter, v values) (int64, error) {
	m.Start()
	eng, stop, err := newEngine(ctx, sp)
	if err != nil {
		return 0, err
	}
	defer stop()
	var a asyncAcks
	done := a.done // one func value for every record, as the franz-go client has one callback
	for i := range sp.Records {
		eng.SendAsync(ctx, sp.Topic, v.at(i), done)
	}
	return a.wait(ctx, eng, m)
}

func produceKstreamProducerAsync(ctx context.Context, sp spec, m *meter, v values) (int64, error) {
	m.Start()
	eng, stop, err := newEngine(ctx, sp)
	if err != nil {
		return 0, err
	}
	defer stop()
	p := kstream.NewProducer(eng, sp.Topic, codec.Bytes())
	var a asyncAcks
	done := a.done
	for i := range sp.Records {
		p.SendAsync(ctx, nil, v.at(i), done)
	}
	return a.wait(ctx, eng, m)
}

// newKafkaGoWriter returns a kafka-go Writer with acks=all and no
// compression. kafka-go flushes a partition's batch when it holds
// batchSize messages or batchTimeout after its first message (1s unless
// set). A sync WriteMessages adds all of a call's messages for a partition
// under the partition's lock before the timer can fire, so a tiny timeout
// sends each call's messages at once, as ProduceSync does.
func newKafkaGoWriter(sp spec, batchSize int, batchTimeout time.Duration, async bool) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(sp.Brokers...),
		Topic:        sp.Topic,
		RequiredAcks: kafka.RequireAll,
		BatchSize:    batchSize,
		BatchTimeout: batchTimeout,
		Async:        async,
	}
}

func produceKafkaGoSync(ctx context.Context, sp spec, m *meter, v values) (int64, error) {
	m.Start()
	w := newKafkaGoWriter(sp, 1, time.Microsecond, false)
	defer w.Close()
	var n int64
	for i := range sp.Records {
		if err := w.WriteMessages(ctx, kafka.Message{Value: v.at(i)}); err != nil {
			return n, err
		}
		n++
	}
	m.Stop()
	return n, nil
}

func produceKafkaGoBatch(ctx context.Context, sp spec, m *meter, v values) (int64, error) {
	m.Start()
	w := newKafkaGoWriter(sp, sp.Batch, time.Microsecond, false)
	defer w.Close()
	var n int64
	msgs := make([]kafka.Message, 0, sp.Batch)
	for i := 0; i < sp.Records; {
		msgs = msgs[:0]
		for ; i < sp.Records && len(msgs) < sp.Batch; i++ {
			msgs = append(msgs, kafka.Message{Value: v.at(i)})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return n, err
		}
		n += int64(len(msgs))
	}
	m.Stop()
	return n, nil
}

func produceKafkaGoAsync(ctx context.Context, sp spec, m *meter, v values) (int64, error) {
	m.Start()
	w := newKafkaGoWriter(sp, sp.Batch, 10*time.Millisecond, true)
	var acked atomic.Int64
	var firstErr atomic.Pointer[error]
	w.Completion = func(msgs []kafka.Message, err error) {
		if err != nil {
			keepFirst(&firstErr, err)
			return
		}
		acked.Add(int64(len(msgs)))
	}
	msgs := make([]kafka.Message, 0, sp.Batch)
	for i := 0; i < sp.Records; {
		msgs = msgs[:0]
		for ; i < sp.Records && len(msgs) < sp.Batch; i++ {
			msgs = append(msgs, kafka.Message{Value: v.at(i)})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			w.Close()
			return acked.Load(), err
		}
	}
	if err := w.Close(); err != nil { // flushes and waits for every batch
		return acked.Load(), err
	}
	if e := firstErr.Load(); e != nil {
		return acked.Load(), *e
	}
	m.Stop()
	return acked.Load(), nil
}

func newSaramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = saramaVersion
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	cfg.Producer.Compression = sarama.CompressionNone
	return cfg
}

func produceSaramaSync(ctx context.Context, sp spec, m *meter, v values) (int64, error) {
	m.Start()
	p, err := sarama.NewSyncProducer(sp.Brokers, newSaramaConfig())
	if err != nil {
		return 0, err
	}
	defer p.Close()
	var n int64
	for i := range sp.Records {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: sp.Topic, Value: sarama.ByteEncoder(v.at(i))}); err != nil {
			return n, err
		}
		n++
	}
	m.Stop()
	return n, nil
}

func produceSaramaBatch(ctx context.Context, sp spec, m *meter, v values) (int64, error) {
	m.Start()
	p, err := sarama.NewSyncProducer(sp.Brokers, newSaramaConfig())
	if err != nil {
		return 0, err
	}
	defer p.Close()
	var n int64
	msgs := make([]*sarama.ProducerMessage, 0, sp.Batch)
	for i := 0; i < sp.Records; {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		msgs = msgs[:0]
		for ; i < sp.Records && len(msgs) < sp.Batch; i++ {
			msgs = append(msgs, &sarama.ProducerMessage{Topic: sp.Topic, Value: sarama.ByteEncoder(v.at(i))})
		}
		if err := p.SendMessages(msgs); err != nil {
			return n, err
		}
		n += int64(len(msgs))
	}
	m.Stop()
	return n, nil
}

func produceSaramaAsync(ctx context.Context, sp spec, m *meter, v values) (int64, error) {
	m.Start()
	p, err := sarama.NewAsyncProducer(sp.Brokers, newSaramaConfig())
	if err != nil {
		return 0, err
	}
	var acked atomic.Int64
	want := int64(sp.Records)
	done := make(chan error, 1)
	go func() {
		var firstErr error
		var seen int64
		for seen < want {
			select {
			case _, ok := <-p.Successes():
				if !ok {
					done <- errors.New("successes channel closed")
					return
				}
				acked.Add(1)
			case perr, ok := <-p.Errors():
				if !ok {
					done <- errors.New("errors channel closed")
					return
				}
				if firstErr == nil {
					firstErr = perr
				}
			}
			seen++
		}
		done <- firstErr
	}()
	var rerr error
	for i := range sp.Records {
		select {
		case p.Input() <- &sarama.ProducerMessage{Topic: sp.Topic, Value: sarama.ByteEncoder(v.at(i))}:
		case <-ctx.Done():
			rerr = ctx.Err()
		}
		if rerr != nil {
			break
		}
	}
	if rerr == nil {
		select {
		case rerr = <-done:
		case <-ctx.Done():
			rerr = ctx.Err()
		}
	}
	if rerr == nil {
		m.Stop()
	}
	p.AsyncClose()
	var wg sync.WaitGroup
	wg.Go(func() {
		for range p.Errors() {
		}
	})
	for range p.Successes() {
	}
	wg.Wait()
	if rerr != nil {
		return acked.Load(), fmt.Errorf("sarama async: %w", rerr)
	}
	return acked.Load(), nil
}
