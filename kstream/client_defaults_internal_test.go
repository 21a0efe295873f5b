package kstream

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
)

// The fetch sizes a stream's client uses: DefaultFetchMaxBytes unless
// ClientOptions says otherwise, and franz-go's per-partition default
// (docs/performance.md, "Memory").
func TestFetchSizeDefaults(t *testing.T) {
	fc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fc.Close)
	for _, tc := range []struct {
		name           string
		opts           []kgo.Opt
		maxBytes, part int32
	}{
		{"default", nil, DefaultFetchMaxBytes, 1 << 20},
		{"overridden", []kgo.Opt{kgo.FetchMaxBytes(3 << 20), kgo.FetchMaxPartitionBytes(256 << 10)}, 3 << 20, 256 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := NewStream(codec.String(), Brokers(fc.ListenAddrs()...), Topics("t"), ClientOptions(tc.opts...))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Open(ctx); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			s.mu.Lock()
			cl := s.sess.client()
			s.mu.Unlock()
			if got, _ := cl.OptValue(kgo.FetchMaxBytes).(int32); got != tc.maxBytes {
				t.Errorf("FetchMaxBytes = %d, want %d", got, tc.maxBytes)
			}
			if got, _ := cl.OptValue(kgo.FetchMaxPartitionBytes).(int32); got != tc.part {
				t.Errorf("FetchMaxPartitionBytes = %d, want %d", got, tc.part)
			}
		})
	}
}

// The engine's producer buffers DefaultMaxBufferedRecords records unless
// ClientOptions says otherwise (SendAsync's free list holds as many).
func TestProducerBufferDefault(t *testing.T) {
	fc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fc.Close)
	for _, tc := range []struct {
		name string
		opts []kgo.Opt
		want int64
	}{
		{"default", nil, DefaultMaxBufferedRecords},
		{"overridden", []kgo.Opt{kgo.MaxBufferedRecords(123)}, 123},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			eng, err := NewEngine(Brokers(fc.ListenAddrs()...), ClientOptions(tc.opts...))
			if err != nil {
				t.Fatal(err)
			}
			if err := eng.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer eng.Stop(ctx)
			eng.mu.Lock()
			cl := eng.producer
			eng.mu.Unlock()
			if got, _ := cl.OptValue(kgo.MaxBufferedRecords).(int64); got != tc.want {
				t.Errorf("MaxBufferedRecords = %v, want %d", cl.OptValue(kgo.MaxBufferedRecords), tc.want)
			}
		})
	}
}

// How many records a poll takes from the client (pollSize): all it has
// buffered by default, so that franz-go fetches the next response while the
// loop works; MaxPollRecords when given; DefaultMaxPollRecords for share and
// ExactlyOnce streams (docs/decisions.md, "A stream takes the whole fetch").
func TestPollSize(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
		want int
	}{
		{"default", nil, 0},
		{"group", []Option{Group("g")}, 0},
		{"MaxPollRecords", []Option{MaxPollRecords(50)}, 50},
		{"MaxPollRecords of 500", []Option{MaxPollRecords(DefaultMaxPollRecords)}, DefaultMaxPollRecords},
		{"ShareGroup", []Option{ShareGroup("sg")}, DefaultMaxPollRecords},
		{"ShareGroup with MaxPollRecords", []Option{ShareGroup("sg"), MaxPollRecords(10)}, 10},
		{"ExactlyOnce", []Option{Group("g"), ExactlyOnce()}, DefaultMaxPollRecords},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewStream(codec.String(), append([]Option{Brokers("127.0.0.1:9"), Topics("t")}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			ss := &session{cfg: &s.cfg, share: s.cfg.shareGroup != ""}
			if got := ss.pollSize(); got != tc.want {
				t.Errorf("pollSize() = %d, want %d", got, tc.want)
			}
		})
	}
}
