package kstream_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// batchesOf3 ranges over 9 records in batches of three; body decides, for
// each batch index, whether to go on (true) or leave the loop (false).
func TestBatchesMatrix(t *testing.T) {
	for _, tc := range []struct {
		name   string
		leave  func(s *kstream.Stream[string], i int) bool // runs in the body
		panics bool
		want   int64 // committed offset after Close
	}{
		{"break first", func(_ *kstream.Stream[string], i int) bool { return i == 0 }, false, 0},
		{"break middle", func(_ *kstream.Stream[string], i int) bool { return i == 1 }, false, 3},
		{"break last", func(_ *kstream.Stream[string], i int) bool { return i == 2 }, false, 6},
		{"panic middle", func(_ *kstream.Stream[string], i int) bool {
			if i == 1 {
				panic("boom")
			}
			return false
		}, true, 3},
		{"close inside", func(s *kstream.Stream[string], i int) bool {
			if i == 1 {
				_ = s.Close()
			}
			return false
		}, false, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1, 9)
			s := e.stream(kstream.Group("g"))
			if err := s.Open(e.ctx); err != nil {
				t.Fatal(err)
			}
			func() {
				defer func() {
					if r := recover(); (r != nil) != tc.panics {
						t.Fatalf("recovered %v", r)
					}
				}()
				i := 0
				for batch, err := range s.Batches(e.ctx, 3, time.Second) {
					if err != nil {
						t.Fatal(err)
					}
					if len(batch) != 3 || batch[0].Offset != int64(3*i) {
						t.Fatalf("batch %d starts at %d with %d records", i, batch[0].Offset, len(batch))
					}
					if tc.leave(s, i) {
						break
					}
					i++
					if i == 3 {
						break
					}
				}
			}()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			want := map[int32]int64{0: tc.want}
			if tc.want == 0 {
				want = map[int32]int64{}
			}
			e.wantCommitted("g", want)
		})
	}
}

func TestBatchesConcurrentRangeAndResume(t *testing.T) {
	e := newEnv(t, 1, 6)
	s := e.stream(kstream.Group("g"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for batch, err := range s.Batches(e.ctx, 2, time.Second) {
		if err != nil {
			t.Fatal(err)
		}
		var inner []error
		for _, err := range s.Records(e.ctx) {
			inner = append(inner, err)
		}
		if len(inner) != 1 || !errors.Is(inner[0], kstream.ErrConcurrentRange) {
			t.Fatalf("Records inside Batches yielded %v, want one ErrConcurrentRange", inner)
		}
		if batch[0].Offset != 0 {
			t.Fatalf("first batch at %d", batch[0].Offset)
		}
		break
	}
	// Resume: the next range yields the batch broken on again first.
	if got := offsets(take(t, e.ctx, s, 3)); !slices.Equal(got, []int64{0, 1, 2}) {
		t.Fatalf("resumed with %v, want [0 1 2]", got)
	}
}

func TestBatchesDecodeErrorSplitsBatch(t *testing.T) {
	e := newEnv(t, 1, 0)
	vals := []string{`1`, `2`, `x`, `4`}
	for _, v := range vals {
		if err := e.c.Produce(e.ctx, &kgo.Record{Topic: e.topic, Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := kstream.NewStream(codec.JSON[int](), kstream.Brokers(e.c.Brokers()...), kstream.Topics(e.topic), kstream.Group("g"), kstream.Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	var decodeErrAt int64 = -1
	seen := 0
	for batch, err := range s.Batches(e.ctx, 10, 200*time.Millisecond) {
		var de *kstream.DecodeError
		if errors.As(err, &de) {
			if len(batch) != 1 || batch[0].Offset != de.Offset {
				t.Fatalf("decode error came with %d records", len(batch))
			}
			decodeErrAt = de.Offset
		} else if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(batch))
		seen += len(batch)
		if seen == 4 {
			break
		}
	}
	if decodeErrAt != 2 || len(sizes) != 3 || sizes[0] != 2 || sizes[1] != 1 || sizes[2] != 1 {
		t.Fatalf("batches %v, decode error at %d; want [2 1 1] with the error at 2", sizes, decodeErrAt)
	}
	// The good batch and the bad record were handled; the last was broken on.
	e.wantCommitted("g", map[int32]int64{0: 3})
}

func TestCloseWhileBlockedInPoll(t *testing.T) {
	e := newEnv(t, 1, 1)
	s := e.stream(kstream.Group("g"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	closed := make(chan error, 1)
	for _, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		// The next step waits for records that never come; Close ends it.
		time.AfterFunc(100*time.Millisecond, func() { closed <- s.Close() })
	}
	if n != 1 {
		t.Fatalf("got %d records", n)
	}
	if err := <-closed; err != nil { // the loop may end before Close has committed
		t.Fatal(err)
	}
	e.wantCommitted("g", map[int32]int64{0: 1})
}
