package kstream_test

// Throughput benchmarks: a Stream against a hand-written franz-go consumer
// doing the same at-least-once work, both reading the same topic of an
// in-process cluster. They run only with -bench:
//
//	go test -run '^$' -bench 'BenchmarkRecords' -benchtime=1x -benchmem ./kstream
//
// Each session (one iteration) is a whole consumer life: a new client in a
// new group, joining, reading every record from the start, committing and
// leaving. Its time and allocations are measured around that life.
//
// Allocations are counted with runtime.ReadMemStats (the Mallocs delta), so
// they are those of the whole process while the session runs: the consumer,
// but also the in-process broker serving its fetches and the client's setup
// and teardown. Those are the same for both consumers, so the difference
// (extra-allocs/rec) is what the stream adds; the absolute allocs/record
// values are an upper bound of the consumer's own. -benchmem's allocs/op is
// about the same count per session, not per record.
//
// Time is wall time, and as noisy as the machine; CPU time (cpu-ns/record,
// cpu-ratio) is the Go runtime's estimate of busy CPU, broker included. Both
// are per record of a whole session unless named steady (first record to
// last, without joining and leaving the group).

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
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
	benchPartitions   = 4
	benchRecordCount  = 200_000
	benchValueSize    = 100
	benchProduceBatch = 10_000
	benchPollRecords  = 0 // the baseline polls as much as a stream: all the client has buffered
	benchRounds       = 9 // alternating rounds of BenchmarkRecordsRatio
	benchSessionLimit = 2 * time.Minute
)

// benchGroupSeq makes group names unique within the process; the run's
// start time makes them unique across runs against a KAFKA_BROKERS cluster.
var (
	benchGroupSeq atomic.Int64
	benchRunID    = time.Now().UnixNano()
)

func benchGroup(kind string) string {
	return fmt.Sprintf("bench-%s-%d-%d", kind, benchRunID, benchGroupSeq.Add(1))
}

// benchCluster starts a cluster with a new topic of benchPartitions
// partitions holding benchRecordCount records of benchValueSize random
// bytes, spread evenly over the partitions. It returns the brokers and
// the topic.
func benchCluster(b *testing.B) (brokers []string, topic string) {
	b.Helper()
	topic = fmt.Sprintf("bench-%d-%d", benchRunID, benchGroupSeq.Add(1))
	c, err := kstreamtest.Start(kstreamtest.Topic(topic, benchPartitions))
	if err != nil {
		b.Fatalf("start cluster: %v", err)
	}
	b.Cleanup(c.Close)

	ctx, cancel := context.WithTimeout(context.Background(), benchSessionLimit)
	defer cancel()
	rng := rand.New(rand.NewPCG(1, 2))
	recs := make([]*kgo.Record, 0, benchProduceBatch)
	for i := 0; i < benchRecordCount; {
		recs = recs[:0]
		block := make([]byte, benchProduceBatch*benchValueSize)
		for j := range block {
			block[j] = byte(rng.Uint32())
		}
		for ; i < benchRecordCount && len(recs) < benchProduceBatch; i++ {
			k := len(recs) * benchValueSize
			recs = append(recs, &kgo.Record{
				Topic:     topic,
				Partition: int32(i % benchPartitions),
				Value:     block[k : k+benchValueSize : k+benchValueSize],
			})
		}
		if err := c.Client().ProduceSync(ctx, recs...).FirstErr(); err != nil {
			b.Fatalf("produce: %v", err)
		}
	}
	return c.Brokers(), topic
}

// benchConsumer reads n records of topic from the start in a new group and
// closes. It returns the time from its first record to its n-th.
type benchConsumer func(ctx context.Context, brokers []string, topic, group string, n int) (steady time.Duration, err error)

// consumeFranz is the baseline: franz-go used directly the way the stream
// uses it by default (at least once, rebalances blocked while records are
// in hand, processed records marked and committed by autocommit).
func consumeFranz(ctx context.Context, brokers []string, topic, group string, n int) (time.Duration, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.BlockRebalanceOnPoll(),
		kgo.AutoCommitMarks(),
	)
	if err != nil {
		return 0, err
	}
	closed := false
	defer func() {
		if !closed {
			cl.CloseAllowingRebalance()
		}
	}()
	var (
		got, size int
		first     time.Time
		steady    time.Duration
	)
	for got < n {
		fs := cl.PollRecords(ctx, benchPollRecords)
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("franz-go: %d of %d records: %w", got, n, err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("franz-go: fetch %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return 0, ferr
		}
		recs := fs.Records()
		if len(recs) > 0 && got == 0 {
			first = time.Now()
		}
		for _, r := range recs {
			size += len(r.Value)
		}
		got += len(recs)
		if got >= n {
			steady = time.Since(first)
		}
		cl.MarkCommitRecords(recs...)
		cl.AllowRebalance()
	}
	if size != got*benchValueSize {
		return 0, fmt.Errorf("franz-go: %d bytes in %d records", size, got)
	}
	cerr := cl.CommitMarkedOffsets(ctx)
	closed = true
	cl.CloseAllowingRebalance()
	if cerr != nil {
		return 0, fmt.Errorf("franz-go: commit: %w", cerr)
	}
	return steady, nil
}

var benchDiscardLogger = slog.New(slog.DiscardHandler)

// consumeStream reads with a Stream's Records iterator. The logger only
// keeps the per-session "partitions assigned" line out of the output; the
// franz-go baseline does not log either.
func consumeStream(ctx context.Context, brokers []string, topic, group string, n int) (time.Duration, error) {
	s, err := kstream.NewStream(codec.Bytes(),
		kstream.Brokers(brokers...),
		kstream.Topics(topic),
		kstream.Group(group),
		kstream.Logger(benchDiscardLogger),
	)
	if err != nil {
		return 0, err
	}
	var (
		got, size int
		first     time.Time
		steady    time.Duration
	)
	for rec, err := range s.Records(ctx) {
		if err != nil {
			s.Close()
			return 0, fmt.Errorf("kstream: record %d: %w", got, err)
		}
		if got == 0 {
			first = time.Now()
		}
		size += len(rec.Value)
		got++
		if got == n {
			steady = time.Since(first)
			break
		}
	}
	if err := s.Close(); err != nil {
		return 0, fmt.Errorf("kstream: close: %w", err)
	}
	if got < n {
		return 0, fmt.Errorf("kstream: %d of %d records: %v", got, n, ctx.Err())
	}
	if size != got*benchValueSize {
		return 0, fmt.Errorf("kstream: %d bytes in %d records", size, got)
	}
	return steady, nil
}

// benchSession is what one consumer life cost.
type benchSession struct {
	total   time.Duration // new client to closed
	steady  time.Duration // first record to last record
	cpu     time.Duration // CPU time of the process meanwhile (estimated)
	mallocs uint64        // heap allocations in the process meanwhile
	bytes   uint64        // heap bytes allocated in the process meanwhile
}

func (r benchSession) recsPerSec() float64 { return benchRecordCount / r.total.Seconds() }
func (r benchSession) steadyPerSec() float64 {
	return benchRecordCount / r.steady.Seconds()
}
func (r benchSession) allocsPerRec() float64 { return float64(r.mallocs) / benchRecordCount }

// benchCPU returns the CPU time the Go runtime has spent busy (GOMAXPROCS
// times wall time, less idle time): user code, GC and scavenging, of the
// consumer and of the in-process broker alike. The runtime updates it only
// when a GC cycle ends, so it is read right after a forced one. It is less
// sensitive than wall time to what else the machine is doing.
func benchCPU() time.Duration {
	runtime.GC()
	s := []metrics.Sample{{Name: "/cpu/classes/total:cpu-seconds"}, {Name: "/cpu/classes/idle:cpu-seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64 || s[1].Value.Kind() != metrics.KindFloat64 {
		return 0
	}
	return time.Duration((s[0].Value.Float64() - s[1].Value.Float64()) * float64(time.Second))
}

func runBenchSession(b *testing.B, consume benchConsumer, kind string, brokers []string, topic string) benchSession {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), benchSessionLimit)
	defer cancel()
	group := benchGroup(kind)
	var before, after runtime.MemStats
	cpu := benchCPU() // also: neither session pays for the other's garbage
	runtime.ReadMemStats(&before)
	start := time.Now()
	steady, err := consume(ctx, brokers, topic, group, benchRecordCount)
	total := time.Since(start)
	runtime.ReadMemStats(&after)
	cpu = benchCPU() - cpu
	if err != nil {
		b.Fatalf("%s: %v", kind, err)
	}
	return benchSession{
		total:   total,
		steady:  steady,
		cpu:     cpu,
		mallocs: after.Mallocs - before.Mallocs,
		bytes:   after.TotalAlloc - before.TotalAlloc,
	}
}

var benchConsumers = []struct {
	name    string
	consume benchConsumer
}{
	{"franz-go", consumeFranz},
	{"kstream", consumeStream},
}

// BenchmarkRecords reads the whole topic in a new group per iteration,
// with franz-go directly and with a Stream's Records iterator. ns/record and
// allocs/record cover the whole session (join, read, commit, leave);
// steady-ns/record only the reading. The forced GCs around each session
// (see benchCPU) are in ns/op but in none of the per-record metrics.
func BenchmarkRecords(b *testing.B) {
	brokers, topic := benchCluster(b)
	for _, bc := range benchConsumers {
		b.Run(bc.name, func(b *testing.B) {
			var sum benchSession
			for b.Loop() {
				r := runBenchSession(b, bc.consume, bc.name, brokers, topic)
				sum.total += r.total
				sum.steady += r.steady
				sum.cpu += r.cpu
				sum.mallocs += r.mallocs
				sum.bytes += r.bytes
			}
			recs := float64(b.N) * benchRecordCount
			b.ReportMetric(float64(sum.total.Nanoseconds())/recs, "ns/record")
			b.ReportMetric(float64(sum.steady.Nanoseconds())/recs, "steady-ns/record")
			b.ReportMetric(float64(sum.cpu.Nanoseconds())/recs, "cpu-ns/record")
			b.ReportMetric(float64(sum.mallocs)/recs, "allocs/record")
			b.ReportMetric(float64(sum.bytes)/recs, "B/record")
		})
	}
}

// BenchmarkRecordsRatio runs both consumers in the same process, in
// alternating order, benchRounds times per iteration (one iteration unless
// -benchtime asks for more), after one unmeasured warm-up session each. It
// reports the median over rounds of kstream's records/s divided by
// franz-go's (ratio for whole sessions, steady-ratio for reading only,
// cpu-ratio for records per CPU second), the median allocs/record of each,
// and the median per-round difference. Above 1 kstream is faster. It only
// reports; it asserts nothing about speed.
func BenchmarkRecordsRatio(b *testing.B) {
	brokers, topic := benchCluster(b)
	runBenchSession(b, consumeFranz, "warmup-franz-go", brokers, topic)
	runBenchSession(b, consumeStream, "warmup-kstream", brokers, topic)

	var ratios, steadyRatios, cpuRatios, kAllocs, fAllocs, extra, kRate, fRate []float64
	for b.Loop() {
		for round := range benchRounds {
			order := []int{0, 1} // franz-go first in even rounds
			if round%2 == 1 {
				order = []int{1, 0}
			}
			var sess [2]benchSession
			for _, i := range order {
				bc := benchConsumers[i]
				sess[i] = runBenchSession(b, bc.consume, bc.name, brokers, topic)
			}
			f, k := sess[0], sess[1]
			ratios = append(ratios, k.recsPerSec()/f.recsPerSec())
			steadyRatios = append(steadyRatios, k.steadyPerSec()/f.steadyPerSec())
			cpuRatios = append(cpuRatios, float64(f.cpu)/float64(k.cpu))
			kAllocs = append(kAllocs, k.allocsPerRec())
			fAllocs = append(fAllocs, f.allocsPerRec())
			extra = append(extra, k.allocsPerRec()-f.allocsPerRec())
			kRate = append(kRate, k.recsPerSec())
			fRate = append(fRate, f.recsPerSec())
		}
	}
	b.ReportMetric(0, "ns/op") // an iteration is several sessions; see ratio
	b.ReportMetric(benchMedian(ratios), "ratio")
	b.ReportMetric(benchMedian(steadyRatios), "steady-ratio")
	b.ReportMetric(benchMedian(cpuRatios), "cpu-ratio")
	b.ReportMetric(benchMedian(kAllocs), "kstream-allocs/rec")
	b.ReportMetric(benchMedian(fAllocs), "franzgo-allocs/rec")
	b.ReportMetric(benchMedian(extra), "extra-allocs/rec")
	b.Logf("%d rounds of %d records: ratio %.3f (steady %.3f, cpu %.3f, per round %s); kstream %.0f rec/s %.3f allocs/rec; franz-go %.0f rec/s %.3f allocs/rec; extra %.3f allocs/rec",
		len(ratios), benchRecordCount, benchMedian(ratios), benchMedian(steadyRatios), benchMedian(cpuRatios), benchFormat(ratios),
		benchMedian(kRate), benchMedian(kAllocs), benchMedian(fRate), benchMedian(fAllocs), benchMedian(extra))
}

func benchMedian(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func benchFormat(xs []float64) string {
	out := make([]byte, 0, 8*len(xs))
	for i, x := range xs {
		if i > 0 {
			out = append(out, ' ')
		}
		out = fmt.Appendf(out, "%.3f", x)
	}
	return string(out)
}
