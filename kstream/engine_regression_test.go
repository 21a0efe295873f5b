package kstream_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// Regression tests for engine findings of a review. Each failed before its
// fix.

func TestRunStopsTheEngineWhenAfterStartupFails(t *testing.T) {
	e := newEnv(t, 1, 5)
	eng := e.engine()
	eng.Add(e.engineStream(e.topic, "g").Handle(func(context.Context, kstream.Record[string]) error { return nil }))
	errWarm := errors.New("warm-up failed")
	eng.AfterStartup(func(context.Context) error { return errWarm })
	if err := eng.Run(e.ctx); !errors.Is(err, errWarm) {
		t.Fatalf("Run = %v, want the hook's error", err)
	}
	if h := eng.Health(); h.Running || h.Streams[0].State != kstream.StreamStopped {
		t.Fatalf("Run returned with the engine still running: %+v", h)
	}
}

func TestStopEndsRun(t *testing.T) {
	e := newEnv(t, 1, 5)
	eng := e.engine()
	eng.Add(e.engineStream(e.topic, "g").Handle(func(context.Context, kstream.Record[string]) error { return nil }))
	runErr := make(chan error, 1)
	go func() { runErr <- eng.Run(e.ctx) }()
	eventually(t, 10*time.Second, "the engine to run", func() bool { return eng.Health().Running })
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop finished, but Run kept waiting for its ctx")
	}
}

// A Func stream's ctx stays live during a graceful stop, so the record in
// hand finishes; the range then ends at the next boundary.
func TestFuncCtxLiveDuringGracefulStop(t *testing.T) {
	e := newEnv(t, 1, 3)
	eng := e.engine()
	inBody := make(chan struct{}, 10)
	var stored seen
	eng.Add(e.engineStream(e.topic, "g").Func(func(ctx context.Context, s *kstream.Stream[string]) error {
		for rec, err := range s.Records(ctx) {
			if err != nil {
				return err
			}
			inBody <- struct{}{}
			select { // store(ctx, rec): I/O bounded by ctx
			case <-time.After(300 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
			stored.add(rec.Value)
		}
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	<-inBody
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	if h, _ := eng.StreamHealth("g"); h.LastErr != nil || h.State != kstream.StreamStopped {
		t.Fatalf("health %+v: the graceful stop canceled the record in hand", h)
	}
	if got := stored.get(); len(got) != 1 || got[0] != "v0" {
		t.Fatalf("stored %v, want only the record in hand", got)
	}
	e.wantCommitted("g", map[int32]int64{0: 1})
}

// ErrorPolicyStopEngine stops the whole engine also when it was started with
// Start, not Run.
func TestStopEngineWithoutRun(t *testing.T) {
	e := newEnv(t, 1, 1)
	eng := e.engine()
	eng.Add(e.engineStream(e.topic, "g", kstream.OnError(kstream.ErrorPolicyStopEngine)).Handle(func(context.Context, kstream.Record[string]) error {
		return errBoom
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	// Once stopped, the engine's producer is gone too.
	eventually(t, 20*time.Second, "the engine to stop itself", func() bool {
		_, err := eng.Send(e.ctx, e.topic, nil)
		return errors.Is(err, kstream.ErrEngineNotStarted)
	})
	if h := eng.Health(); h.Running || h.Streams[0].State != kstream.StreamCrashed {
		t.Fatalf("health after the stop: %+v", h)
	}
}

// Close called twice at once: both return after the stream is closed.
func TestConcurrentCloseWaits(t *testing.T) {
	e := newEnv(t, 1, 2)
	s := e.stream(kstream.Group("g"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	take(t, e.ctx, s, 2) // processes the first, breaks on the second
	first := make(chan error, 1)
	go func() { first <- s.Close() }()
	second := s.Close()
	if err := <-first; err != nil || second != nil {
		t.Fatalf("Close errors %v and %v", err, second)
	}
	// Whichever returned, the commit is done: the first Close's work
	// finished before either returned.
	e.wantCommitted("g", map[int32]int64{0: 1})
}

// Without a group, an initial offset for a partition the topic lacks is
// reported, not waited for silently.
func TestInitialOffsetsWithoutGroupUnknownPartitionWarns(t *testing.T) {
	e := newEnv(t, 1, 2)
	logs := &logRecorder{}
	s := e.stream(kstream.Logger(slogTo(logs)), kstream.InitialOffsets(kstream.TopicPartitionOffset{Topic: e.topic, Partition: 5, Offset: 1}))
	if got := take(t, e.ctx, s, 2); got[0].Offset != 0 {
		t.Fatalf("first offset %d", got[0].Offset)
	}
	if out := logs.String(); !strings.Contains(out, "initial offset ignored") || !strings.Contains(out, "partition=5") {
		t.Fatalf("no warning for partition 5:\n%s", out)
	}
}

// Engine.Stop returned nil when a stream's final commit failed (it was only
// logged): the records it processed come again, and the caller must know.
func TestStopReportsAFailedFinalCommit(t *testing.T) {
	e := newEnv(t, 1, 3)
	eng := e.engine()
	e.c.FailCommit(t, "g", kerr.GroupAuthorizationFailed, kstreamtest.UntilHealed)
	got := make(chan struct{}, 3)
	s := e.engineStream(e.topic, "g")
	eng.Add(s.Handle(func(context.Context, kstream.Record[string]) error {
		got <- struct{}{}
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case <-got:
		case <-e.ctx.Done():
			t.Fatal("the records never reached the handler")
		}
	}
	err := eng.Stop(e.ctx)
	if !errors.Is(err, kerr.GroupAuthorizationFailed) || !strings.Contains(err.Error(), s.Name()) {
		t.Fatalf("Stop = %v, want the final commit's GROUP_AUTHORIZATION_FAILED naming stream %q", err, s.Name())
	}
	if h := eng.Health(); h.Running || h.Streams[0].State != kstream.StreamStopped {
		t.Fatalf("a failed final commit is not a crash: health %+v", h)
	}
}

// Engine.Stop called from a listener aborted the stream's client before
// its final commit, so the commit failed ("client closed"), the records
// processed since the last commit came again, and Stop returned that error.
// Found in review. The stream follows a pattern, so that a new topic brings
// a second OnAssigned, in which the listener stops the engine; franz-go's
// own commits are an hour apart, so only the final commit can commit.
func TestStopFromListenerCommits(t *testing.T) {
	checkNoGoroutineLeak(t)
	c := kstreamtest.NewCluster(t, kstreamtest.Topic("rev-a", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	vals := make([]string, 10)
	for i := range vals {
		vals[i] = fmt.Sprint(i)
	}
	if err := kstreamtest.ProduceValues(ctx, c, "rev-a", 1, codec.String(), vals...); err != nil {
		t.Fatal(err)
	}
	eng, err := kstream.NewEngine(kstream.Brokers(c.Brokers()...), kstream.Logger(testLogger(t)), groupProtocol())
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	var assigned atomic.Int32
	s, err := kstream.NewStream(codec.String(), kstream.TopicPattern("rev-.*"), kstream.Group("rev"),
		kstream.ClientOptions(kgo.AutoCommitInterval(time.Hour), kgo.MetadataMinAge(50*time.Millisecond),
			kgo.MetadataMaxAge(200*time.Millisecond), kgo.HeartbeatInterval(100*time.Millisecond)),
		kstream.Listener(kstream.ListenerFuncs{Assigned: func(context.Context, kstream.AnyStream, map[string][]int32) {
			if assigned.Add(1) == 2 {
				sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer scancel()
				stopped <- eng.Stop(sctx)
			}
		}}))
	if err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int32
	eng.Add(s.Handle(func(context.Context, kstream.Record[string]) error {
		handled.Add(1)
		return nil
	}))
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the 10 records to be handled", func() bool { return handled.Load() == 10 })
	if err := c.CreateTopic(ctx, "rev-b", 1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Engine.Stop from OnAssigned = %v, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("the new topic never brought a second OnAssigned")
	}
	committed, err := c.Committed(ctx, "rev")
	if err != nil {
		t.Fatal(err)
	}
	if got := committed["rev-a"][0]; got != 10 {
		t.Fatalf("rev-a/0 committed at %d after the stop from the listener, want 10", got)
	}
}
