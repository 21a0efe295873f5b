package kstream_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// rangeToEnd ranges s until its iterator ends and returns the offsets per
// partition; it fails t if the iterator does not end by itself.
func rangeToEnd(t *testing.T, ctx context.Context, s *kstream.Stream[string]) *perPartition {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var got perPartition
	for rec, err := range s.Records(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got.add(rec.Partition, rec.Offset)
	}
	if ctx.Err() != nil {
		t.Fatalf("the bounded iterator did not end by itself: %v", ctx.Err())
	}
	return &got
}

// StopAtEnd without a group: the end offsets are those of Open; records
// produced after Open are not yielded.
func TestStopAtEndNoGroup(t *testing.T) {
	const parts, per = 2, 10
	e := newEnv(t, parts, parts*per)
	s := e.stream(kstream.StopAtEnd())
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e.produce(parts*per, 2*parts*per) // after Open: past the end
	got := rangeToEnd(t, e.ctx, s)
	got.check(t, parts, 0, per)
	// Ranging again ends at once.
	if again := rangeToEnd(t, e.ctx, s); again.count(0)+again.count(1) != 0 {
		t.Fatalf("ranging a stream that reached its end yielded %v", again.offs)
	}
}

// StopAtEnd with a group: an empty partition is done at once, the others
// when their last record is processed; what was processed is committed.
func TestStopAtEndGroupEmptyPartition(t *testing.T) {
	e := newEnv(t, 3, 0)
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, &kgo.Record{Topic: e.topic, Partition: int32(i % 2), Value: []byte(fmt.Sprint(i))})
	}
	if err := e.c.Produce(e.ctx, recs...); err != nil {
		t.Fatal(err)
	}
	s := e.stream(kstream.Group("end-group"), kstream.StopAtEnd())
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	got := rangeToEnd(t, e.ctx, s)
	got.check(t, 2, 0, 5)
	if n := got.count(2); n != 0 {
		t.Fatalf("partition 2, empty, yielded %d records", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("end-group", map[int32]int64{0: 5, 1: 5})
}

// A bounded stream over empty partitions ends at once, with a group and
// without.
func TestStopAtEndEmpty(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []kstream.Option
	}{{"group", []kstream.Option{kstream.Group("end-empty")}}, {"no group", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 2, 0)
			s := e.stream(append(tc.opts, kstream.StopAtEnd())...)
			defer s.Close()
			got := rangeToEnd(t, e.ctx, s) // opened by the range
			if n := got.count(0) + got.count(1); n != 0 {
				t.Fatalf("yielded %d records", n)
			}
		})
	}
}

// produceTimed writes n records to partition 0, record i with timestamp
// base + i seconds, and returns base.
func (e *env) produceTimed(n int) time.Time {
	e.t.Helper()
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: e.topic, Value: []byte(fmt.Sprint(i)), Timestamp: base.Add(time.Duration(i) * time.Second)})
	}
	if err := e.c.Produce(e.ctx, recs...); err != nil {
		e.t.Fatal(err)
	}
	return base
}

// StartAt on a fresh group starts at the first record at or after t;
// with StopAtEnd it is a replay of t to now. A committed offset takes
// precedence over StartAt.
func TestStartAt(t *testing.T) {
	e := newEnv(t, 1, 0)
	base := e.produceTimed(10)
	t.Run("fresh group, replay", func(t *testing.T) {
		s := e.stream(kstream.Group("start-fresh"), kstream.StartAt(base.Add(3500*time.Millisecond)), kstream.StopAtEnd())
		defer s.Close()
		got := rangeToEnd(t, e.ctx, s)
		got.check(t, 1, 4, 10)
	})
	t.Run("no group, replay", func(t *testing.T) {
		s := e.stream(kstream.StartAt(base.Add(7*time.Second)), kstream.StopAtEnd())
		defer s.Close()
		got := rangeToEnd(t, e.ctx, s)
		got.check(t, 1, 7, 10)
	})
	t.Run("after every record", func(t *testing.T) {
		s := e.stream(kstream.Group("start-late"), kstream.StartAt(time.Now()), kstream.StopAtEnd())
		defer s.Close()
		if got := rangeToEnd(t, e.ctx, s); got.count(0) != 0 {
			t.Fatalf("yielded %v", got.offs)
		}
	})
	t.Run("committed offset first", func(t *testing.T) {
		s := e.stream(kstream.Group("start-committed"))
		take(t, e.ctx, s, 2) // the range opens and closes s: 1, broken on, is not committed
		s = e.stream(kstream.Group("start-committed"), kstream.StartAt(base.Add(8*time.Second)), kstream.StopAtEnd())
		defer s.Close()
		got := rangeToEnd(t, e.ctx, s)
		got.check(t, 1, 1, 10)
	})
}

// StopAtEnd under read_committed ends at the last stable offset, past the
// markers of transactions, which are not records.
func TestStopAtEndReadCommitted(t *testing.T) {
	e := newEnv(t, 1, 0)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.c.Brokers()...), kgo.TransactionalID("tx-end"), kgo.DefaultProduceTopic(e.topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for range 2 {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := cl.ProduceSync(e.ctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.EndTransaction(e.ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		opts []kstream.Option
	}{{"group", []kstream.Option{kstream.Group("end-rc")}}, {"no group", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			s := e.stream(append(tc.opts, kstream.StopAtEnd(), kstream.ClientOptions(kgo.FetchIsolationLevel(kgo.ReadCommitted())))...)
			defer s.Close()
			got := rangeToEnd(t, e.ctx, s)
			// Offsets 0-2, a marker at 3, 4-6, a marker at 7.
			got.mu.Lock()
			defer got.mu.Unlock()
			if want := []int64{0, 1, 2, 4, 5, 6}; !slices.Equal(got.offs[0], want) {
				t.Fatalf("got offsets %v, want %v", got.offs[0], want)
			}
		})
	}
}

// StopAtEnd with a topic pattern needs a group, and NewStream says so;
// StartAt and StopAtEnd are options of streams; StartAt needs a time.
func TestStopAtEndPatternNeedsGroup(t *testing.T) {
	_, err := kstream.NewStream(codec.String(), kstream.TopicPattern("t-.*"), kstream.StopAtEnd())
	if !errors.Is(err, kstream.ErrInvalidOption) || !strings.Contains(err.Error(), "StopAtEnd") || !strings.Contains(err.Error(), "Group") {
		t.Fatalf("NewStream(TopicPattern, StopAtEnd) = %v, want ErrInvalidOption naming StopAtEnd and Group", err)
	}
	if _, err := kstream.NewStream(codec.String(), kstream.TopicPattern("t-.*"), kstream.Group("g"), kstream.StopAtEnd()); err != nil {
		t.Fatalf("with a group: %v", err)
	}
	if _, err := kstream.NewEngine(kstream.StopAtEnd()); !errors.Is(err, kstream.ErrInvalidOption) || !strings.Contains(err.Error(), "StopAtEnd") {
		t.Fatalf("NewEngine(StopAtEnd) = %v, want ErrInvalidOption naming StopAtEnd", err)
	}
	if _, err := kstream.NewEngine(kstream.StartAt(time.Now())); !errors.Is(err, kstream.ErrInvalidOption) || !strings.Contains(err.Error(), "StartAt") {
		t.Fatalf("NewEngine(StartAt) = %v, want ErrInvalidOption naming StartAt", err)
	}
	if _, err := kstream.NewStream(codec.String(), kstream.Topics("t"), kstream.StartAt(time.Time{})); !errors.Is(err, kstream.ErrInvalidOption) || !strings.Contains(err.Error(), "StartAt") {
		t.Fatalf("StartAt(zero time) = %v, want ErrInvalidOption naming StartAt", err)
	}
}

// The iterator matrix on a bounded stream: each way of leaving a range,
// then ranging again, yields every record below the end, and the stream
// ends by itself.
func TestStopAtEndIteratorMatrix(t *testing.T) {
	const n = 12
	type leave int
	const (
		breakOut leave = iota
		panicOut
		closeInBody
		closeFromGoroutine
		cancelCtx
	)
	for _, tc := range []struct {
		name    string
		leave   leave
		at      int64 // offset the range is left on
		batches bool
	}{
		{"break first", breakOut, 0, false},
		{"break middle", breakOut, 5, false},
		{"break last", breakOut, n - 1, false},
		{"panic", panicOut, 4, false},
		{"batches break", breakOut, 4, true},
		{"batches panic", panicOut, 8, true},
		{"close in body", closeInBody, 3, false},
		{"close from a goroutine", closeFromGoroutine, 3, false},
		{"cancel", cancelCtx, 6, false},
		{"batches cancel", cancelCtx, 6, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1, n)
			group := "matrix-" + strings.ReplaceAll(tc.name, " ", "-")
			s := e.stream(kstream.Group(group), kstream.StopAtEnd())
			if err := s.Open(e.ctx); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var seen []int64
			// first ranges once and leaves as the case says.
			first := func() {
				ctx, cancel := context.WithCancel(e.ctx)
				defer cancel()
				defer func() {
					if p := recover(); p != nil && tc.leave != panicOut {
						panic(p)
					}
				}()
				onRecord := func(off int64) bool {
					seen = append(seen, off)
					if off != tc.at {
						return true
					}
					switch tc.leave {
					case breakOut:
						return false
					case panicOut:
						panic("boom")
					case closeInBody:
						if err := s.Close(); err != nil {
							t.Error(err)
						}
					case closeFromGoroutine:
						done := make(chan struct{})
						go func() {
							defer close(done)
							if err := s.Close(); err != nil {
								t.Error(err)
							}
						}()
						<-done
					case cancelCtx:
						cancel()
					}
					return true
				}
				if tc.batches {
					for b, err := range s.Batches(ctx, 3, 20*time.Millisecond) {
						if err != nil {
							t.Fatal(err)
						}
						for _, r := range b {
							if !onRecord(r.Offset) {
								return
							}
						}
					}
					return
				}
				for r, err := range s.Records(ctx) {
					if err != nil {
						t.Fatal(err)
					}
					if !onRecord(r.Offset) {
						return
					}
				}
			}
			first()
			closed := tc.leave == closeInBody || tc.leave == closeFromGoroutine
			if closed {
				// A closed stream: a new one of the group reads what was
				// not committed.
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				s = e.stream(kstream.Group(group), kstream.StopAtEnd())
				defer s.Close()
			}
			rest := rangeToEnd(t, e.ctx, s)
			rest.mu.Lock()
			again := rest.offs[0]
			rest.mu.Unlock()
			leftUnprocessed := tc.leave == breakOut || tc.leave == panicOut
			if leftUnprocessed && (len(again) == 0 || again[0] > tc.at) {
				t.Fatalf("second range %v does not start at or before %d, on which the first was left", again, tc.at)
			}
			all := map[int64]bool{}
			for _, o := range append(seen, again...) {
				all[o] = true
			}
			if len(all) != n {
				t.Fatalf("records yielded over both ranges: %v then %v; want every offset below %d", seen, again, n)
			}
			// Records gives back the record left on; Batches its batch.
			if i := slices.Index(again, tc.at); leftUnprocessed && (i < 0 || !tc.batches && i != 0) {
				t.Fatalf("the record left on, %d, is at %d in the second range %v", tc.at, i, again)
			}
		})
	}
}
