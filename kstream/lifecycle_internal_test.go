package kstream

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
)

// goroutineID tells goroutines apart, and is the same for one goroutine.
func TestGoroutineID(t *testing.T) {
	id := goroutineID()
	if id == 0 || goroutineID() != id {
		t.Fatalf("goroutineID() = %d, then %d: want one non-zero ID", id, goroutineID())
	}
	other := make(chan uint64)
	go func() { other <- goroutineID() }()
	if o := <-other; o == 0 || o == id {
		t.Fatalf("another goroutine's ID is %d, this one's %d", o, id)
	}
}

// A stream closed from its own listener left its session in the metrics
// collector for good: doClose returned, without waiting for the leave,
// before it removed the session. (Item 2 of the core contract issue.)
func TestCloseFromListenerLeavesTheMetricsCollector(t *testing.T) {
	fc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := kgo.NewClient(kgo.SeedBrokers(fc.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("a")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	pc.Close()

	var s *Stream[string]
	closed := make(chan error, 1)
	var once sync.Once
	s, err = NewStream(codec.String(), Brokers(fc.ListenAddrs()...), Topics("t"), Group("g"),
		Metrics(prometheus.NewRegistry()),
		ClientOptions(kgo.HeartbeatInterval(100*time.Millisecond), kgo.FetchMaxWait(100*time.Millisecond)), internalGroupProtocol(),
		Listener(ListenerFuncs{Assigned: func(context.Context, AnyStream, map[string][]int32) {
			once.Do(func() { closed <- s.Close() })
		}}))
	if err != nil {
		t.Fatal(err)
	}
	pcoll := s.cfg.metrics.partitions
	sessions := func() int {
		pcoll.mu.Lock()
		defer pcoll.mu.Unlock()
		return len(pcoll.sessions)
	}
	waitGone := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for sessions() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the closed session is still in the metrics collector 10s after Close from its listener")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := s.Open(ctx); errors.Is(err, ErrClosed) {
		// The group assigned before Open's ping returned, and the
		// listener's Close made Open give up (as Open documents).
		if err := <-closed; err != nil {
			t.Fatalf("Close from the listener = %v", err)
		}
		waitGone()
		return
	} else if err != nil {
		t.Fatal(err)
	}
	if n := sessions(); n != 1 {
		t.Fatalf("%d sessions in the collector after Open, want 1", n)
	}
	ranged := make(chan struct{})
	go func() {
		defer close(ranged)
		for _, err := range s.Records(ctx) {
			if err != nil && !errors.Is(err, ErrClosed) { // closed before the range began
				t.Error(err)
				return
			}
		}
	}()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close from the listener = %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the listener never ran")
	}
	<-ranged
	waitGone()
}
