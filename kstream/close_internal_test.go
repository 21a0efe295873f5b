package kstream

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
)

// Regression test from a review. Close is closing.Store(true);
// AllowRebalance(); Close(). A poll of the range
// that returns (ctx canceled, or records) between AllowRebalance and the leave
// adds a poller; the range must release it or the leave waits forever.
func TestCloseDoesNotHangWhenPollReturnsAfterAllowRebalance(t *testing.T) {
	fc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	ctx := context.Background()
	pc, _ := kgo.NewClient(kgo.SeedBrokers(fc.ListenAddrs()...))
	if err := pc.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("a")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	pc.Close()
	s, err2 := NewStream(codec.String(), Brokers(fc.ListenAddrs()...), Topics("t"), Group("g"), ManualCommit(),
		ClientOptions(kgo.HeartbeatInterval(100*time.Millisecond), kgo.FetchMaxWait(100*time.Millisecond)), internalGroupProtocol())
	if err := err2; err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	got := make(chan struct{}, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for _, err := range s.Records(rctx) {
			if err != nil {
				t.Error(err)
				return
			}
			got <- struct{}{}
		}
	}()
	<-got
	time.Sleep(300 * time.Millisecond) // the range now waits in PollRecords

	// Stream.Close, with the range's poll returning between its steps.
	s.mu.Lock()
	ss := s.sess
	s.sess, s.state = nil, stateClosed
	s.mu.Unlock()
	ss.closing.Store(true)
	ss.client().AllowRebalance() // first half of CloseAllowingRebalance
	cancel()                     // the range's PollRecords returns now (adds a poller)
	<-ended
	closed := make(chan struct{})
	go func() { ss.client().Close(); close(closed) }() // second half
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs: the leave waits for a poller that endRange never releases")
	}
}
