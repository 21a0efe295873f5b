package kstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/kstream"
)

// The lag of a stream run by an engine comes from its group's committed
// offsets, so it keeps growing while the stream is crashed: alerts on it
// do not go dark when the consumer dies. The up gauge reads 0 then.
func TestMetricsLagGrowsWhileCrashed(t *testing.T) {
	e := newEnv(t, 1, 4) // v0..v3
	reg := prometheus.NewRegistry()
	// The group's committed offsets trail the records processed by up to
	// the autocommit interval (5 s by default).
	eng := e.engine(kstream.Metrics(reg), kstream.ClientOptions(kgo.AutoCommitInterval(200*time.Millisecond)))
	lagging := e.engineStream(e.topic, "lagging")
	eng.Add(lagging.Handle(func(_ context.Context, rec kstream.Record[string]) error {
		if rec.Value == "v2" {
			return errBoom // v0 and v1 processed and committed, then a crash
		}
		return nil
	}))
	eng.Add(e.engineStream(e.topic, "healthy").Handle(func(context.Context, kstream.Record[string]) error { return nil }))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"stream": "lagging", "group": "lagging", "topic": e.topic, "partition": "0"}
	gauge := func(name string, l map[string]string) (float64, bool) {
		v, ok := series(t, reg, name, l)[""]
		return v, ok
	}
	eventually(t, 20*time.Second, "the stream to crash", func() bool { return state(t, eng, "lagging") == kstream.StreamCrashed })
	eventually(t, 10*time.Second, "lag 2 and committed 2 from the group", func() bool {
		lag, ok1 := gauge("kstreams_lag", labels)
		committed, ok2 := gauge("kstreams_committed_offset", labels)
		return ok1 && ok2 && lag == 2 && committed == 2
	})
	if up, ok := gauge("kstreams_stream_up", map[string]string{"stream": "lagging"}); !ok || up != 0 {
		t.Errorf("up of the crashed stream = %v (present %v), want 0", up, ok)
	}
	eventually(t, 10*time.Second, "the healthy stream to be up", func() bool {
		up, ok := gauge("kstreams_stream_up", map[string]string{"stream": "healthy"})
		return ok && up == 1
	})

	// Records keep coming; nobody consumes them: the lag grows.
	e.produce(4, 9)
	eventually(t, 10*time.Second, "the lag of the crashed stream to grow to 7", func() bool {
		lag, ok := gauge("kstreams_lag", labels)
		return ok && lag == 7
	})
	eventually(t, 10*time.Second, "the healthy stream's lag to be 0", func() bool {
		lag, ok := gauge("kstreams_lag", map[string]string{"stream": "healthy", "group": "healthy", "topic": e.topic, "partition": "0"})
		return ok && lag == 0
	})

	// A stream removed from the engine is no longer reported.
	if err := eng.Remove(e.ctx, lagging); err != nil {
		t.Fatal(err)
	}
	if _, ok := gauge("kstreams_lag", labels); ok {
		t.Error("lag of a removed stream still reported")
	}
	if _, ok := gauge("kstreams_stream_up", map[string]string{"stream": "lagging"}); ok {
		t.Error("up of a removed stream still reported")
	}
}
