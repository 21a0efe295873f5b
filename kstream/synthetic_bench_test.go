//go:build unix

package kstream_test

// Per-record overhead without a broker's log: kstream and a hand-written
// franz-go loop read from a kfake cluster started with kfake.SyntheticFetch,
// which answers every fetch with copies of one canned record batch from any
// offset, with a high watermark of 1<<62. Nothing is stored or read from a
// log; fetches still go over a loopback TCP socket to the in-process broker,
// which copies the canned batch into each response. So what is measured is
// mostly the client: the fetch path, franz-go's batch decoding, and what
// kstream adds on top (iterator, bookkeeping, Record[T], marks, and for
// Handle streams the engine and the concurrency dispatcher).
//
//	go test -run '^$' -bench Synthetic -count 6 ./kstream | tee new.txt
//	benchstat new.txt                      # one column, a row per benchmark
//	benchstat old.txt new.txt              # a regression check
//
// In BenchmarkSyntheticRecords, BenchmarkSyntheticFranzGo and
// BenchmarkSyntheticHandle one op is one record: ns/op is the time per
// record, and ns/record repeats it under a name that says so. -benchmem's
// allocs/op and B/op are integers and round a fraction of an allocation per
// record down to 0, so allocs/record and B/record are reported as well, from
// runtime.ReadMemStats around the timed records, and cpu-ns/record from
// getrusage (user and system time). All three count the whole process, the
// in-process broker included (it allocates and fills each fetch response);
// the franz-go loop pays the same, so the difference between kstream and
// franz-go is what kstream adds. CPU time is steadier than wall time when
// other processes load the machine. BenchmarkSyntheticRatio puts the two side
// by side in alternating rounds and reports the differences directly.
//
// Each run of a benchmark function opens a new consumer, reads
// synBenchWarmup records untimed (connecting, joining, the first fetches),
// then times b.N records. The file needs getrusage, so it builds on unix
// only.

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

const (
	synBenchTopic      = "synthetic"
	synBenchPartitions = 12  // so that PartitionConcurrency(12) has 12 lanes
	synBenchBatchLen   = 500 // records per canned batch
	synBenchKeys       = 500 // distinct keys in a batch, "key-0000" ...
	synBenchValueSize  = 100 // bytes per value
	synBenchWarmup     = 20_000
	synBenchConcurrent = 12 // n of PartitionConcurrency and KeyConcurrency
	synBenchLimit      = 2 * time.Minute
)

// The synthetic cluster is shared by every Synthetic benchmark of the
// process, so that kstream and franz-go read from the same broker. It holds
// no data and is left to the end of the process.
var (
	synBenchOnce    sync.Once
	synBenchBrokers []string
	synBenchErr     error
	synBenchSeq     atomic.Int64
)

func synBenchCluster(b *testing.B) []string {
	b.Helper()
	synBenchOnce.Do(func() {
		var batch []byte
		batch, synBenchErr = synBenchBatch()
		if synBenchErr != nil {
			return
		}
		var c *kfake.Cluster
		c, synBenchErr = kfake.NewCluster(
			kfake.NumBrokers(1),
			kfake.SeedTopics(synBenchPartitions, synBenchTopic),
			kfake.SyntheticFetch(kfake.SyntheticBatch{Batch: batch}),
		)
		if synBenchErr == nil {
			synBenchBrokers = c.ListenAddrs()
		}
	})
	if synBenchErr != nil {
		b.Fatalf("synthetic cluster: %v", synBenchErr)
	}
	return synBenchBrokers
}

func synBenchGroup(kind string) string {
	return fmt.Sprintf("synthetic-%s-%d-%d", kind, synBenchRunID, synBenchSeq.Add(1))
}

var (
	synBenchRunID  = time.Now().UnixNano()
	synBenchLogger = slog.New(slog.DiscardHandler)
)

// synBenchBatch builds an uncompressed v2 record batch of synBenchBatchLen
// records, each with a key (synBenchKeys distinct ones, so that
// KeyConcurrency spreads them) and a synBenchValueSize byte value.
func synBenchBatch() ([]byte, error) {
	var recs []byte
	value := make([]byte, synBenchValueSize)
	for i := range synBenchBatchLen {
		for j := range value {
			value[j] = byte('a' + (i+j)%26)
		}
		r := kmsg.Record{
			OffsetDelta: int32(i),
			Key:         fmt.Appendf(nil, "key-%04d", i%synBenchKeys),
			Value:       value,
		}
		// Length counts what follows the length varint; a Length of 0 is
		// encoded in one byte.
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		recs = r.AppendTo(recs)
	}
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	rb := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		LastOffsetDelta:      synBenchBatchLen - 1,
		FirstTimestamp:       ts,
		MaxTimestamp:         ts,
		ProducerID:           -1,
		ProducerEpoch:        -1,
		FirstSequence:        -1,
		NumRecords:           synBenchBatchLen,
		Records:              recs,
	}
	raw := rb.AppendTo(nil)
	// Batch layout: FirstOffset int64, Length int32 (bytes after it),
	// PartitionLeaderEpoch int32, Magic int8, CRC int32 (Castagnoli, of
	// everything after it).
	const lengthAt, crcAt, crcFrom = 8, 17, 21
	if len(raw) < 61 {
		return nil, fmt.Errorf("batch of %d bytes", len(raw))
	}
	binary.BigEndian.PutUint32(raw[lengthAt:], uint32(len(raw)-lengthAt-4))
	binary.BigEndian.PutUint32(raw[crcAt:], crc32.Checksum(raw[crcFrom:], crc32.MakeTable(crc32.Castagnoli)))
	return raw, nil
}

// synBenchMeter measures the timed records: allocations (the whole
// process's, from runtime.ReadMemStats) and CPU time (user and system, of the
// whole process, from getrusage).
type synBenchMeter struct {
	mem      [2]runtime.MemStats
	cpu      [2]time.Duration
	wall     [2]time.Time
	recs     int // records read between start and stop, when not b.N
	started  bool
	finished bool
}

func synBenchCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (m *synBenchMeter) start() {
	runtime.ReadMemStats(&m.mem[0])
	m.cpu[0] = synBenchCPU()
	m.wall[0] = time.Now()
	m.started = true
}

func (m *synBenchMeter) stop() {
	m.wall[1] = time.Now()
	m.cpu[1] = synBenchCPU()
	runtime.ReadMemStats(&m.mem[1])
	m.finished = true
}

func (m *synBenchMeter) nsPerRec() float64 {
	return float64(m.wall[1].Sub(m.wall[0]).Nanoseconds()) / float64(m.recs)
}
func (m *synBenchMeter) cpuPerRec() float64 {
	return float64((m.cpu[1] - m.cpu[0]).Nanoseconds()) / float64(m.recs)
}
func (m *synBenchMeter) allocsPerRec() float64 {
	return float64(m.mem[1].Mallocs-m.mem[0].Mallocs) / float64(m.recs)
}
func (m *synBenchMeter) bytesPerRec() float64 {
	return float64(m.mem[1].TotalAlloc-m.mem[0].TotalAlloc) / float64(m.recs)
}

// report reports the metrics of b.N timed records.
func (m *synBenchMeter) report(b *testing.B) {
	if !m.started || !m.finished {
		b.Fatal("the meter was not started and stopped")
	}
	m.recs = b.N
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/record")
	b.ReportMetric(m.cpuPerRec(), "cpu-ns/record")
	b.ReportMetric(m.allocsPerRec(), "allocs/record")
	b.ReportMetric(m.bytesPerRec(), "B/record")
}

// synBenchSink keeps the values read observable.
var synBenchSink atomic.Int64

// synConsumer reads from the synthetic topic. read calls each with every
// record until each returns false (that record is read too).
type synConsumer interface {
	read(ctx context.Context, each func(value []byte) bool) error
	close() error
}

// synStream reads with a Stream's Records loop. Each read is one range; a
// range resumes where the last one broke off.
type synStream struct{ s *kstream.Stream[[]byte] }

func newSynStream(ctx context.Context, brokers []string, group bool) (*synStream, error) {
	opts := []kstream.Option{
		kstream.Brokers(brokers...),
		kstream.Topics(synBenchTopic),
		kstream.Logger(synBenchLogger),
	}
	if group {
		opts = append(opts, kstream.Group(synBenchGroup("kstream")))
	}
	s, err := kstream.NewStream(codec.Bytes(), opts...)
	if err != nil {
		return nil, err
	}
	if err := s.Open(ctx); err != nil {
		return nil, err
	}
	return &synStream{s}, nil
}

func (c *synStream) read(ctx context.Context, each func([]byte) bool) error {
	for rec, err := range c.s.Records(ctx) {
		if err != nil {
			return err
		}
		if !each(rec.Value) {
			return nil
		}
	}
	return fmt.Errorf("kstream: range ended: %v", ctx.Err())
}

func (c *synStream) close() error { return c.s.Close() }

// synFranz is the baseline: franz-go used directly, with the client options
// a stream sets (FetchMaxWait, FetchMaxBytes: a smaller fetch costs more
// per record here, where the broker does no work per byte). Without a group it is a plain PollRecords loop. With one
// it does what a stream does by default, in the leanest hand-written form:
// rebalances blocked while a poll's records are in hand, each poll's
// progress marked once per partition (its last record) when the poll is
// done, autocommit of marks. markAll instead marks every record of the poll
// (MarkCommitRecords of the whole poll), the straightforward use of the API
// and the baseline of BenchmarkRecords.
type synFranz struct {
	cl      *kgo.Client
	group   bool
	markAll bool
	buf     []*kgo.Record // the current poll's records
	pos     int
	lasts   []*kgo.Record // the current poll's last record of each partition
}

func newSynFranz(brokers []string, group, markAll bool) (*synFranz, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(synBenchTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(kstream.DefaultFetchMaxWait),
		kgo.FetchMaxBytes(kstream.DefaultFetchMaxBytes),
	}
	if group {
		opts = append(opts,
			kgo.ConsumerGroup(synBenchGroup("franz-go")),
			kgo.BlockRebalanceOnPoll(),
			kgo.AutoCommitMarks(),
		)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	return &synFranz{cl: cl, group: group, markAll: markAll}, nil
}

func (c *synFranz) read(ctx context.Context, each func([]byte) bool) error {
	for {
		for c.pos < len(c.buf) {
			r := c.buf[c.pos]
			c.pos++
			if !each(r.Value) {
				return nil
			}
		}
		if c.group { // the poll is done: mark it, let a rebalance run
			if c.markAll {
				c.cl.MarkCommitRecords(c.buf...)
			} else {
				c.cl.MarkCommitRecords(c.lasts...)
			}
			c.cl.AllowRebalance()
		}
		fs := c.cl.PollRecords(ctx, benchPollRecords)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			ferr = fmt.Errorf("franz-go: fetch %s/%d: %w", t, p, err)
		})
		if ferr != nil {
			return ferr
		}
		c.buf, c.lasts, c.pos = c.buf[:0], c.lasts[:0], 0
		for i := range fs {
			for j := range fs[i].Topics {
				for k := range fs[i].Topics[j].Partitions {
					if rs := fs[i].Topics[j].Partitions[k].Records; len(rs) > 0 {
						c.buf = append(c.buf, rs...)
						c.lasts = append(c.lasts, rs[len(rs)-1])
					}
				}
			}
		}
	}
}

func (c *synFranz) close() error {
	c.cl.CloseAllowingRebalance()
	return nil
}

type synBenchImpl struct {
	name string
	open func(ctx context.Context, brokers []string) (synConsumer, error)
}

func synKstream(group bool) func(context.Context, []string) (synConsumer, error) {
	return func(ctx context.Context, brokers []string) (synConsumer, error) {
		return newSynStream(ctx, brokers, group)
	}
}

func synFranzGo(group, markAll bool) func(context.Context, []string) (synConsumer, error) {
	return func(_ context.Context, brokers []string) (synConsumer, error) {
		return newSynFranz(brokers, group, markAll)
	}
}

// synBenchPerRecord times b.N records of one consumer, one op per record,
// after synBenchWarmup untimed ones.
func synBenchPerRecord(b *testing.B, impl synBenchImpl) {
	brokers := synBenchCluster(b)
	ctx, cancel := context.WithTimeout(context.Background(), synBenchLimit)
	defer cancel()
	c, err := impl.open(ctx, brokers)
	if err != nil {
		b.Fatal(err)
	}
	var (
		m    synBenchMeter
		n    int
		size int
	)
	err = c.read(ctx, func(v []byte) bool {
		size += len(v)
		n++
		return n < synBenchWarmup
	})
	if err != nil {
		b.Fatalf("warm-up, after %d records: %v", n, err)
	}
	m.start()
	// The first call of b.Loop starts the timer, so the first record is
	// outside it and the b.N after it are inside.
	err = c.read(ctx, func(v []byte) bool {
		size += len(v)
		if b.Loop() {
			return true
		}
		m.stop()
		return false
	})
	if err != nil {
		b.Fatal(err)
	}
	m.report(b)
	synBenchSink.Add(int64(size))
	if err := c.close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSyntheticRecords reads with a Stream's Records loop: without a
// group (the iterator and decode path alone), and with one (marks, and the
// autocommit they feed, included).
func BenchmarkSyntheticRecords(b *testing.B) {
	b.Run("nogroup", func(b *testing.B) { synBenchPerRecord(b, synBenchImpl{"kstream", synKstream(false)}) })
	b.Run("group", func(b *testing.B) { synBenchPerRecord(b, synBenchImpl{"kstream", synKstream(true)}) })
}

// BenchmarkSyntheticFranzGo is the baseline of BenchmarkSyntheticRecords:
// the same reading with franz-go directly (see synFranz). group is the lean
// equivalent of a stream with a group; group-markall marks every record.
func BenchmarkSyntheticFranzGo(b *testing.B) {
	b.Run("nogroup", func(b *testing.B) { synBenchPerRecord(b, synBenchImpl{"franz-go", synFranzGo(false, false)}) })
	b.Run("group", func(b *testing.B) { synBenchPerRecord(b, synBenchImpl{"franz-go", synFranzGo(true, false)}) })
	b.Run("group-markall", func(b *testing.B) { synBenchPerRecord(b, synBenchImpl{"franz-go", synFranzGo(true, true)}) })
}

const (
	synRatioRounds  = 9
	synRatioRecords = 200_000 // per consumer and round
)

// BenchmarkSyntheticRatio reads with kstream and with franz-go in the same
// process, one after the other in alternating order, synRatioRounds rounds
// of synRatioRecords records each per iteration; the two consumers stay
// open, so a round is reading only. It reports medians over the rounds of
// the per-round comparison: ratio (kstream's records/s over franz-go's;
// above 1 kstream is faster), cpu-ratio (the same for records per CPU
// second), extra-ns/record and extra-cpu-ns/record (kstream's time per
// record less franz-go's), extra-allocs/record (likewise), and each side's
// allocs/record. Since both sides of a round run within a second of each
// other, the comparison drifts much less with the machine's load than two
// benchmarks run apart do.
func BenchmarkSyntheticRatio(b *testing.B) {
	brokers := synBenchCluster(b)
	for _, group := range []bool{false, true} {
		name := "nogroup"
		if group {
			name = "group"
		}
		b.Run(name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*synBenchLimit)
			defer cancel()
			impls := []synBenchImpl{{"franz-go", synFranzGo(group, false)}, {"kstream", synKstream(group)}}
			var cs [2]synConsumer
			for i, impl := range impls {
				c, err := impl.open(ctx, brokers)
				if err != nil {
					b.Fatal(err)
				}
				defer c.close()
				cs[i] = c
			}
			readN := func(c synConsumer, n int, m *synBenchMeter) {
				got := 0
				if m != nil {
					m.start()
				}
				err := c.read(ctx, func(v []byte) bool {
					synBenchSink.Add(int64(len(v)))
					got++
					return got < n
				})
				if m != nil {
					m.stop()
					m.recs = got
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			for _, c := range cs { // warm-up
				readN(c, synBenchWarmup, nil)
			}
			var ratio, cpuRatio, extraNs, extraCPU, extraAllocs, fAllocs, kAllocs []float64
			for b.Loop() {
				for round := range synRatioRounds {
					order := []int{0, 1}
					if round%2 == 1 {
						order = []int{1, 0}
					}
					var ms [2]synBenchMeter
					for _, i := range order {
						readN(cs[i], synRatioRecords, &ms[i])
					}
					f, k := &ms[0], &ms[1]
					ratio = append(ratio, f.nsPerRec()/k.nsPerRec())
					cpuRatio = append(cpuRatio, f.cpuPerRec()/k.cpuPerRec())
					extraNs = append(extraNs, k.nsPerRec()-f.nsPerRec())
					extraCPU = append(extraCPU, k.cpuPerRec()-f.cpuPerRec())
					extraAllocs = append(extraAllocs, k.allocsPerRec()-f.allocsPerRec())
					fAllocs = append(fAllocs, f.allocsPerRec())
					kAllocs = append(kAllocs, k.allocsPerRec())
				}
			}
			b.ReportMetric(0, "ns/op") // an op is many rounds; see ratio
			b.ReportMetric(synMedian(ratio), "ratio")
			b.ReportMetric(synMedian(cpuRatio), "cpu-ratio")
			b.ReportMetric(synMedian(extraNs), "extra-ns/record")
			b.ReportMetric(synMedian(extraCPU), "extra-cpu-ns/record")
			b.ReportMetric(synMedian(extraAllocs), "extra-allocs/record")
			b.ReportMetric(synMedian(fAllocs), "franzgo-allocs/record")
			b.ReportMetric(synMedian(kAllocs), "kstream-allocs/record")
		})
	}
}

func synMedian(xs []float64) float64 {
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

// BenchmarkSyntheticHandle runs a Handle stream in an engine, with a group,
// handling records with a handler that only counts them: serial, and with
// PartitionConcurrency(12) and KeyConcurrency(12), whose dispatcher hands
// each record to a lane goroutine. The handler counts the warm-up and the
// b.N timed records, and starts and stops the timer itself.
func BenchmarkSyntheticHandle(b *testing.B) {
	brokers := synBenchCluster(b)
	modes := []struct {
		name string
		opt  kstream.Option
	}{
		{"serial", nil},
		{fmt.Sprintf("partition-%d", synBenchConcurrent), kstream.PartitionConcurrency(synBenchConcurrent)},
		{fmt.Sprintf("key-%d", synBenchConcurrent), kstream.KeyConcurrency(synBenchConcurrent)},
	}
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			eng, err := kstream.NewEngine(kstream.Brokers(brokers...), kstream.Logger(synBenchLogger))
			if err != nil {
				b.Fatal(err)
			}
			opts := []kstream.Option{
				kstream.Topics(synBenchTopic),
				kstream.Group(synBenchGroup("handle")),
				kstream.Name("synthetic-handle"),
			}
			if mode.opt != nil {
				opts = append(opts, mode.opt)
			}
			s, err := kstream.NewStream(codec.Bytes(), opts...)
			if err != nil {
				b.Fatal(err)
			}
			var (
				m       synBenchMeter
				count   atomic.Int64
				size    atomic.Int64
				target  = int64(synBenchWarmup + b.N)
				warmed  = make(chan struct{})
				handled = make(chan struct{})
			)
			b.StopTimer()
			s.Handle(func(_ context.Context, rec kstream.Record[[]byte]) error {
				size.Add(int64(len(rec.Value)))
				// The benchmark's goroutine waits on warmed and handled
				// meanwhile, so the handler may use b and m.
				switch count.Add(1) {
				case synBenchWarmup:
					m.start()
					b.ResetTimer()
					b.StartTimer()
					close(warmed)
				case target:
					<-warmed // with concurrency, the warm-up's handler may still be starting the meter
					b.StopTimer()
					m.stop()
					close(handled)
				}
				return nil
			})
			if err := eng.Add(s); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), synBenchLimit)
			defer cancel()
			if err := eng.Start(ctx); err != nil {
				b.Fatal(err)
			}
			for _, ch := range []chan struct{}{warmed, handled} {
				select {
				case <-ch:
				case <-ctx.Done():
					b.Fatalf("%d of %d records handled: %v", count.Load(), target, ctx.Err())
				}
			}
			if err := eng.Stop(ctx); err != nil {
				b.Fatal(err)
			}
			m.report(b)
			synBenchSink.Add(size.Load())
		})
	}
}
