package kstream_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// Item 13 of the core contract issue: ErrorPolicyRestart restarted forever
// on errors that no restart can heal. Such a crash stops the stream, logged
// once, and the stream is crashed, not restarting.
func TestLifecycleRestartPolicyDoesNotRestartPermanentErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []kstream.Option
		fault func(e *env)
		want  error
	}{
		{
			name: "ErrInvalidOption at Open",
			// A franz-go group on a stream without Group: Open fails.
			opts: []kstream.Option{kstream.ClientOptions(kgo.ConsumerGroup("sneaky"))},
			want: kstream.ErrInvalidOption,
		},
		{
			name:  "fatal fetch error: unsupported version",
			opts:  []kstream.Option{kstream.Group("g")},
			fault: func(e *env) { e.c.FailFetch(e.t, e.topic, kerr.UnsupportedVersion, kstreamtest.UntilHealed) },
			want:  kerr.UnsupportedVersion,
		},
		{
			name:  "fatal group error: invalid group ID",
			opts:  []kstream.Option{kstream.Group("g")},
			fault: func(e *env) { e.c.FailHeartbeat(e.t, "g", kerr.InvalidGroupID, kstreamtest.UntilHealed) },
			want:  kerr.InvalidGroupID,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1, 3)
			if tc.fault != nil {
				tc.fault(e)
			}
			logs := &logRecorder{}
			eng := e.engine(kstream.Logger(slogTo(logs)))
			opts := append([]kstream.Option{kstream.Topics(e.topic), kstream.Name("perm"), kstream.OnError(kstream.ErrorPolicyRestart)}, tc.opts...)
			s, err := kstream.NewStream(codec.String(), opts...)
			if err != nil {
				t.Fatal(err)
			}
			eng.Add(s.Handle(func(context.Context, kstream.Record[string]) error { return nil }))
			if err := eng.Start(e.ctx); err != nil {
				t.Fatal(err)
			}
			eventually(t, 20*time.Second, "the stream to crash", func() bool {
				h, _ := eng.StreamHealth("perm")
				return h.LastErr != nil
			})
			// The first restart would come 100ms after the crash: give it
			// ten times that to show up.
			time.Sleep(time.Second)
			h, _ := eng.StreamHealth("perm")
			if h.State != kstream.StreamCrashed || h.Restarts != 0 || !errors.Is(h.LastErr, tc.want) {
				t.Fatalf("health %+v, want crashed with %v and no restart", h, tc.want)
			}
			if n := strings.Count(logs.String(), `msg="stream crashed"`); n != 1 {
				t.Fatalf("%d crash logs, want 1:\n%s", n, logs)
			}
			if !strings.Contains(logs.String(), "restarting cannot heal") {
				t.Fatalf("the crash log does not say why the stream is not restarted:\n%s", logs)
			}
		})
	}
}

// An error a restart may heal is still restarted.
func TestLifecycleRestartPolicyRestartsOtherErrors(t *testing.T) {
	e := newEnv(t, 1, 3)
	eng := e.engine()
	failed := false
	var handled seen
	eng.Add(e.engineStream(e.topic, "heal", kstream.OnError(kstream.ErrorPolicyRestart)).Handle(func(_ context.Context, rec kstream.Record[string]) error {
		if rec.Value == "v1" && !failed {
			failed = true
			return errBoom
		}
		handled.add(rec.Value)
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the stream to restart and handle the rest", func() bool { return handled.count() == 3 })
	if h, _ := eng.StreamHealth("heal"); h.Restarts != 1 || h.State != kstream.StreamRunning {
		t.Fatalf("health %+v, want running after one restart", h)
	}
}
