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

	"github.com/gokstreams/kstreams/kstream"
)

// Seek back from the loop body: the records from the new position are
// yielded again, each once, and nothing after the record in hand is lost.
func TestSeekBackFromBody(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []kstream.Option
	}{
		{"group", []kstream.Option{kstream.Group("seek-body")}},
		{"no group", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1, 10)
			s := e.stream(tc.opts...)
			if err := s.Open(e.ctx); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var got []int64
			sought := false
			for rec, err := range s.Records(e.ctx) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, rec.Offset)
				if rec.Offset == 5 && !sought {
					sought = true
					if err := s.Seek(e.ctx, kstream.TopicPartitionOffset{Topic: e.topic, Partition: 0, Offset: 2}); err != nil {
						t.Fatal(err)
					}
				}
				if rec.Offset == 9 {
					break
				}
			}
			want := []int64{0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 6, 7, 8, 9}
			if !slices.Equal(got, want) {
				t.Fatalf("got offsets %v, want %v", got, want)
			}
		})
	}
}

// Seek back from another goroutine while the range waits for records (it
// is woken), and commits follow the new position backwards: in the default
// mode the final commit, with ManualCommit an explicit Commit.
func TestSeekBackCommitsBackwards(t *testing.T) {
	for _, tc := range []struct {
		name   string
		manual bool
	}{{"default", false}, {"manual", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1, 10)
			group := "seek-back-" + strings.ReplaceAll(tc.name, " ", "-")
			opts := []kstream.Option{kstream.Group(group)}
			if tc.manual {
				opts = append(opts, kstream.ManualCommit())
			}
			s := e.stream(opts...)
			if err := s.Open(e.ctx); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var got []int64
			for rec, err := range s.Records(e.ctx) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, rec.Offset)
				if rec.Offset == 9 && len(got) == 10 {
					if err := s.Commit(e.ctx); err != nil {
						t.Fatal(err)
					}
					// The range now waits for records: the seek must wake it.
					go func() {
						if err := s.Seek(e.ctx, kstream.TopicPartitionOffset{Topic: e.topic, Partition: 0, Offset: 3}); err != nil {
							t.Error(err)
						}
					}()
				}
				if len(got) == 13 { // 3, 4 and 5 again; 5 in hand
					if tc.manual {
						if err := s.Commit(e.ctx); err != nil {
							t.Fatal(err)
						}
					}
					break
				}
			}
			if want := []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 4, 5}; !slices.Equal(got, want) {
				t.Fatalf("got offsets %v, want %v", got, want)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// Default: the final commit stops at 5, broken on. Manual:
			// Commit covered the record in hand.
			want := int64(5)
			if tc.manual {
				want = 6
			}
			e.wantCommitted(group, map[int32]int64{0: want})
		})
	}
}

// SeekToTime lands on the first record at or after t, in every partition;
// past the last record, on the end.
func TestSeekToTime(t *testing.T) {
	e := newEnv(t, 2, 0)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var recs []*kgo.Record
	for i := range 20 {
		recs = append(recs, &kgo.Record{Topic: e.topic, Partition: int32(i % 2), Value: []byte(fmt.Sprint(i)), Timestamp: base.Add(time.Duration(i) * time.Second)})
	}
	if err := e.c.Produce(e.ctx, recs...); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		at    time.Duration
		first map[int32]int64 // first offset yielded per partition; -1: none
	}{
		// Record i is at base+i s, on partition i%2 at offset i/2.
		{"exactly at a record", 6 * time.Second, map[int32]int64{0: 3, 1: 3}},
		{"between records", 6500 * time.Millisecond, map[int32]int64{0: 4, 1: 3}},
		{"before every record", -time.Minute, map[int32]int64{0: 0, 1: 0}},
		{"after every record", time.Minute, map[int32]int64{0: -1, 1: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := e.stream(kstream.Group("seek-time-" + strings.ReplaceAll(tc.name, " ", "-")))
			if err := s.Open(e.ctx); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			first := map[int32]int64{}
			sought := false
			ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
			defer cancel()
			for rec, err := range s.Records(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				if !sought {
					// The first record proves the assignment; wait for
					// both partitions, then seek.
					eventually(t, 10*time.Second, "both partitions assigned", func() bool { return len(s.Assignment()[e.topic]) == 2 })
					if err := s.SeekToTime(e.ctx, base.Add(tc.at)); err != nil {
						t.Fatal(err)
					}
					sought = true
					continue
				}
				if _, ok := first[rec.Partition]; !ok {
					first[rec.Partition] = rec.Offset
				}
				if len(first) == 2 {
					break
				}
			}
			for p, want := range tc.first {
				got, ok := first[p]
				if !ok {
					got = -1
				}
				if got != want {
					t.Errorf("partition %d: first offset after SeekToTime = %d, want %d", p, got, want)
				}
			}
		})
	}
}

// Seek from a rebalance listener, as partitions are assigned; a seek of a
// partition the member does not own is ignored with a warning, and a
// negative offset is an error.
func TestSeekFromListener(t *testing.T) {
	e := newEnv(t, 1, 10)
	var logs logRecorder
	var s *kstream.Stream[string]
	s = e.stream(kstream.Group("seek-listener"), kstream.Logger(slogTo(&logs)), kstream.Listener(kstream.ListenerFuncs{
		Assigned: func(ctx context.Context, _ kstream.AnyStream, _ map[string][]int32) {
			if err := s.Seek(ctx, kstream.TopicPartitionOffset{Topic: e.topic, Partition: 0, Offset: 7}); err != nil {
				t.Error(err)
			}
		},
	}))
	if err := s.Seek(e.ctx); !errors.Is(err, kstream.ErrNotOpen) {
		t.Fatalf("Seek before Open = %v, want ErrNotOpen", err)
	}
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs := take(t, e.ctx, s, 3)
	if got := offsets(recs); !slices.Equal(got, []int64{7, 8, 9}) {
		t.Fatalf("got offsets %v, want 7, 8, 9", got)
	}
	if err := s.Seek(e.ctx, kstream.TopicPartitionOffset{Topic: e.topic, Partition: 5, Offset: 1}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "seek ignored: partition not owned by this member") {
		t.Errorf("no warning logged for a seek of a partition not owned; logs:\n%s", logs.String())
	}
	err := s.Seek(e.ctx, kstream.TopicPartitionOffset{Topic: e.topic, Partition: 0, Offset: -2})
	if !errors.Is(err, kstream.ErrInvalidOption) || !strings.Contains(err.Error(), "negative offset") {
		t.Fatalf("Seek to a negative offset = %v, want ErrInvalidOption naming it", err)
	}
}

// Pause, Seek while paused, Resume: the records kept for the pause are
// dropped by the seek, and the partition is read from the new position,
// in order, once; the other partition is untouched.
func TestSeekWhilePaused(t *testing.T) {
	const parts, per = 2, 10
	e := newEnv(t, parts, parts*per)
	s := e.stream(kstream.Group("seek-paused"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got perPartition
	p0 := pausedOf(e.topic, 0)
	state := 0 // 0: reading; 1: paused and sought; 2: resumed
	for rec, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if state == 1 && rec.Partition == 0 {
			t.Fatalf("got offset %d of partition 0 while paused", rec.Offset)
		}
		got.add(rec.Partition, rec.Offset)
		if state == 0 && rec.Partition == 0 && rec.Offset == 4 {
			s.Pause(p0)
			if err := s.Seek(e.ctx, kstream.TopicPartitionOffset{Topic: e.topic, Partition: 0, Offset: 7}); err != nil {
				t.Fatal(err)
			}
			state = 1
		}
		if state == 1 && got.count(1) == per {
			s.Resume(p0)
			state = 2
		}
		if got.count(1) == per && got.count(0) == 8 {
			break
		}
	}
	got.mu.Lock()
	defer got.mu.Unlock()
	if want := []int64{0, 1, 2, 3, 4, 7, 8, 9}; !slices.Equal(got.offs[0], want) {
		t.Fatalf("partition 0: %v, want %v", got.offs[0], want)
	}
	if n := len(got.offs[1]); n != per {
		t.Fatalf("partition 1: %d records, want %d", n, per)
	}
}
