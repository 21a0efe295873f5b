package kstream

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
)

// RecordMetadata is where a sent record was written.
type RecordMetadata struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
}

// SendOption sets a property of a record to send.
type SendOption func(*kgo.Record)

// WithKey sets the record's key. Records with the same key go to the same
// partition (Kafka's murmur2 hash), unless ToPartition says otherwise.
func WithKey(key []byte) SendOption {
	return func(r *kgo.Record) { r.Key = key }
}

// WithHeader adds a header to the record. Repeating it adds headers.
func WithHeader(key string, value []byte) SendOption {
	return func(r *kgo.Record) { r.Headers = append(r.Headers, Header{Key: key, Value: value}) }
}

// ToPartition sends the record to the given partition, overriding the
// partitioner. A partition the topic does not have fails the send.
func ToPartition(p int32) SendOption {
	return func(r *kgo.Record) {
		r.Partition = p
		r.Context = context.WithValue(r.Context, manualPartition{}, true)
	}
}

// WithTimestamp sets the record's timestamp, overriding the time of sending.
func WithTimestamp(t time.Time) SendOption {
	return func(r *kgo.Record) { r.Timestamp = t }
}

// Message is one record of a batch send.
type Message[T any] struct {
	Key     []byte
	Value   T
	Headers []Header
}

// Send produces a record to topic and waits until the brokers acknowledge
// it. It honours ctx: it returns by ctx's deadline even if a broker stops
// answering (the record may then still be written: retrying it can
// duplicate it). It returns ErrEngineNotStarted before Start and after Stop
// has finished; during a stop, handlers finishing their records may still
// send.
func (e *Engine) Send(ctx context.Context, topic string, value []byte, opts ...SendOption) (RecordMetadata, error) {
	producer, err := e.activeProducer()
	if err != nil {
		return RecordMetadata{}, err
	}
	r := &kgo.Record{Topic: topic, Value: value, Context: ctx}
	for _, o := range opts {
		o(r)
	}
	res := producer.ProduceSync(ctx, r)
	err = res.FirstErr()
	e.noteSent(topic, 1, err)
	if err != nil {
		return RecordMetadata{}, fmt.Errorf("kstream: send to topic %q: %w", topic, err)
	}
	return metadataOf(res[0].Record), nil
}

// SendBatch produces records to topic and waits until all are
// acknowledged. It returns their metadata in order, or the first error (the
// other records may have been written).
func (e *Engine) SendBatch(ctx context.Context, topic string, msgs ...Message[[]byte]) ([]RecordMetadata, error) {
	producer, err := e.activeProducer()
	if err != nil {
		return nil, err
	}
	recs := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		recs[i] = &kgo.Record{Topic: topic, Key: m.Key, Value: m.Value, Headers: m.Headers, Context: ctx}
	}
	res := producer.ProduceSync(ctx, recs...)
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
	out := make([]RecordMetadata, len(res))
	for i, pr := range res {
		out[i] = metadataOf(pr.Record)
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
	e.mu.Lock()
	defer e.mu.Unlock()
	switch e.state {
	case engineStarting, engineRunning, engineStopping:
		return e.producer, nil
	}
	return nil, ErrEngineNotStarted
}

func metadataOf(r *kgo.Record) RecordMetadata {
	return RecordMetadata{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp}
}

// Producer sends values of type T to one topic through an engine, encoding
// them with its encoder.
type Producer[T any] struct {
	eng   *Engine
	topic string
	enc   codec.Encoder[T]
}

// NewProducer returns a producer of T values to topic through eng.
func NewProducer[T any](eng *Engine, topic string, enc codec.Encoder[T]) *Producer[T] {
	return &Producer[T]{eng: eng, topic: topic, enc: enc}
}

// Send encodes v and sends it with the given key (nil for none), as
// Engine.Send does.
func (p *Producer[T]) Send(ctx context.Context, key []byte, v T, opts ...SendOption) (RecordMetadata, error) {
	b, err := p.enc.Encode(v)
	if err != nil {
		return RecordMetadata{}, fmt.Errorf("kstream: encode value for topic %q: %w", p.topic, err)
	}
	return p.eng.Send(ctx, p.topic, b, append([]SendOption{WithKey(key)}, opts...)...)
}

// SendBatch encodes and sends msgs, as Engine.SendBatch does. Nothing is
// sent if any value fails to encode.
func (p *Producer[T]) SendBatch(ctx context.Context, msgs ...Message[T]) ([]RecordMetadata, error) {
	raw := make([]Message[[]byte], len(msgs))
	for i, m := range msgs {
		b, err := p.enc.Encode(m.Value)
		if err != nil {
			return nil, fmt.Errorf("kstream: encode value %d for topic %q: %w", i, p.topic, err)
		}
		raw[i] = Message[[]byte]{Key: m.Key, Value: b, Headers: m.Headers}
	}
	return p.eng.SendBatch(ctx, p.topic, raw...)
}

// manualPartition marks, in a record's Context, a record sent with
// ToPartition.
type manualPartition struct{}

// partitioner honours ToPartition and otherwise partitions as Kafka's Java
// client does: murmur2 of the key, sticky batches for records without one.
type partitioner struct{ byKey kgo.Partitioner }

func newPartitioner() kgo.Partitioner {
	return partitioner{byKey: kgo.StickyKeyPartitioner(nil)}
}

func (p partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	return &topicPartitioner{byKey: p.byKey.ForTopic(topic)}
}

type topicPartitioner struct{ byKey kgo.TopicPartitioner }

func isManual(r *kgo.Record) bool {
	if r.Context == nil {
		return false
	}
	manual, _ := r.Context.Value(manualPartition{}).(bool)
	return manual
}

func (t *topicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	return isManual(r) || t.byKey.RequiresConsistency(r)
}

func (t *topicPartitioner) Partition(r *kgo.Record, n int) int {
	if isManual(r) {
		return int(r.Partition)
	}
	return t.byKey.Partition(r, n)
}

// OnNewBatch keeps the sticky partitioning of keyless records working.
func (t *topicPartitioner) OnNewBatch() {
	if nb, ok := t.byKey.(kgo.TopicPartitionerOnNewBatch); ok {
		nb.OnNewBatch()
	}
}
