package kstream_test

import (
	"context"
	"iter"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

func TestSmoke(t *testing.T) {
	c := kstreamtest.NewCluster(t, kstreamtest.Topic("smoke", 3))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	vals := []string{"a", "b", "c", "d", "e", "f"}
	if err := kstreamtest.ProduceValues(ctx, c, "smoke", 3, codec.String(), vals...); err != nil {
		t.Fatal(err)
	}
	s, err := kstream.NewStream(codec.String(), kstream.Brokers(c.Brokers()...), kstream.Topics("smoke"), kstream.Group("g"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = s.Use(ctx, func(recs iter.Seq2[kstream.Record[string], error]) error {
		for rec, err := range recs {
			if err != nil {
				return err
			}
			t.Logf("%s/%d@%d %s", rec.Topic, rec.Partition, rec.Offset, rec.Value)
			n++
			if n == len(vals) {
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Committed(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("committed %v", got)
}
