package kstream_test

// Per-record overhead without a broker's log: kstream and a hand-written
// franz-go loop read from a kfake cluster started with kfake.SyntheticFetch,
// which answers every fetch with copies of one canned record batch from any
// offset, with a high watermark of 1<<62. Nothing is stored or read from a
// log; fetches still go over a loopback TCP socket to the in-process broker,
// which copies the canned batch into each response. So what is measured is
// the client: the fetch path, franz-go's batch decoding, and what kstream adds
// on top (iterator, bookkeeping, Record[T], marks).
//
//	go test -run '^$' -bench Synthetic -count 6 ./kstream | tee new.txt
//	benchstat new.txt                      # one column, a row per benchmark
//	benchstat old.txt new.txt              # a regression check
//
// One op is one record: ns/op is the time per record, and ns/record repeats
// it under a name that says so. -benchmem's allocs/op and B/op are integers
// and round a fraction of an allocation per record to 0, so allocs/record and
// B/record are reported as well, from runtime.ReadMemStats around the timed
// records. They count the whole process, the in-process broker included (it
// allocates each fetch response); the franz-go loop pays the same, so the
// difference between kstream and franz-go is what kstream adds.
//
// Each run of a benchmark function opens a new consumer, reads
// synBenchWarmup records untimed (connecting, joining, the first fetches),
// then times b.N records.

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
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

// synBenchMeter measures the allocations of the timed records.
type synBenchMeter struct{ before, after runtime.MemStats }

func (m *synBenchMeter) start() { runtime.ReadMemStats(&m.before) }
func (m *synBenchMeter) stop()  { runtime.ReadMemStats(&m.after) }

func (m *synBenchMeter) report(b *testing.B) {
	n := float64(b.N)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/record")
	b.ReportMetric(float64(m.after.Mallocs-m.before.Mallocs)/n, "allocs/record")
	b.ReportMetric(float64(m.after.TotalAlloc-m.before.TotalAlloc)/n, "B/record")
}

// synBenchSink keeps the value lengths observable, so that nothing is
// optimized away.
var synBenchSink atomic.Int64

// BenchmarkSyntheticRecords reads with a Stream's Records loop: without a
// group (the iterator and decode path alone), and with one (marks, and the
// autocommit they feed, included).
func BenchmarkSyntheticRecords(b *testing.B) {
	brokers := synBenchCluster(b)
	for _, withGroup := range []bool{false, true} {
		name := "nogroup"
		if withGroup {
			name = "group"
		}
		b.Run(name, func(b *testing.B) {
			opts := []kstream.Option{
				kstream.Brokers(brokers...),
				kstream.Topics(synBenchTopic),
				kstream.Logger(synBenchLogger),
			}
			if withGroup {
				opts = append(opts, kstream.Group(synBenchGroup("kstream")))
			}
			s, err := kstream.NewStream(codec.Bytes(), opts...)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), synBenchLimit)
			defer cancel()
			if err := s.Open(ctx); err != nil {
				b.Fatal(err)
			}
			var (
				m    synBenchMeter
				n    int
				size int
			)
			for rec, err := range s.Records(ctx) {
				if err != nil {
					b.Fatalf("record %d: %v", n, err)
				}
				size += len(rec.Value)
				n++
				if n < synBenchWarmup {
					continue
				}
				if n == synBenchWarmup {
					m.start()
				}
				if !b.Loop() {
					m.stop()
					break
				}
			}
			if err := ctx.Err(); err != nil {
				b.Fatalf("after %d records: %v", n, err)
			}
			m.report(b)
			synBenchSink.Add(int64(size))
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkSyntheticFranzGo is the baseline: the same reading with franz-go
// used directly, with the client options a stream sets. nogroup is a plain
// PollRecords loop. group is what a stream does by default in the leanest
// hand-written form: rebalances blocked while records are in hand, each
// poll's progress marked once per partition (its last record), autocommit of
// marks. group-markall marks every record (MarkCommitRecords of the whole
// poll), the straightforward use of franz-go's API and the baseline of
// BenchmarkRecords.
func BenchmarkSyntheticFranzGo(b *testing.B) {
	brokers := synBenchCluster(b)
	for _, mode := range []string{"nogroup", "group", "group-markall"} {
		b.Run(mode, func(b *testing.B) {
			opts := []kgo.Opt{
				kgo.SeedBrokers(brokers...),
				kgo.ConsumeTopics(synBenchTopic),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
				kgo.FetchMaxWait(kstream.DefaultFetchMaxWait),
			}
			group := mode != "nogroup"
			if group {
				opts = append(opts,
					kgo.ConsumerGroup(synBenchGroup("franz-go")),
					kgo.BlockRebalanceOnPoll(),
					kgo.AutoCommitMarks(),
				)
			}
			cl, err := kgo.NewClient(opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer cl.CloseAllowingRebalance()
			ctx, cancel := context.WithTimeout(context.Background(), synBenchLimit)
			defer cancel()
			var (
				m    synBenchMeter
				n    int
				size int
				more = true
			)
			for more {
				fs := cl.PollRecords(ctx, kstream.DefaultMaxPollRecords)
				if err := ctx.Err(); err != nil {
					b.Fatalf("after %d records: %v", n, err)
				}
				fs.EachError(func(t string, p int32, err error) {
					b.Fatalf("fetch %s/%d: %v", t, p, err)
				})
				for i := range fs {
					for j := range fs[i].Topics {
						for k := range fs[i].Topics[j].Partitions {
							p := &fs[i].Topics[j].Partitions[k]
							for _, r := range p.Records {
								if !more {
									break
								}
								size += len(r.Value)
								n++
								if n < synBenchWarmup {
									continue
								}
								if n == synBenchWarmup {
									m.start()
								}
								if !b.Loop() {
									m.stop()
									more = false
								}
							}
							if mode == "group" && len(p.Records) > 0 {
								cl.MarkCommitRecords(p.Records[len(p.Records)-1])
							}
						}
					}
				}
				if mode == "group-markall" {
					fs.EachPartition(func(p kgo.FetchTopicPartition) { cl.MarkCommitRecords(p.Records...) })
				}
				if group {
					cl.AllowRebalance()
				}
			}
			m.report(b)
			synBenchSink.Add(int64(size))
		})
	}
}

// BenchmarkSyntheticHandle runs a Handle stream in an engine, with a group,
// handling records with a handler that only counts them: serial, and with
// PartitionConcurrency(12) and KeyConcurrency(12), whose dispatcher hands
// each record to a lane goroutine. The handler itself counts the warm-up and
// the b.N timed records, and starts and stops the timer.
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
				switch count.Add(1) {
				case synBenchWarmup:
					m.start()
					b.ResetTimer()
					b.StartTimer()
					close(warmed)
				case target:
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
