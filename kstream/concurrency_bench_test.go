package kstream_test

// How much PartitionConcurrency and KeyConcurrency speed up a Handle stream
// whose handler waits (on I/O, say) rather than computes: the handler sleeps
// hcBenchSleep per record. They run only with -bench:
//
//	go test -run '^$' -bench HandleConcurrency -count 6 ./kstream | tee conc.txt
//	benchstat conc.txt
//
// One op is one whole run: a new engine with a Handle stream in a new group
// reads hcBenchRecords records from the start of a topic of the in-process
// cluster, and the op is timed from Start until the handler has returned for
// the last of them (joining the group included; stopping the engine is not
// timed). records/s is records over that time, summed over the iterations;
// steady-records/s counts from the first handler call to the last return,
// leaving connecting and joining out. speedup is records/s divided by the
// median records/s of the serial case on the same topic, over that case's
// runs so far in this process (with -count, each case runs count times in a
// row before the next case starts), so run the serial cases too to get it.
//
// Three topics: "spread" has hcBenchPartitions partitions with the records
// spread evenly over them (100 a partition); "hot" has one partition holding
// them all; "small" is like spread with half the records (50 a partition),
// which shows how the speedup of PartitionConcurrency depends on each
// partition's backlog (partition-12-small; its speedup is relative to serial
// on spread, the rate per record of a serial stream not depending on how
// many there are). Every record has its own key.

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

const (
	hcBenchPartitions = 12
	hcBenchRecords    = 1200
	hcBenchSleep      = time.Millisecond
	hcBenchN          = 12 // n of PartitionConcurrency and KeyConcurrency
	hcBenchLimit      = 2 * time.Minute
)

var (
	hcBenchSeq    atomic.Int64
	hcBenchRunID  = time.Now().UnixNano()
	hcBenchLogger = slog.New(slog.DiscardHandler)
)

// hcBenchCluster starts a cluster with the two topics, each holding
// hcBenchRecords records with distinct keys, and returns it with the names
// of the spread and the hot topic.
func hcBenchCluster(b *testing.B) (c *kstreamtest.Cluster, spread, hot, small string) {
	b.Helper()
	id := fmt.Sprintf("%d-%d", hcBenchRunID, hcBenchSeq.Add(1))
	spread, hot, small = "hc-spread-"+id, "hc-hot-"+id, "hc-small-"+id
	c, err := kstreamtest.Start(
		kstreamtest.Topic(spread, hcBenchPartitions),
		kstreamtest.Topic(hot, 1),
		kstreamtest.Topic(small, hcBenchPartitions),
	)
	if err != nil {
		b.Fatalf("start cluster: %v", err)
	}
	b.Cleanup(c.Close)
	recs := make([]*kgo.Record, 0, 2*hcBenchRecords)
	for i := range hcBenchRecords {
		key := fmt.Appendf(nil, "key-%04d", i)
		value := fmt.Appendf(nil, "value-%04d", i)
		recs = append(recs,
			&kgo.Record{Topic: spread, Partition: int32(i % hcBenchPartitions), Key: key, Value: value},
			&kgo.Record{Topic: hot, Partition: 0, Key: key, Value: value},
		)
		if i < hcBenchRecords/2 {
			recs = append(recs, &kgo.Record{Topic: small, Partition: int32(i % hcBenchPartitions), Key: key, Value: value})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), hcBenchLimit)
	defer cancel()
	if err := c.Produce(ctx, recs...); err != nil {
		b.Fatalf("produce: %v", err)
	}
	return c, spread, hot, small
}

// hcBenchRun is one run reading n records; it returns the time from Start
// to the last record handled, and from the first handler call to the last
// return.
func hcBenchRun(b *testing.B, brokers []string, topic string, n int64, opt kstream.Option) (total, steady time.Duration) {
	b.Helper()
	eng, err := kstream.NewEngine(kstream.Brokers(brokers...), kstream.Logger(hcBenchLogger))
	if err != nil {
		b.Fatal(err)
	}
	opts := []kstream.Option{
		kstream.Topics(topic),
		kstream.Group(fmt.Sprintf("hc-%d-%d", hcBenchRunID, hcBenchSeq.Add(1))),
		kstream.Name("hc"),
	}
	if opt != nil {
		opts = append(opts, opt)
	}
	s, err := kstream.NewStream(codec.Bytes(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	var (
		start       = time.Now()
		count       atomic.Int64
		first, last atomic.Int64 // since start
		done        = make(chan struct{})
	)
	s.Handle(func(context.Context, kstream.Record[[]byte]) error {
		if first.Load() == 0 {
			first.CompareAndSwap(0, int64(time.Since(start)))
		}
		time.Sleep(hcBenchSleep)
		if count.Add(1) == n {
			last.Store(int64(time.Since(start)))
			close(done)
		}
		return nil
	})
	if err := eng.Add(s); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hcBenchLimit)
	defer cancel()
	if err := eng.Start(ctx); err != nil {
		b.Fatal(err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		b.Fatalf("%d of %d records handled: %v", count.Load(), n, ctx.Err())
	}
	b.StopTimer()
	if err := eng.Stop(ctx); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	return time.Duration(last.Load()), time.Duration(last.Load() - first.Load())
}

// BenchmarkHandleConcurrency compares serial handling with
// PartitionConcurrency(12) and KeyConcurrency(12), on 12 partitions and on
// one hot partition. The targets: partition-12 at least 8 times serial's
// records/s, and on the hot partition, where partition concurrency cannot
// help, key-12 well above hot-serial.
func BenchmarkHandleConcurrency(b *testing.B) {
	c, spread, hot, small := hcBenchCluster(b)
	brokers := c.Brokers()
	cases := []struct {
		name, topic string
		n           int64
		opt         kstream.Option
		base        string // the serial case speedup is relative to
	}{
		{"serial", spread, hcBenchRecords, nil, ""},
		{fmt.Sprintf("partition-%d", hcBenchN), spread, hcBenchRecords, kstream.PartitionConcurrency(hcBenchN), "serial"},
		{fmt.Sprintf("key-%d", hcBenchN), spread, hcBenchRecords, kstream.KeyConcurrency(hcBenchN), "serial"},
		{"hot-serial", hot, hcBenchRecords, nil, ""},
		{fmt.Sprintf("hot-partition-%d", hcBenchN), hot, hcBenchRecords, kstream.PartitionConcurrency(hcBenchN), "hot-serial"},
		{fmt.Sprintf("hot-key-%d", hcBenchN), hot, hcBenchRecords, kstream.KeyConcurrency(hcBenchN), "hot-serial"},
		{fmt.Sprintf("partition-%d-small", hcBenchN), small, hcBenchRecords / 2, kstream.PartitionConcurrency(hcBenchN), "serial"},
	}
	rates := map[string][]float64{} // records/s of each run of each case
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var total, steady time.Duration
			runs := 0
			for b.Loop() {
				t, s := hcBenchRun(b, brokers, tc.topic, tc.n, tc.opt)
				total += t
				steady += s
				runs++
			}
			recs := float64(int64(runs) * tc.n)
			rate := recs / total.Seconds()
			rates[tc.name] = append(rates[tc.name], rate)
			b.ReportMetric(rate, "records/s")
			b.ReportMetric(recs/steady.Seconds(), "steady-records/s")
			if base := rates[tc.base]; len(base) > 0 {
				b.ReportMetric(rate/hcMedian(base), "speedup")
			}
		})
	}
}

func hcMedian(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
