package kstream_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// Tests of the cells of the table "Who may call what from where" in
// docs/engine.md that no other test covers. Each names its cell.

// closers are the two ways to close a stream: Close, and Shutdown with a
// deadline.
var closers = []struct {
	name  string
	close func(s *kstream.Stream[string]) error
}{
	{"Close", func(s *kstream.Stream[string]) error { return s.Close() }},
	{"Shutdown", func(s *kstream.Stream[string]) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return s.Shutdown(ctx)
	}},
}

// wantNoMembers fails t unless group has no member: the stream left it.
func (e *env) wantNoMembers(group, after string) {
	e.t.Helper()
	if g, err := e.c.DescribeGroup(e.ctx, group); err != nil || len(g.Members) != 0 {
		e.t.Fatalf("after %s: %v (err %v), want the member gone", after, g, err)
	}
}

// Close (Shutdown) | loop body: waits for the leave; the record in hand is
// not committed.
func TestCallsCloseFromLoopBodyWaitsForTheLeave(t *testing.T) {
	for _, c := range closers {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, 1, 6)
			s := e.stream(kstream.Group("g"))
			if err := s.Open(e.ctx); err != nil {
				t.Fatal(err)
			}
			for rec, err := range s.Records(e.ctx) {
				if err != nil {
					t.Fatal(err)
				}
				if rec.Offset == 2 {
					if err := c.close(s); err != nil {
						t.Fatal(err)
					}
					e.wantNoMembers("g", c.name+" from the loop body")
				}
			}
			e.wantCommitted("g", map[int32]int64{0: 2})
		})
	}
}

// Close (Shutdown) | Handle function: waits for the leave; the handler's
// record is not committed; the stream then stops (it is not a crash).
func TestCallsCloseFromHandlerWaitsForTheLeave(t *testing.T) {
	for _, c := range closers {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, 1, 4)
			eng := e.engine()
			s := e.engineStream(e.topic, "g")
			closed := make(chan error, 1)
			eng.Add(s.Handle(func(_ context.Context, rec kstream.Record[string]) error {
				if rec.Value == "v1" {
					err := c.close(s)
					if g, gerr := e.c.DescribeGroup(e.ctx, "g"); gerr != nil || len(g.Members) != 0 {
						err = errors.Join(err, errors.New("the member was still in the group: "+g.String()))
					}
					closed <- err
				}
				return nil
			}))
			if err := eng.Start(e.ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-closed; err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "the stream to stop", func() bool { return state(t, eng, "g") == kstream.StreamStopped })
			e.wantCommitted("g", map[int32]int64{0: 1})
		})
	}
}

// Shutdown | rebalance listener: commits, starts the leave and returns at
// once (Close: TestCloseFromListener).
func TestCallsShutdownFromListenerReturnsAtOnce(t *testing.T) {
	e := newEnv(t, 1, 3)
	var s *kstream.Stream[string]
	type result struct {
		err  error
		took time.Duration
	}
	got := make(chan result, 1)
	s = e.stream(kstream.Group("g"), kstream.Listener(kstream.ListenerFuncs{
		Assigned: func(context.Context, kstream.AnyStream, map[string][]int32) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err := s.Shutdown(ctx)
			got <- result{err, time.Since(start)}
		},
	}))
	if err := s.Open(e.ctx); err != nil && !errors.Is(err, kstream.ErrClosed) {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil || r.took > time.Second {
		t.Fatalf("Shutdown from OnAssigned: %v after %v, want nil at once", r.err, r.took)
	}
	eventually(t, 10*time.Second, "the member to leave once the callback returned", func() bool {
		g, err := e.c.DescribeGroup(e.ctx, "g")
		return err == nil && len(g.Members) == 0
	})
}

// Commit | Handle function: a serial handler's Commit commits its own
// record too; under PartitionConcurrency it stops at the lowest unfinished
// record, which is the caller's own.
func TestCallsCommitFromHandler(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []kstream.Option
		want int64
	}{
		{"serial", nil, 2},
		{"PartitionConcurrency", []kstream.Option{kstream.PartitionConcurrency(2)}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1, 4)
			eng := e.engine()
			s := e.engineStream(e.topic, "g", append([]kstream.Option{kstream.ManualCommit()}, tc.opts...)...)
			got := make(chan map[int32]int64, 1)
			eng.Add(s.Handle(func(ctx context.Context, rec kstream.Record[string]) error {
				if rec.Value == "v1" {
					if err := s.Commit(ctx); err != nil {
						t.Error(err)
					}
					got <- e.committed("g")
				}
				return nil
			}))
			if err := eng.Start(e.ctx); err != nil {
				t.Fatal(err)
			}
			if c := <-got; c[0] != tc.want {
				t.Fatalf("committed %v from the handler of offset 1, want {0: %d}", c, tc.want)
			}
		})
	}
}

// Commit | another goroutine: commits every record yielded, the one the
// body holds included.
func TestCallsCommitFromAnotherGoroutine(t *testing.T) {
	e := newEnv(t, 1, 6)
	s := e.stream(kstream.Group("g"), kstream.ManualCommit())
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for rec, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Offset == 2 {
			errc := make(chan error)
			go func() { errc <- s.Commit(e.ctx) }()
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	e.wantCommitted("g", map[int32]int64{0: 3})
}

// CommitRecords | rebalance listener: the typed stream's CommitRecords
// works from a listener while the stream is open (here OnRevoked as a
// second member joins); from the OnRevoked of its own Close it returns
// ErrClosed (AnyStream.Commit, which the listener is given, works there).
func TestCallsCommitRecordsFromListener(t *testing.T) {
	e := newEnv(t, 2, 8)
	var s *kstream.Stream[string]
	var mu sync.Mutex
	var last []kstream.Record[string]
	revoked := make(chan error, 2)
	s = e.stream(kstream.Group("g"), kstream.ManualCommit(), kstream.Listener(kstream.ListenerFuncs{
		Revoked: func(ctx context.Context, _ kstream.AnyStream, _ map[string][]int32) {
			mu.Lock()
			defer mu.Unlock()
			revoked <- s.CommitRecords(ctx, last...)
		},
	}))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	ranged := make(chan struct{})
	go func() {
		defer close(ranged)
		for rec, err := range s.Records(ctx) {
			if err != nil {
				return
			}
			mu.Lock()
			last = append(last, rec)
			mu.Unlock()
		}
	}()
	eventually(t, 20*time.Second, "all eight records", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(last) == 8
	})
	other := e.stream(kstream.Group("g"), kstream.ManualCommit())
	if err := other.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		for range other.Records(ctx) {
		}
	}()
	if err := <-revoked; err != nil {
		t.Fatalf("CommitRecords from OnRevoked: %v", err)
	}
	e.wantCommitted("g", map[int32]int64{0: 4, 1: 4})
	cancel()
	<-ranged
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-revoked:
		if !errors.Is(err, kstream.ErrClosed) {
			t.Fatalf("CommitRecords from the OnRevoked of Close: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no OnRevoked on Close")
	}
}

// Engine.Remove | rebalance listener: closes the stream without waiting
// for its leave and returns at once; the member leaves once the callback
// returns. Send | rebalance listener: waits for the acknowledgement.
func TestCallsRemoveAndSendFromListener(t *testing.T) {
	e := newEnv(t, 1, 3)
	eng := e.engine()
	var s *kstream.Stream[string]
	type result struct {
		sendErr, removeErr error
		took               time.Duration
	}
	got := make(chan result, 1)
	s = e.engineStream(e.topic, "g", kstream.Listener(kstream.ListenerFuncs{
		Assigned: func(ctx context.Context, _ kstream.AnyStream, _ map[string][]int32) {
			var r result
			_, r.sendErr = eng.Send(ctx, e.topic, []byte("from-listener"))
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			start := time.Now()
			r.removeErr = eng.Remove(rctx, s)
			r.took = time.Since(start)
			got <- r
		},
	}))
	eng.Add(s.Handle(func(context.Context, kstream.Record[string]) error { return nil }))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.sendErr != nil || r.removeErr != nil || r.took > time.Second {
		t.Fatalf("from OnAssigned: Send %v, Remove %v after %v; want nil, nil at once", r.sendErr, r.removeErr, r.took)
	}
	eventually(t, 10*time.Second, "the member to leave once the callback returned", func() bool {
		g, err := e.c.DescribeGroup(e.ctx, "g")
		return err == nil && len(g.Members) == 0
	})
	if _, ok := eng.StreamHealth("g"); ok {
		t.Fatal("the engine still has the removed stream")
	}
	// The record the listener sent is in the topic.
	kstreamtest.ReadRecords(t, e.c, e.topic, codec.String(), 4, 10*time.Second)
}

// Engine.Remove, Engine.Stop, Send and SendAsync | loop body of a Func
// function: Remove and Stop return at once (the stream stops when the
// function returns); Send waits for the acknowledgement; SendAsync returns
// at once and calls done later.
func TestCallsFromFuncLoopBody(t *testing.T) {
	for _, stop := range []string{"Remove", "Stop"} {
		t.Run(stop, func(t *testing.T) {
			e := newEnv(t, 1, 3)
			if err := e.c.CreateTopic(e.ctx, "other", 1); err != nil {
				t.Fatal(err)
			}
			eng := e.engine()
			s := e.engineStream(e.topic, "g")
			type result struct {
				sendErr, asyncErr, stopErr error
				took                       time.Duration
			}
			got := make(chan result, 1)
			eng.Add(s.Func(func(ctx context.Context, s *kstream.Stream[string]) error {
				for rec, err := range s.Records(ctx) {
					if err != nil {
						return err
					}
					if rec.Offset == 1 {
						var r result
						_, r.sendErr = eng.Send(ctx, "other", []byte("x"))
						async := make(chan error, 1)
						eng.SendAsync(ctx, "other", []byte("y"), func(_ kstream.RecordMetadata, err error) { async <- err })
						r.asyncErr = <-async
						sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
						start := time.Now()
						if stop == "Remove" {
							r.stopErr = eng.Remove(sctx, s)
						} else {
							r.stopErr = eng.Stop(sctx)
						}
						r.took = time.Since(start)
						cancel()
						got <- r
					}
				}
				return nil
			}))
			if err := eng.Start(e.ctx); err != nil {
				t.Fatal(err)
			}
			r := <-got
			if r.sendErr != nil || r.asyncErr != nil || r.stopErr != nil || r.took > time.Second {
				t.Fatalf("from the loop body: Send %v, SendAsync %v, %s %v after %v; want nil, nil, nil at once", r.sendErr, r.asyncErr, stop, r.stopErr, r.took)
			}
			eventually(t, 10*time.Second, "the member to leave", func() bool {
				g, err := e.c.DescribeGroup(e.ctx, "g")
				return err == nil && len(g.Members) == 0
			})
			// The record in hand was finished and committed.
			if c := e.committed("g"); c[0] < 2 {
				t.Fatalf("committed %v, want at least {0: 2}", c)
			}
		})
	}
}

// SendAsync done callback: Commit, CommitRecords, Shutdown, Close,
// Engine.Remove and SendAsync work from it (they do not wait on the
// producer's callback goroutine); Send waits until its ctx ends, and Stop
// fails to flush, because what they wait for is delivered on the goroutine
// the callback holds.
func TestCallsFromSendAsyncDone(t *testing.T) {
	e := newEnv(t, 1, 4)
	eng := e.engine()
	x := e.engineStream(e.topic, "x")
	eng.Add(x.Handle(func(context.Context, kstream.Record[string]) error { return nil }))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.c.WaitGroupStable(t, "x", 1, 20*time.Second)
	d := e.stream(kstream.Group("d"), kstream.ManualCommit())
	if err := d.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	recs := take(t, e.ctx, d, 3) // 0, 1 processed; 2 given back
	d2 := e.stream(kstream.Group("d2"))
	if err := d2.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	take(t, e.ctx, d2, 1)

	inner := make(chan error, 1)
	calls := map[string]func(ctx context.Context) error{
		"Commit":        func(ctx context.Context) error { return d.Commit(ctx) },
		"CommitRecords": func(ctx context.Context) error { return d.CommitRecords(ctx, recs[1]) },
		"Remove":        func(ctx context.Context) error { return eng.Remove(ctx, x) },
		"SendAsync": func(ctx context.Context) error {
			// Its done runs once this one has returned.
			eng.SendAsync(context.Background(), e.topic, []byte("inner"), func(_ kstream.RecordMetadata, err error) { inner <- err })
			return nil
		},
		"Send": func(ctx context.Context) error {
			sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			_, err := eng.Send(sctx, e.topic, []byte("blocked"))
			if !errors.Is(err, context.DeadlineExceeded) {
				return errors.New("Send from done did not wait for its ctx: " + errString(err))
			}
			return nil
		},
		"Shutdown": func(ctx context.Context) error { return d.Shutdown(ctx) },
		"Close":    func(context.Context) error { return d2.Close() },
	}
	order := []string{"Commit", "CommitRecords", "Remove", "SendAsync", "Send", "Shutdown", "Close"}
	for _, name := range order {
		errc := make(chan error, 1)
		eng.SendAsync(e.ctx, e.topic, []byte(name), func(_ kstream.RecordMetadata, err error) {
			if err != nil {
				errc <- err
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			errc <- calls[name](ctx)
		})
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("%s from done: %v", name, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s from done did not return", name)
		}
		switch name {
		case "CommitRecords":
			e.wantCommitted("d", map[int32]int64{0: 2})
		case "Remove":
			e.wantNoMembers("x", "Remove from done")
		case "SendAsync":
			if err := <-inner; err != nil {
				t.Fatalf("SendAsync from done: %v", err)
			}
		case "Shutdown":
			e.wantNoMembers("d", "Shutdown from done")
		case "Close":
			e.wantNoMembers("d2", "Close from done")
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// Engine.Stop | SendAsync done callback: not allowed. Stop closes the
// producer and waits for every done function, this one included, so it
// cannot finish: it gives up at its deadline plus the five seconds it
// waits for done functions (shortened here), with an error.
func TestCallsStopFromSendAsyncDoneFails(t *testing.T) {
	restore := kstream.SetSendDrainTimeout(300 * time.Millisecond)
	defer restore()
	e := newEnv(t, 1, 1)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	start := time.Now()
	eng.SendAsync(e.ctx, e.topic, []byte("x"), func(kstream.RecordMetadata, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		errc <- eng.Stop(ctx)
	})
	err := <-errc
	took := time.Since(start)
	if err == nil || took > 3*time.Second {
		t.Fatalf("Stop from done: %v after %v, want an error after its deadline and the wait for done functions", err, took)
	}
	t.Logf("Stop from done: %v after %v", err, took)
}
