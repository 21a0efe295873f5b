package kstreamtest

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
)

// Produce writes records synchronously and returns the first error. A
// record's Partition is honoured; set Topic on each record.
func (c *Cluster) Produce(ctx context.Context, recs ...*kgo.Record) error {
	if err := c.client.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("kstreamtest: produce: %w", err)
	}
	return nil
}

// ProduceValues encodes values with enc and writes them to topic, spreading
// them over its partitions in turn (value i goes to partition i mod
// partitions), with no key.
func ProduceValues[T any](ctx context.Context, c *Cluster, topic string, partitions int32, enc codec.Encoder[T], values ...T) error {
	recs := make([]*kgo.Record, 0, len(values))
	for i, v := range values {
		b, err := enc.Encode(v)
		if err != nil {
			return fmt.Errorf("kstreamtest: encode value %d: %w", i, err)
		}
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i) % partitions, Value: b})
	}
	return c.Produce(ctx, recs...)
}

// Committed returns the offsets group has committed, by topic and
// partition; a partition without a commit is absent, and a group that does
// not exist has none.
func (c *Cluster) Committed(ctx context.Context, group string) (map[string]map[int32]int64, error) {
	resp, err := c.admin.FetchOffsets(ctx, group)
	if err == nil {
		err = resp.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[string]map[int32]int64{}, nil // no commits yet
	}
	if err != nil {
		return nil, fmt.Errorf("kstreamtest: fetch offsets of group %q: %w", group, err)
	}
	out := make(map[string]map[int32]int64)
	resp.Each(func(o kadm.OffsetResponse) {
		if o.At < 0 {
			return
		}
		if out[o.Topic] == nil {
			out[o.Topic] = make(map[int32]int64)
		}
		out[o.Topic][o.Partition] = o.At
	})
	return out, nil
}

// EndOffsets returns the offset after the last record of each partition of
// topic.
func (c *Cluster) EndOffsets(ctx context.Context, topic string) (map[int32]int64, error) {
	resp, err := c.admin.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("kstreamtest: end offsets of %q: %w", topic, err)
	}
	out := make(map[int32]int64)
	resp.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			out[o.Partition] = o.Offset
		}
	})
	return out, nil
}
