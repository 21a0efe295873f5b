package kstream

// The Records iterator's per-record work alone, without a broker or a
// client: records already fetched (a pool of them, so that most are not in
// the CPU's caches, as after a real fetch) are put in a session's buffer 500
// at a time, as a poll would, and taken one by one the way Records does
// (step, decodeInto, the loop body). BenchmarkStepLean does what a lean
// franz-go loop does with the same records: call the body with each value,
// remember each partition's last record. The difference is kstream's own
// cost per record.
//
//	go test -run '^$' -bench 'Step' -count 6 ./kstream

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
)

const (
	stepBenchPool  = 1 << 18 // records, about 64 MiB with their values
	stepBenchPoll  = 500
	stepBenchParts = 6
)

// stepBenchRecords returns a pool of records as a fetch would have them:
// each poll's worth grouped by partition, offsets increasing.
func stepBenchRecords() [][]*kgo.Record {
	var polls [][]*kgo.Record
	next := make([]int64, stepBenchParts)
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for n := 0; n < stepBenchPool; n += stepBenchPoll {
		poll := make([]*kgo.Record, 0, stepBenchPoll)
		per := stepBenchPoll / stepBenchParts
		for p := range stepBenchParts {
			for range per {
				poll = append(poll, &kgo.Record{
					Topic: "t", Partition: int32(p), Offset: next[p],
					Key: []byte("key"), Value: make([]byte, 100), Timestamp: ts,
				})
				next[p]++
			}
		}
		polls = append(polls, poll)
	}
	return polls
}

var stepBenchSink int

func BenchmarkStepLean(b *testing.B) {
	polls := stepBenchRecords()
	last := make(map[int32]*kgo.Record)
	b.ResetTimer()
	i := 0
	for b.Loop() {
		poll := polls[i%len(polls)]
		i++
		clear(last)
		var prev *kgo.Record
		for _, r := range poll {
			stepBenchSink += len(r.Value)
			if prev != nil && prev.Partition != r.Partition {
				last[prev.Partition] = prev
			}
			prev = r
		}
		last[prev.Partition] = prev
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i*stepBenchPoll), "ns/record")
}

func BenchmarkStepKstream(b *testing.B) {
	polls := stepBenchRecords()
	s := &Stream[[]byte]{dec: codec.Bytes(), decNoPanic: true, decBytes: true}
	s.cfg.group = "g"
	ss := &session{cfg: &s.cfg, group: true, parts: make(map[topicPartition]*partState),
		scratch: make(map[string]map[int32]kgo.EpochOffset)}
	for p := range stepBenchParts {
		ss.parts[topicPartition{"t", int32(p)}] = &partState{}
	}
	ss.fetchCtx = context.Background()
	ctx := context.Background()
	done := ctx.Done()
	var rec Record[[]byte]
	body := func(rec Record[[]byte], err error) bool {
		stepBenchSink += len(rec.Value)
		return err == nil
	}
	b.ResetTimer()
	i := 0
	var prev *kgo.Record
	var run []*kgo.Record
	var head *kgo.Record
	next := 0
	for b.Loop() {
		poll := polls[i%len(polls)]
		i++
		ss.mu.Lock()
		ss.endRunLocked()
		ss.buf = append(ss.buf[:0], poll...)
		ss.pos = 0
		ss.mu.Unlock()
		run, head, next = nil, nil, 0
		for range poll {
			r := ss.runStep(run, next, head, done)
			if r != nil {
				next++
			} else {
				r, _, _, run = ss.step(ctx, done, prev)
				head, next = r, 1
			}
			if derr := s.decodeInto(&rec, r); !body(rec, derr) {
				b.Fatal(derr)
			}
			prev = r
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i*stepBenchPoll), "ns/record")
}
