package kstream_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/kstream"
)

// Tests of item 2 of the core contract issue: Close, and Engine.Stop,
// called from any goroutine but a listener of the stream wait for the
// stream to leave its group, also while a listener callback runs. They
// returned at once then: a count of callbacks running stood for "called
// from a callback".

// blockingListener holds the first OnAssigned until released.
type blockingListener struct {
	entered      chan struct{}
	release      chan struct{}
	releaseOnce  sync.Once
	enteredOnce  sync.Once
	mu           sync.Mutex
	returnedFrom bool // the held callback has returned
}

func newBlockingListener(t *testing.T) *blockingListener {
	l := &blockingListener{entered: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(l.Release) // also when the test fails with the callback held
	return l
}

func (l *blockingListener) Release() { l.releaseOnce.Do(func() { close(l.release) }) }

func (l *blockingListener) returned() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.returnedFrom
}

func (l *blockingListener) option() kstream.Option {
	return kstream.Listener(kstream.ListenerFuncs{Assigned: func(context.Context, kstream.AnyStream, map[string][]int32) {
		first := false
		l.enteredOnce.Do(func() { first = true })
		if !first {
			return
		}
		close(l.entered)
		<-l.release
		l.mu.Lock()
		l.returnedFrom = true
		l.mu.Unlock()
	}})
}

// holdsWhile checks that call, started on a goroutine of its own, does not
// return while the listener holds its callback (for half a second), then
// releases the callback and returns call's error once call returns.
func (l *blockingListener) holdsWhile(t *testing.T, what string, call func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		t.Fatalf("%s returned (%v) while a listener callback of the stream still ran: it did not wait for the stream to leave its group", what, err)
	case <-time.After(500 * time.Millisecond):
		// Still waiting for the leave, which waits for the callback.
	}
	l.Release()
	select {
	case err := <-done:
		if !l.returned() {
			t.Fatalf("%s returned before the listener callback did", what)
		}
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not return within 20s of the callback's return", what)
		return nil
	}
}

func TestLifecycleCloseWaitsForTheLeaveWhileAListenerRuns(t *testing.T) {
	e := newEnv(t, 1, 3)
	l := newBlockingListener(t)
	s := e.stream(kstream.Group("g"), l.option())
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	ranged := make(chan struct{})
	go func() {
		defer close(ranged)
		for range s.Records(e.ctx) {
		}
	}()
	<-l.entered
	if err := l.holdsWhile(t, "Close", s.Close); err != nil {
		t.Fatal(err)
	}
	if g, err := e.c.DescribeGroup(e.ctx, "g"); err != nil || len(g.Members) != 0 {
		t.Fatalf("after Close: %v (err %v), want the member gone", g, err)
	}
	<-ranged
}

func TestLifecycleEngineStopWaitsForTheLeaveWhileAListenerRuns(t *testing.T) {
	e := newEnv(t, 1, 3)
	eng := e.engine()
	l := newBlockingListener(t)
	eng.Add(e.engineStream(e.topic, "g", l.option()).Handle(func(context.Context, kstream.Record[string]) error { return nil }))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	<-l.entered
	stopCtx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	if err := l.holdsWhile(t, "Engine.Stop", func() error { return eng.Stop(stopCtx) }); err != nil {
		t.Fatal(err)
	}
	if g, err := e.c.DescribeGroup(e.ctx, "g"); err != nil || len(g.Members) != 0 {
		t.Fatalf("after Stop: %v (err %v), want the member gone", g, err)
	}
}

// Engine.Stop called from a listener while another Stop is at work (here,
// from OnRevoked as that Stop closes the stream) returns at once: the Stop
// at work waits for the callback, so waiting for it would deadlock until
// the deadline.
func TestLifecycleStopFromListenerDuringAStop(t *testing.T) {
	e := newEnv(t, 1, 3)
	eng := e.engine()
	inner := make(chan selfStop, 1)
	var once sync.Once
	handled := make(chan struct{}, 3)
	eng.Add(e.engineStream(e.topic, "g", kstream.Listener(kstream.ListenerFuncs{
		Revoked: func(ctx context.Context, _ kstream.AnyStream, _ map[string][]int32) {
			once.Do(func() {
				sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				start := time.Now()
				err := eng.Stop(sctx)
				inner <- selfStop{err, time.Since(start)}
			})
		},
	})).Handle(func(context.Context, kstream.Record[string]) error {
		handled <- struct{}{}
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	<-handled
	stopCtx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := eng.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	got := <-inner
	if got.err != nil || got.took > time.Second || took > 3*time.Second {
		t.Fatalf("Stop from OnRevoked during a Stop took %v and returned %v; the outer Stop took %v: want both at once, nil", got.took, got.err, took)
	}
}
