package kstream_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/kstream"
)

// Regression tests for findings of a review. Each failed before its fix.

// A record the body broke on stays uncommitted even when a rebalance was
// waiting while the body held it: giving the polled records back to the
// rebalance must not mark it committable.
func TestBreakWithPendingRebalanceKeepsBrokenRecordUncommitted(t *testing.T) {
	e := newEnv(t, 1, 100)
	a := e.stream(kstream.Group("g"), kstream.Name("a"))
	if err := a.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	var b *kstream.Stream[string]
	for rec, err := range a.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Offset == 10 {
			// A second member joins while the body holds record 10; the
			// group rebalances and waits for a.
			b = e.stream(kstream.Group("g"), kstream.Name("b"))
			if err := b.Open(e.ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond) // heartbeats tell a to rejoin
			break
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := e.committed("g")[0]; got != 10 {
		t.Fatalf("committed %d, want 10: the record broken on must not be committed", got)
	}
}

// With ManualCommit and ManualCommitRebalanceListener, the revoke that Close
// causes does not commit the record the body returned an error on.
func TestManualListenerLeavesFailedRecordOnClose(t *testing.T) {
	e := newEnv(t, 1, 20)
	s := e.stream(kstream.Group("g"), kstream.ManualCommit(), kstream.Listener(kstream.ManualCommitRebalanceListener{}))
	errStore := errors.New("store failed")
	err := s.Use(e.ctx, func(recs iter.Seq2[kstream.Record[string], error]) error {
		for rec, err := range recs {
			if err != nil {
				return err
			}
			if rec.Offset == 5 {
				return errStore
			}
		}
		return nil
	})
	if !errors.Is(err, errStore) {
		t.Fatalf("Use = %v", err)
	}
	e.wantCommitted("g", map[int32]int64{0: 5})
}

// The usual shutdown: a signal cancels the range's ctx while another
// goroutine calls Close. Close must return.
func TestCancelAndCloseTogetherDoNotHang(t *testing.T) {
	e := newEnv(t, 1, 1)
	for i := range 15 {
		s := e.stream(kstream.Group(fmt.Sprintf("g%d", i)), kstream.ManualCommit(),
			kstream.ClientOptions(kgo.FetchMaxWait(50*time.Millisecond)))
		if err := s.Open(e.ctx); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(e.ctx)
		got := make(chan struct{}, 1)
		ranged := make(chan struct{})
		go func() {
			defer close(ranged)
			for range s.Records(rctx) {
				select {
				case got <- struct{}{}:
				default:
				}
			}
		}()
		<-got
		time.Sleep(20 * time.Millisecond) // the range waits in a poll
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); cancel() }()
		go func() { defer wg.Done(); _ = s.Close() }()
		done := make(chan struct{})
		go func() { wg.Wait(); <-ranged; close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("iteration %d: Close with a concurrent cancel did not return", i)
		}
	}
}
