package kstream_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/kstream"
)

// Found in review: Stop of a PartitionConcurrency stream ran every record
// queued on the lanes (4 s with a 20 ms handler), and a rebalance could run
// while lanes still handled records once the range had ended.
func TestConcurrentStopWaitsOnlyForRecordsInHand(t *testing.T) {
	e := newEnv(t, 2, 400)
	eng := e.engine()
	var handled, running, runningAtRevoke atomic.Int64
	runningAtRevoke.Store(-1)
	revoked := make(chan struct{}, 1)
	s := e.engineStream(e.topic, "g",
		kstream.PartitionConcurrency(2),
		kstream.ClientOptions(kgo.HeartbeatInterval(100*time.Millisecond)),
		kstream.Listener(kstream.ListenerFuncs{Revoked: func(context.Context, kstream.AnyStream, map[string][]int32) {
			runningAtRevoke.CompareAndSwap(-1, running.Load())
			select {
			case revoked <- struct{}{}:
			default:
			}
		}}),
	).Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		running.Add(1)
		defer running.Add(-1)
		time.Sleep(20 * time.Millisecond)
		handled.Add(1)
		return nil
	})
	if err := eng.Add(s); err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "10 handled", func() bool { return handled.Load() >= 10 })
	atStop := handled.Load()
	start := time.Now()
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stopped <- eng.Stop(ctx)
	}()
	time.Sleep(300 * time.Millisecond)
	// A second member joins while the first is stopping.
	s2 := e.stream(kstream.Group("g"))
	if err := s2.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	go func() {
		for range s2.Records(e.ctx) {
		}
	}()
	var revokeAfter time.Duration = -1
	select {
	case <-revoked:
		revokeAfter = time.Since(start)
	case <-time.After(20 * time.Second):
	}
	err := <-stopped
	t.Logf("Stop returned %v after %v; handled when Stop began: %d, when it returned: %d; revoke %v after Stop began, with %d handlers running",
		err, time.Since(start), atStop, handled.Load(), revokeAfter, runningAtRevoke.Load())
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Stop took %v: it waited for the queued records, not only those in hand", took)
	}
	if runningAtRevoke.Load() > 0 {
		t.Errorf("OnRevoked ran while %d handlers still ran", runningAtRevoke.Load())
	}
}
