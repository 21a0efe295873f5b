package kstream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// StopTimeout bounds Run's graceful stop: a handler that takes longer than
// the stop allows has its ctx canceled at the deadline, and Run returns
// then, not after DefaultStopTimeout.
func TestStopTimeoutBoundsRun(t *testing.T) {
	e := newEnv(t, 1, 1)
	const d = 400 * time.Millisecond
	eng := e.engine(kstream.StopTimeout(d))
	inHand := make(chan struct{})
	canceledAfter := make(chan time.Duration, 1)
	var stopAsked time.Time
	eng.Add(e.engineStream(e.topic, "slow").Handle(func(ctx context.Context, _ kstream.Record[string]) error {
		close(inHand)
		<-ctx.Done() // work that takes longer than the stop allows
		canceledAfter <- time.Since(stopAsked)
		return ctx.Err()
	}))
	ctx, cancel := context.WithCancel(e.ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- eng.Run(ctx) }()
	<-inHand
	stopAsked = time.Now()
	cancel()
	select {
	case err := <-runErr:
		took := time.Since(stopAsked)
		if c := <-canceledAfter; c < d-50*time.Millisecond {
			t.Errorf("the handler's ctx was canceled %v after the stop began, before StopTimeout (%v)", c, d)
		}
		if took > d+time.Second {
			t.Errorf("Run returned %v after its ctx was canceled, want within StopTimeout (%v) and the close", took, d)
		}
		t.Logf("Run returned %v after cancel (err %v)", took, err)
	case <-time.After(d + 10*time.Second):
		t.Fatal("Run did not return by its StopTimeout")
	}
}

// A Stop whose ctx has no deadline is bounded by StopTimeout too.
func TestStopTimeoutBoundsStopWithoutDeadline(t *testing.T) {
	e := newEnv(t, 1, 1)
	const d = 300 * time.Millisecond
	eng := e.engine(kstream.StopTimeout(d))
	inHand := make(chan struct{})
	eng.Add(e.engineStream(e.topic, "slow").Handle(func(ctx context.Context, _ kstream.Record[string]) error {
		close(inHand)
		<-ctx.Done()
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	<-inHand
	start := time.Now()
	eng.Stop(context.Background())
	if took := time.Since(start); took < d-50*time.Millisecond || took > d+time.Second {
		t.Errorf("Stop took %v, want about StopTimeout (%v)", took, d)
	}
}

func TestStopTimeoutOptionScope(t *testing.T) {
	if _, err := kstream.NewEngine(kstream.StopTimeout(0)); !errors.Is(err, kstream.ErrInvalidOption) {
		t.Errorf("StopTimeout(0): %v, want ErrInvalidOption", err)
	}
	if _, err := kstream.NewStream(codec.String(), kstream.Topics("t"), kstream.StopTimeout(time.Second)); !errors.Is(err, kstream.ErrInvalidOption) {
		t.Errorf("StopTimeout on a stream: %v, want ErrInvalidOption", err)
	}
	if _, err := kstream.NewStream(codec.String(), kstream.Topics("t"), kstream.CrashLoop(3, time.Minute)); !errors.Is(err, kstream.ErrInvalidOption) {
		t.Errorf("CrashLoop on a stream: %v, want ErrInvalidOption", err)
	}
	if _, err := kstream.NewEngine(kstream.CrashLoop(0, time.Minute)); !errors.Is(err, kstream.ErrInvalidOption) {
		t.Errorf("CrashLoop(0, ...): %v, want ErrInvalidOption", err)
	}
}

// Shutdown with a live cluster is Close: it commits and waits for the
// leave.
func TestShutdownLeavesTheGroup(t *testing.T) {
	e := newEnv(t, 1, 3)
	s := e.stream(kstream.Group("sd"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	take(t, e.ctx, s, 3)
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("sd", map[int32]int64{0: 2}) // the third was broken on
	if g, err := e.c.DescribeGroup(e.ctx, "sd"); err != nil || len(g.Members) != 0 {
		t.Fatalf("after Shutdown: %v (err %v), want the member gone", g, err)
	}
}

// Shutdown returns by its ctx's deadline when the brokers do not answer,
// with an error; Close would wait DefaultCloseTimeout.
func TestShutdownReturnsByItsDeadline(t *testing.T) {
	e := newEnv(t, 1, 3)
	s := e.stream(kstream.Group("sd"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	take(t, e.ctx, s, 3)
	stall := e.c.StallBroker(t, -1)
	const d = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(e.ctx, d)
	defer cancel()
	start := time.Now()
	err := s.Shutdown(ctx)
	took := time.Since(start)
	stall.Heal()
	if err == nil {
		t.Error("Shutdown against a stalled broker returned nil, want an error")
	}
	if took > d+time.Second {
		t.Errorf("Shutdown took %v, want about its deadline (%v)", took, d)
	}
	t.Logf("Shutdown: %v after %v", err, took)
}
