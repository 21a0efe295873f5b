package kstream_test

// A bounded replay (StopAtEnd) against a hand-written franz-go program that
// reads the same partitions up to the same end offsets. Run only with
// -bench:
//
//	go test -run '^$' -bench 'BenchmarkBoundedReplay' -benchtime=1x ./kstream
//
// Each round reads benchReplayRecords records from the start, without a
// group, with each consumer in turn (alternating which goes first), after
// one unmeasured warm-up each. ratio is the median over rounds of
// kstream's records/s over franz-go's (above 1 kstream is faster);
// peak-heap-MB is the median of the highest live heap sampled while each
// consumer ran, less the heap before it started (the in-process cluster's
// copy of the records is in neither).

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

const (
	benchReplayRecords = 1_000_000
	benchReplayRounds  = 5
)

// replayCluster starts a cluster holding benchReplayRecords records of
// benchValueSize bytes over benchPartitions partitions.
func replayCluster(b *testing.B) (brokers []string, topic string) {
	b.Helper()
	topic = fmt.Sprintf("replay-%d", benchRunID)
	c, err := kstreamtest.Start(kstreamtest.Topic(topic, benchPartitions))
	if err != nil {
		b.Fatalf("start cluster: %v", err)
	}
	b.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(3, 4))
	block := make([]byte, benchProduceBatch*benchValueSize)
	recs := make([]*kgo.Record, 0, benchProduceBatch)
	for i := 0; i < benchReplayRecords; {
		for j := range block {
			block[j] = byte(rng.Uint32())
		}
		recs = recs[:0]
		for ; i < benchReplayRecords && len(recs) < benchProduceBatch; i++ {
			k := len(recs) * benchValueSize
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % benchPartitions), Value: block[k : k+benchValueSize : k+benchValueSize]})
		}
		if err := c.Client().ProduceSync(ctx, recs...).FirstErr(); err != nil {
			b.Fatalf("produce: %v", err)
		}
	}
	return c.Brokers(), topic
}

// replayFranz is the baseline: list the end offsets, consume every
// partition from the start, stop each at its end.
func replayFranz(ctx context.Context, brokers []string, topic string) (int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(kstream.DefaultFetchMaxWait),
		kgo.FetchMaxBytes(kstream.DefaultFetchMaxBytes))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	got, size := 0, 0
	for len(left) > 0 {
		fs := cl.PollRecords(ctx, benchPollRecords)
		if err := ctx.Err(); err != nil {
			return got, err
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := left[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			size += len(r.Value)
			got++
			if r.Offset == end-1 {
				delete(left, r.Partition)
			}
		})
	}
	if size != got*benchValueSize {
		return got, fmt.Errorf("franz-go: %d bytes in %d records", size, got)
	}
	return got, nil
}

// replayStream reads with a bounded Stream's Records iterator.
func replayStream(ctx context.Context, brokers []string, topic string) (int, error) {
	s, err := kstream.NewStream(codec.Bytes(), kstream.Brokers(brokers...), kstream.Topics(topic),
		kstream.StopAtEnd(), kstream.Logger(benchDiscardLogger))
	if err != nil {
		return 0, err
	}
	got, size := 0, 0
	for rec, err := range s.Records(ctx) {
		if err != nil {
			return got, err
		}
		size += len(rec.Value)
		got++
	}
	if size != got*benchValueSize {
		return got, fmt.Errorf("kstream: %d bytes in %d records", size, got)
	}
	return got, ctx.Err()
}

// heapPeak samples the live heap every millisecond until stop is called,
// which returns the highest value less the one at the start.
func heapPeak() (stop func() uint64) {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	base := read()
	var mu sync.Mutex
	peak := base
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				v := read()
				mu.Lock()
				peak = max(peak, v)
				mu.Unlock()
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		return peak - base
	}
}

func BenchmarkBoundedReplay(b *testing.B) {
	brokers, topic := replayCluster(b)
	type consumer struct {
		name string
		run  func(context.Context, []string, string) (int, error)
	}
	cs := []consumer{{"franz-go", replayFranz}, {"kstream", replayStream}}
	session := func(c consumer) (rate float64, peak uint64) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		stop := heapPeak()
		start := time.Now()
		n, err := c.run(ctx, brokers, topic)
		elapsed := time.Since(start)
		peak = stop()
		if err != nil || n != benchReplayRecords {
			b.Fatalf("%s: %d of %d records: %v", c.name, n, benchReplayRecords, err)
		}
		return float64(n) / elapsed.Seconds(), peak
	}
	for _, c := range cs {
		session(c) // warm-up
	}
	var ratios, fRate, kRate, fPeak, kPeak []float64
	for b.Loop() {
		for round := range benchReplayRounds {
			order := []int{0, 1}
			if round%2 == 1 {
				order = []int{1, 0}
			}
			var rate [2]float64
			var peak [2]uint64
			for _, i := range order {
				rate[i], peak[i] = session(cs[i])
			}
			ratios = append(ratios, rate[1]/rate[0])
			fRate, kRate = append(fRate, rate[0]), append(kRate, rate[1])
			fPeak, kPeak = append(fPeak, float64(peak[0])/(1<<20)), append(kPeak, float64(peak[1])/(1<<20))
		}
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(benchMedian(ratios), "ratio")
	b.ReportMetric(benchMedian(kPeak), "kstream-peak-heap-MB")
	b.ReportMetric(benchMedian(fPeak), "franzgo-peak-heap-MB")
	b.Logf("%d rounds of %d records: ratio %.3f (per round %s); kstream %.0f rec/s, peak heap %.1f MB; franz-go %.0f rec/s, peak heap %.1f MB",
		len(ratios), benchReplayRecords, benchMedian(ratios), benchFormat(ratios), benchMedian(kRate), benchMedian(kPeak), benchMedian(fRate), benchMedian(fPeak))
}
