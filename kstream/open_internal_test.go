package kstream

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
)

// Regression tests from the chaos suite: a listener that closed the stream,
// or stopped its engine, while the stream's Open was still connecting
// deadlocked. Open held the stream's mutex while it connected; the group's
// first assignment ran the listener meanwhile; the close canceled the Open,
// whose client close waited for the callback, which waited for the mutex.
// The tests hold the Open between starting the client and its Ping until
// the listener has run, which under load happens by itself.

// openRace starts a cluster and returns a stream of topic "t" in group "g"
// whose Open waits, after starting its client, for the release the listener
// gives when it has run.
func openRace(t *testing.T, listener func(AnyStream)) *Stream[string] {
	t.Helper()
	fc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fc.Close)
	ran := make(chan struct{})
	var once sync.Once
	s, err := NewStream(codec.String(), Brokers(fc.ListenAddrs()...), Topics("t"), Group("g"),
		ClientOptions(kgo.HeartbeatInterval(100*time.Millisecond)), internalGroupProtocol(),
		Listener(ListenerFuncs{Assigned: func(_ context.Context, as AnyStream, _ map[string][]int32) {
			once.Do(func() {
				defer close(ran)
				listener(as)
			})
		}}))
	if err != nil {
		t.Fatal(err)
	}
	s.cfg.testBeforePing = func() {
		select {
		case <-ran:
		case <-time.After(20 * time.Second):
			t.Error("the listener did not run, and return, while Open waited (20s)")
		}
	}
	return s
}

func TestEngineStopInListenerDuringOpen(t *testing.T) {
	var eng *Engine
	stopped := make(chan error, 1)
	s := openRace(t, func(AnyStream) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- eng.Stop(ctx)
	})
	eng, err := NewEngine(Brokers(s.cfg.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	s.Handle(func(context.Context, Record[string]) error { return nil })
	if err := eng.Add(s); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Engine.Stop from OnAssigned during Open: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Engine.Stop called from OnAssigned while the stream was opening did not return within 30s")
	}
	if _, err := eng.Send(ctx, "t", nil); !errors.Is(err, ErrEngineNotStarted) {
		t.Fatalf("Send after the stop = %v, want ErrEngineNotStarted", err)
	}
	waitNoSession(t, s)
}

func TestCloseInListenerDuringOpen(t *testing.T) {
	var s *Stream[string]
	closed := make(chan error, 1)
	s = openRace(t, func(as AnyStream) {
		_ = as.Assignment()
		closed <- s.Close()
	})
	opened := make(chan error, 1)
	go func() { opened <- s.Open(context.Background()) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close from OnAssigned during Open: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close called from OnAssigned while the stream was opening did not return within 30s")
	}
	select {
	case err := <-opened:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Open closed while connecting = %v, want ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Open did not return after Close")
	}
	for _, err := range s.Records(context.Background()) {
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("range after Close = %v, want ErrClosed", err)
		}
	}
	waitNoSession(t, s)
}

// Close from another goroutine during Open waits for the Open to give up,
// and the stream is closed after it.
func TestCloseDuringOpenWaits(t *testing.T) {
	var s *Stream[string]
	closed := make(chan error, 1)
	s = openRace(t, func(AnyStream) {
		go func() { closed <- s.Close() }()
		// Close waits for the Open, which waits for this callback's
		// release: give Close the time to register before returning.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			s.mu.Lock()
			asked := s.opening != nil && s.opening.closeRequested
			s.mu.Unlock()
			if asked {
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.Error("Close never reached the Open in progress")
	})
	err := s.Open(context.Background())
	if !errors.Is(err, ErrClosed) {
		t.Errorf("Open closed while connecting = %v, want ErrClosed", err)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close during Open: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close during Open did not return")
	}
	waitNoSession(t, s)
}

// waitNoSession waits until the stream holds no session and no Open is in
// progress: after a stop from a listener, the stream's Open gives up once
// the callback has returned.
func waitNoSession(t *testing.T, s *Stream[string]) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		sess, opening := s.sess != nil, s.opening != nil
		s.mu.Unlock()
		if !sess && !opening {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s on, the stream still has a session (%v) or an Open in progress (%v)", sess, opening)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
