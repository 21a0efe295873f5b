package kstreamtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// A share member takes work from a share stream on the same partition:
// both process records, and together every record, each once.
func TestShareMemberSharesWorkWithAStream(t *testing.T) {
	const topic, group = "jobs", "workers"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kstreamtest.ProduceValues(ctx, c, topic, 1, codec.String(), values(0, 200)...); err != nil {
		t.Fatal(err)
	}
	var ledger kstreamtest.Ledger
	slow := kstreamtest.OnRecord(func(*kgo.Record) { time.Sleep(time.Millisecond) })
	m := c.AddShareMember(t, group, []string{topic}, kstreamtest.RecordTo(&ledger), slow,
		kstreamtest.MemberClientOptions(kgo.ShareMaxRecords(5)))
	s := kstreamtest.NewStream(t, c, codec.String(), kstream.Topics(topic), kstream.ShareGroup(group), kstream.MaxPollRecords(5))
	var byStream int
	done := make(chan struct{})
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	go func() {
		defer close(done)
		for rec, err := range s.Records(lctx) {
			if err != nil {
				return
			}
			byStream++
			ledger.Add(rec.Topic, rec.Partition, rec.Offset)
			time.Sleep(time.Millisecond)
		}
	}()
	ledger.Wait(t, 200, 20*time.Second)
	// End the loop normally first: the record in hand finishes and is
	// accepted. Close while the body holds it would release it (as
	// documented), and the share member would take it again.
	lcancel()
	<-done
	s.Close()
	m.Leave()
	ledger.AssertNoDuplicates(t)
	if byStream == 0 || m.Processed() == 0 {
		t.Fatalf("the stream processed %d records, the share member %d: want both > 0", byStream, m.Processed())
	}
}
