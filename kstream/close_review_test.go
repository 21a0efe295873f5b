package kstream_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/kstream"
)

// Found in review: a Close from another goroutine that joins a close begun
// by a listener returned at once, before the stream had left its group.
func TestCloseJoiningAListenersCloseWaitsForTheLeave(t *testing.T) {
	e := newEnv(t, 1, 3)
	var s *kstream.Stream[string]
	inListenerClosed := make(chan struct{})
	release := make(chan struct{})
	var returned atomic.Bool
	var first atomic.Bool
	s = e.stream(kstream.Group("g"), kstream.Listener(kstream.ListenerFuncs{Assigned: func(context.Context, kstream.AnyStream, map[string][]int32) {
		if !first.CompareAndSwap(false, true) {
			return
		}
		_ = s.Close()
		close(inListenerClosed)
		<-release
		returned.Store(true)
	}}))
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	// Open runs on a goroutine of its own: when the assignment comes
	// before Open has returned, the listener's Close makes Open give up,
	// and Open's close waits for the leave, which waits for the listener,
	// which waits for release below.
	opened := make(chan error, 1)
	go func() { opened <- s.Open(e.ctx) }()
	select {
	case <-inListenerClosed:
	case <-e.ctx.Done():
		t.Fatal("no assignment: the listener never ran")
	}
	done := make(chan struct{})
	start := time.Now()
	go func() { _ = s.Close(); close(done) }()
	select {
	case <-done:
		t.Errorf("Close from main returned after %v while the listener still runs (so before the leave)", time.Since(start))
	case <-time.After(500 * time.Millisecond):
	}
	close(release)
	select {
	case <-done:
	case <-e.ctx.Done():
		t.Fatal("Close from main did not return once the listener had")
	}
	select {
	case err := <-opened:
		// ErrClosed when the listener closed the stream during Open (then
		// main's Close waited for the Open to give up, which includes the
		// leave); nil when Open had returned first.
		if err != nil && !errors.Is(err, kstream.ErrClosed) {
			t.Fatalf("Open: %v", err)
		}
	case <-e.ctx.Done():
		t.Fatal("Open did not return")
	}
	g, err := e.c.DescribeGroup(e.ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Members) != 0 || !returned.Load() {
		t.Fatalf("after Close: %d members, listener returned %v; want the member gone", len(g.Members), returned.Load())
	}
}
