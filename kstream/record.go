package kstream

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Record is one Kafka record with its value decoded into a T.
//
// Key, Headers and the bytes behind Raw belong to the record; they are not
// reused by the stream, so a Record may be kept after the loop moves on.
type Record[T any] struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	// Value is the decoded value. It is the zero value of T when decoding
	// failed (the iterator then yields a *DecodeError with the record) and
	// for a tombstone, unless the decoder implements codec.NilDecoder.
	Value     T
	Headers   []Header
	Timestamp time.Time
	// Raw is the record as franz-go fetched it, for what Record does not
	// carry (leader epoch, producer ID, attributes). With Tracing, in a
	// range over Records or Batches, Raw.Context carries the record's
	// process span.
	Raw *kgo.Record
	// DeliveryCount is the broker's count of this record's deliveries to
	// the members of a share group (ShareGroup): 1 on its first delivery,
	// higher after a release or an expired acquisition. It is 0 outside
	// share groups.
	DeliveryCount int32

	batch *[]Record[T] // the batch a HandleBatches middleware is called for (Batch)
}

// Tombstone reports whether the record's value is nil, which on a compacted
// topic marks the key as deleted.
func (r Record[T]) Tombstone() bool { return r.Raw != nil && r.Raw.Value == nil }

// Header is a record header. It is franz-go's type, so that headers are
// handed over without copying.
type Header = kgo.RecordHeader

// TopicPartitionOffset names an offset in a partition, as kstreams'
// structs.TopicPartitionOffset does. See InitialOffsets.
type TopicPartitionOffset struct {
	Topic     string
	Partition int32
	Offset    int64
}
