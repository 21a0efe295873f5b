package kstream_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

func (e *env) engine(opts ...kstream.Option) *kstream.Engine {
	e.t.Helper()
	base := []kstream.Option{kstream.Brokers(e.c.Brokers()...), kstream.Logger(testLogger(e.t)), groupProtocol()}
	eng, err := kstream.NewEngine(append(base, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if err := eng.Stop(context.Background()); err != nil {
			e.t.Errorf("Stop: %v", err)
		}
	})
	return eng
}

// engineStream is a stream of the env's topic, without brokers of its own
// (it inherits the engine's), recording the values it handled.
func (e *env) engineStream(topic, group string, opts ...kstream.Option) *kstream.Stream[string] {
	e.t.Helper()
	base := []kstream.Option{kstream.Topics(topic), kstream.Group(group), kstream.Name(group)}
	s, err := kstream.NewStream(codec.String(), append(base, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

type seen struct {
	mu   sync.Mutex
	vals []string
}

func (s *seen) add(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vals = append(s.vals, v)
}

func (s *seen) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.vals)
}

func (s *seen) count() int { return len(s.get()) }

func state(t *testing.T, eng *kstream.Engine, name string) kstream.StreamState {
	t.Helper()
	h, ok := eng.StreamHealth(name)
	if !ok {
		t.Fatalf("engine has no stream %q", name)
	}
	return h.State
}

var errBoom = errors.New("boom")

// policyEnv has two topics: "good" (handled fine) and the env's topic, whose
// handler fails on v1.
func TestErrorPolicies(t *testing.T) {
	for _, policy := range []kstream.ErrorPolicy{kstream.ErrorPolicyStop, kstream.ErrorPolicyStopEngine, kstream.ErrorPolicyStopApplication} {
		t.Run(policy.String(), func(t *testing.T) {
			e := newEnv(t, 1, 3) // v0 v1 v2
			if err := e.c.CreateTopic(e.ctx, "good", 1); err != nil {
				t.Fatal(err)
			}
			if err := kstreamtest.ProduceValues(e.ctx, e.c, "good", 1, codec.String(), "g0", "g1"); err != nil {
				t.Fatal(err)
			}
			eng := e.engine()
			var good, bad seen
			goodDone := make(chan struct{})
			var once sync.Once
			eng.Add(e.engineStream("good", "good").Handle(func(_ context.Context, rec kstream.Record[string]) error {
				good.add(rec.Value)
				if good.count() >= 2 {
					once.Do(func() { close(goodDone) })
				}
				return nil
			}))
			eng.Add(e.engineStream(e.topic, "bad", kstream.OnError(policy)).Handle(func(_ context.Context, rec kstream.Record[string]) error {
				<-goodDone // crash only once the good stream has done its work
				bad.add(rec.Value)
				if rec.Value == "v1" {
					return errBoom
				}
				return nil
			}))
			runErr := make(chan error, 1)
			ctx, cancel := context.WithCancel(e.ctx)
			defer cancel()
			go func() { runErr <- eng.Run(ctx) }()

			eventually(t, 20*time.Second, "the bad stream to crash", func() bool { return state(t, eng, "bad") == kstream.StreamCrashed })
			if got := bad.get(); !slices.Equal(got, []string{"v0", "v1"}) {
				t.Fatalf("bad stream handled %v, want [v0 v1] and nothing after the crash", got)
			}
			h, _ := eng.StreamHealth("bad")
			if !errors.Is(h.LastErr, errBoom) {
				t.Fatalf("health LastErr = %v", h.LastErr)
			}
			switch policy {
			case kstream.ErrorPolicyStop:
				// The other stream goes on.
				if err := kstreamtest.ProduceValues(e.ctx, e.c, "good", 1, codec.String(), "g2"); err != nil {
					t.Fatal(err)
				}
				eventually(t, 20*time.Second, "the good stream to handle g2", func() bool { return good.count() == 3 })
				if state(t, eng, "good") != kstream.StreamRunning {
					t.Fatalf("good stream is %v", state(t, eng, "good"))
				}
				cancel()
				if err := <-runErr; err != nil {
					t.Fatalf("Run = %v, want nil after cancel", err)
				}
			case kstream.ErrorPolicyStopEngine:
				if err := <-runErr; err != nil {
					t.Fatalf("Run = %v, want nil after a StopEngine crash", err)
				}
				if state(t, eng, "good") != kstream.StreamStopped {
					t.Fatalf("good stream is %v, want stopped", state(t, eng, "good"))
				}
			case kstream.ErrorPolicyStopApplication:
				err := <-runErr
				if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), `"bad"`) {
					t.Fatalf("Run = %v, want an error naming the stream and wrapping its error", err)
				}
			}
			// The failed record was not committed; the one before it was.
			e.wantCommitted("bad", map[int32]int64{0: 1})
		})
	}
}

func TestErrorPolicyRestartRedeliversInOrder(t *testing.T) {
	e := newEnv(t, 1, 4)
	if err := e.c.CreateTopic(e.ctx, "good", 1); err != nil {
		t.Fatal(err)
	}
	eng := e.engine()
	var good seen
	eng.Add(e.engineStream("good", "good").Handle(func(_ context.Context, rec kstream.Record[string]) error {
		good.add(rec.Value)
		return nil
	}))
	var handled seen
	var fails atomic.Int32
	eng.Add(e.engineStream(e.topic, "restart", kstream.OnError(kstream.ErrorPolicyRestart)).Handle(func(_ context.Context, rec kstream.Record[string]) error {
		if rec.Value == "v2" && fails.Add(1) <= 2 {
			return errBoom // fails twice, then works
		}
		handled.add(rec.Value)
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "all four records handled", func() bool { return handled.count() == 4 })
	if got := handled.get(); !slices.Equal(got, []string{"v0", "v1", "v2", "v3"}) {
		t.Fatalf("handled %v, want every record once, in order", got)
	}
	h, _ := eng.StreamHealth("restart")
	if h.Restarts != 2 || h.State != kstream.StreamRunning {
		t.Fatalf("health %+v, want running after 2 restarts", h)
	}
	// The other stream was not disturbed by the restarts.
	if err := kstreamtest.ProduceValues(e.ctx, e.c, "good", 1, codec.String(), "g0"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the good stream to handle g0", func() bool { return good.count() == 1 })
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("restart", map[int32]int64{0: 4})
}

func TestPanickingHandlerIsACrash(t *testing.T) {
	e := newEnv(t, 1, 2)
	logs := &logRecorder{}
	eng := e.engine(kstream.Logger(slogTo(logs)))
	eng.Add(e.engineStream(e.topic, "p").Handle(func(_ context.Context, rec kstream.Record[string]) error {
		if rec.Value == "v1" {
			panic("handler blew up")
		}
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the stream to crash", func() bool { return state(t, eng, "p") == kstream.StreamCrashed })
	h, _ := eng.StreamHealth("p")
	var pe *kstream.PanicError
	if !errors.As(h.LastErr, &pe) || pe.Value != "handler blew up" {
		t.Fatalf("LastErr = %v, want a PanicError", h.LastErr)
	}
	out := logs.String()
	for _, want := range []string{"stream crashed", "stream=p", "topics=" + e.topic, "handler blew up", "engine_test.go"} {
		if !strings.Contains(out, want) {
			t.Errorf("crash log lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "stream crashed"); n != 1 {
		t.Errorf("crash logged %d times, want once", n)
	}
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("p", map[int32]int64{0: 1})
}

func TestFuncStream(t *testing.T) {
	e := newEnv(t, 1, 3)
	eng := e.engine()
	var handled seen
	eng.Add(e.engineStream(e.topic, "f").Func(func(ctx context.Context, s *kstream.Stream[string]) error {
		for rec, err := range s.Records(ctx) {
			if err != nil {
				return err
			}
			handled.add(rec.Value)
		}
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "three records", func() bool { return handled.count() == 3 })
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("f", map[int32]int64{0: 3})
}

func TestHandleBatches(t *testing.T) {
	e := newEnv(t, 1, 5)
	eng := e.engine()
	var sizes []int
	var mu sync.Mutex
	total := atomic.Int32{}
	eng.Add(e.engineStream(e.topic, "b").HandleBatches(2, 100*time.Millisecond, func(_ context.Context, recs []kstream.Record[string]) error {
		mu.Lock()
		sizes = append(sizes, len(recs))
		mu.Unlock()
		total.Add(int32(len(recs)))
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "five records", func() bool { return total.Load() == 5 })
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range sizes {
		if n < 1 || n > 2 {
			t.Fatalf("batch sizes %v, want at most 2", sizes)
		}
	}
	e.wantCommitted("b", map[int32]int64{0: 5})
}

func TestAddToRunningEngineAndRemove(t *testing.T) {
	e := newEnv(t, 1, 2)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	var handled seen
	s := e.engineStream(e.topic, "late").Handle(func(_ context.Context, rec kstream.Record[string]) error {
		handled.add(rec.Value)
		return nil
	})
	if err := eng.Add(s); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the added stream to handle both records", func() bool { return handled.count() == 2 })
	if err := eng.Remove(e.ctx, s); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("late", map[int32]int64{0: 2})
	if _, ok := eng.StreamHealth("late"); ok {
		t.Fatal("removed stream still in Health")
	}
	e.produce(2, 3)
	if err := eng.Remove(e.ctx, s); !errors.Is(err, kstream.ErrUnknownStream) {
		t.Fatalf("second Remove = %v, want ErrUnknownStream", err)
	}
	// Added again, it resumes from its commit.
	if err := eng.Add(s); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "v2 after re-adding", func() bool { return handled.count() == 3 })
	if got := handled.get(); !slices.Equal(got, []string{"v0", "v1", "v2"}) {
		t.Fatalf("handled %v", got)
	}
}

func TestAddRejects(t *testing.T) {
	e := newEnv(t, 1, 0)
	eng := e.engine()
	noFn := e.engineStream(e.topic, "nofn")
	if err := eng.Add(noFn); !errors.Is(err, kstream.ErrNoFunction) {
		t.Fatalf("Add without a function = %v, want ErrNoFunction", err)
	}
	h := func(context.Context, kstream.Record[string]) error { return nil }
	if err := eng.Add(e.engineStream(e.topic, "dup").Handle(h)); err != nil {
		t.Fatal(err)
	}
	if err := eng.Add(e.engineStream(e.topic, "dup").Handle(h)); !errors.Is(err, kstream.ErrStreamExists) {
		t.Fatalf("Add of a duplicate name = %v, want ErrStreamExists", err)
	}
	if err := eng.Remove(e.ctx, e.engineStream(e.topic, "other").Handle(h)); !errors.Is(err, kstream.ErrUnknownStream) {
		t.Fatalf("Remove of an unknown stream = %v, want ErrUnknownStream", err)
	}
	if _, err := kstream.NewEngine(kstream.Topics("x")); !errors.Is(err, kstream.ErrInvalidOption) || !strings.Contains(err.Error(), "Topics") {
		t.Fatalf("NewEngine(Topics) = %v, want ErrInvalidOption naming Topics", err)
	}
}

func TestGracefulStopFinishesSlowHandler(t *testing.T) {
	e := newEnv(t, 1, 2)
	if err := e.c.CreateTopic(e.ctx, "out", 1); err != nil {
		t.Fatal(err)
	}
	eng := e.engine()
	inHandler := make(chan struct{})
	var handlerCtxErr atomic.Value
	var handled seen
	eng.Add(e.engineStream(e.topic, "slow").Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		if rec.Value == "v0" {
			close(inHandler)
			time.Sleep(500 * time.Millisecond) // the work in hand while Stop runs
			handlerCtxErr.Store(fmt.Sprint(ctx.Err()))
			// Handlers may still send while the engine stops: the
			// producer is flushed and closed last.
			if _, err := eng.Send(ctx, "out", []byte("from a finishing handler")); err != nil {
				handlerCtxErr.Store("send: " + err.Error())
			}
		}
		handled.add(rec.Value)
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	<-inHandler
	stopCtx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := eng.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	if got := handled.get(); !slices.Equal(got, []string{"v0"}) {
		t.Fatalf("handled %v, want only the record in hand (stop fetching)", got)
	}
	if got := handlerCtxErr.Load(); got != "<nil>" {
		t.Fatalf("handler ctx during graceful stop: %v, want live and Send working", got)
	}
	if r := readBack(t, e, "out", 0, 0); string(r.Value) != "from a finishing handler" {
		t.Fatalf("record sent during stop: %q", r.Value)
	}
	e.wantCommitted("slow", map[int32]int64{0: 1})
	if _, err := eng.Send(e.ctx, e.topic, []byte("x")); !errors.Is(err, kstream.ErrEngineNotStarted) {
		t.Fatalf("Send after Stop = %v, want ErrEngineNotStarted", err)
	}
}

func TestStopDeadlineWithStuckHandler(t *testing.T) {
	e := newEnv(t, 1, 1)
	eng := e.engine()
	release := make(chan struct{})
	defer close(release)
	inHandler := make(chan struct{})
	eng.Add(e.engineStream(e.topic, "stuck").Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		close(inHandler)
		<-ctx.Done() // honours its ctx, which is canceled at the deadline
		return ctx.Err()
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	<-inHandler
	stopCtx, cancel := context.WithTimeout(e.ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := eng.Stop(stopCtx); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Stop took %v", took)
	}
	e.wantCommitted("stuck", map[int32]int64{}) // the record was not handled
}

func TestHooksRunInOrder(t *testing.T) {
	e := newEnv(t, 1, 0)
	eng := e.engine()
	var order seen
	for _, name := range []string{"startup1", "startup2"} {
		eng.OnStartup(func(ctx context.Context) error {
			// The producer is up during OnStartup.
			if _, err := eng.Send(ctx, e.topic, []byte(name)); err != nil {
				return err
			}
			order.add(name)
			return nil
		})
	}
	eng.AfterStartup(func(context.Context) error { order.add("after-startup"); return nil })
	eng.OnStop(func(context.Context) error { order.add("on-stop"); return nil })
	eng.AfterStop(func(context.Context) error { order.add("after-stop"); return nil })
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error)
	go func() { done <- eng.Run(ctx) }()
	eventually(t, 10*time.Second, "startup hooks", func() bool { return order.count() == 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, want := order.get(), []string{"startup1", "startup2", "after-startup", "on-stop", "after-stop"}; !slices.Equal(got, want) {
		t.Fatalf("hooks ran %v, want %v", got, want)
	}
}

func TestOnStartupErrorFailsStart(t *testing.T) {
	e := newEnv(t, 1, 0)
	eng := e.engine()
	eng.OnStartup(func(context.Context) error { return errBoom })
	if err := eng.Start(e.ctx); !errors.Is(err, errBoom) {
		t.Fatalf("Start = %v, want the hook's error", err)
	}
	if _, err := eng.Send(e.ctx, e.topic, nil); !errors.Is(err, kstream.ErrEngineNotStarted) {
		t.Fatalf("Send after a failed Start = %v", err)
	}
}
