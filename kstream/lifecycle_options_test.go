package kstream_test

import (
	"context"
	"crypto/tls"
	"errors"
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// Tests of item 6 of the core contract issue: options accepted and then
// silently ignored.

var noListener = kstream.ListenerFuncs{}

// Every option of streams is rejected by NewEngine, whatever its value:
// ResetOffset(Earliest) was accepted because the check compared the value
// with the default.
func TestLifecycleNewEngineRejectsEveryStreamOption(t *testing.T) {
	for _, tc := range []struct {
		opt  kstream.Option
		name string
	}{
		{kstream.ResetOffset(kstream.Earliest), "ResetOffset"},
		{kstream.ResetOffset(kstream.Latest), "ResetOffset"},
		{kstream.MaxPollRecords(kstream.DefaultMaxPollRecords), "MaxPollRecords"},
		{kstream.Topics("t"), "Topics"},
		{kstream.TopicPattern("t.*"), "TopicPattern"},
		{kstream.Group("g"), "Group"},
		{kstream.InitialOffsets(), "InitialOffsets"},
		{kstream.ManualCommit(), "ManualCommit"},
		{kstream.Listener(noListener), "Listener"},
		{kstream.PartitionConcurrency(1), "PartitionConcurrency"},
		{kstream.KeyConcurrency(1), "KeyConcurrency"},
		{kstream.InstanceID("i"), "InstanceID"},
	} {
		_, err := kstream.NewEngine(kstream.Brokers("localhost:9092"), tc.opt)
		if !errors.Is(err, kstream.ErrInvalidOption) || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("NewEngine(%s) = %v, want ErrInvalidOption naming %s", tc.name, err, tc.name)
		}
	}
	// The options of both are accepted.
	if _, err := kstream.NewEngine(kstream.Brokers("localhost:9092"), kstream.Name("e"), kstream.ClientOptions(),
		kstream.Logger(testLogger(t)), kstream.OnError(kstream.ErrorPolicyStop),
		kstream.TLS(&tls.Config{}), kstream.SASL(plain.Auth{User: "u", Pass: "p"}.AsMechanism()),
		kstream.StopTimeout(time.Second), kstream.CrashLoop(3, time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// Listener and ManualCommit need a group: without one there is no
// rebalance to report and nothing to commit to.
func TestLifecycleNewStreamRejectsGroupOptionsWithoutGroup(t *testing.T) {
	for _, tc := range []struct {
		opt  kstream.Option
		name string
	}{
		{kstream.Listener(noListener), "Listener"},
		{kstream.ManualCommit(), "ManualCommit"},
		{kstream.InstanceID("i"), "InstanceID"},
	} {
		_, err := kstream.NewStream(codec.String(), kstream.Topics("t"), tc.opt)
		if !errors.Is(err, kstream.ErrInvalidOption) || !strings.Contains(err.Error(), tc.name) || !strings.Contains(err.Error(), "Group") {
			t.Errorf("NewStream(%s without Group) = %v, want ErrInvalidOption naming %s and Group", tc.name, err, tc.name)
		}
		if _, err := kstream.NewStream(codec.String(), kstream.Topics("t"), kstream.Group("g"), tc.opt); err != nil {
			t.Errorf("NewStream(%s with Group) = %v", tc.name, err)
		}
	}
}

// PartitionConcurrency and KeyConcurrency apply to a Handle function run by
// an engine; a stream ranged over directly handled one record at a time
// and said nothing.
func TestLifecycleConcurrencyOnARangedStream(t *testing.T) {
	e := newEnv(t, 1, 3)
	for _, tc := range []struct {
		opt  kstream.Option
		name string
	}{
		{kstream.PartitionConcurrency(4), "PartitionConcurrency"},
		{kstream.KeyConcurrency(4), "KeyConcurrency"},
	} {
		check := func(how string, values iter.Seq2[any, error]) {
			t.Helper()
			var errs []error
			for _, err := range values {
				errs = append(errs, err)
			}
			if len(errs) != 1 || !errors.Is(errs[0], kstream.ErrInvalidOption) || !strings.Contains(errs[0].Error(), tc.name) {
				t.Errorf("%s with %s yielded %v, want ErrInvalidOption naming %s, once", how, tc.name, errs, tc.name)
			}
		}
		s := e.stream(kstream.Group("g"), tc.opt)
		// Bounded, for a range that would consume instead.
		rctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		check("Records", anyValues(s.Records(rctx)))
		check("Batches", anyValues(s.Batches(rctx, 10, time.Millisecond)))
		err := s.Use(rctx, func(iter.Seq2[kstream.Record[string], error]) error { return nil })
		cancel()
		if !errors.Is(err, kstream.ErrInvalidOption) || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("Use with %s = %v, want ErrInvalidOption naming it", tc.name, err)
		}
		if err := s.Commit(e.ctx); !errors.Is(err, kstream.ErrNotOpen) {
			t.Errorf("after the rejected ranges, Commit = %v, want ErrNotOpen: nothing opened the stream", err)
		}
		// Run by an engine with Handle, it is what the option is for.
		eng := e.engine()
		var handled seen
		h := e.engineStream(e.topic, "c-"+tc.name, tc.opt).Handle(func(_ context.Context, rec kstream.Record[string]) error {
			handled.add(rec.Value)
			return nil
		})
		if err := eng.Add(h); err != nil {
			t.Fatal(err)
		}
		if err := eng.Start(e.ctx); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "the engine to handle the records", func() bool { return handled.count() == 3 })
		if err := eng.Stop(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func anyValues[V any](seq iter.Seq2[V, error]) iter.Seq2[any, error] {
	return func(yield func(any, error) bool) {
		for v, err := range seq {
			if !yield(v, err) {
				return
			}
		}
	}
}

// HandleBatches with a bad size was checked only when the range started,
// as a crash: with ErrorPolicyRestart, a restart loop.
func TestLifecycleAddRejectsBadHandleBatches(t *testing.T) {
	e := newEnv(t, 1, 0)
	eng := e.engine()
	h := func(context.Context, []kstream.Record[string]) error { return nil }
	for _, tc := range []struct {
		max  int
		wait time.Duration
		want string
	}{
		{0, time.Millisecond, "max"},
		{-1, time.Millisecond, "max"},
		{10, -time.Millisecond, "wait"},
	} {
		s := e.engineStream(e.topic, "b", kstream.OnError(kstream.ErrorPolicyRestart)).HandleBatches(tc.max, tc.wait, h)
		err := eng.Add(s)
		if !errors.Is(err, kstream.ErrInvalidOption) || !strings.Contains(err.Error(), "HandleBatches") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Add of HandleBatches(%d, %v) = %v, want ErrInvalidOption naming HandleBatches and %s", tc.max, tc.wait, err, tc.want)
			eng.Remove(e.ctx, s)
		}
	}
}
