package kstream_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// series returns the value of every series of metric name whose labels
// include want, keyed by the remaining labels rendered as k=v,...
func series(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			var rest []string
			for _, lp := range m.GetLabel() {
				if v, ok := want[lp.GetName()]; ok {
					if v != lp.GetValue() {
						continue metric
					}
					continue
				}
				rest = append(rest, lp.GetName()+"="+lp.GetValue())
			}
			out[strings.Join(rest, ",")] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

func TestMetricsPartitionGaugesMatchPositions(t *testing.T) {
	e := newEnv(t, 2, 10) // 5 per partition
	reg := prometheus.NewRegistry()
	s := e.stream(kstream.Group("mg"), kstream.Name("mg"), kstream.Metrics(reg))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs := take(t, e.ctx, s, 7)
	if err := s.Commit(e.ctx); err != nil { // the 6 finished; the 7th was given back
		t.Fatal(err)
	}
	consumed := map[int32]int64{}
	for _, r := range recs[:6] {
		consumed[r.Partition]++
	}
	e.wantCommitted("mg", consumed)
	for p := range int32(2) {
		l := map[string]string{"stream": "mg", "group": "mg", "topic": e.topic, "partition": strconv.Itoa(int(p))}
		got := map[string]float64{}
		for _, name := range []string{"committed_offset", "position", "highwater", "lag", "position_lag"} {
			got[name] = series(t, reg, "kstreams_"+name, l)[""]
		}
		m := float64(consumed[p])
		want := map[string]float64{"committed_offset": m, "position": m, "highwater": 5, "lag": 5 - m, "position_lag": 5 - m}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("partition %d: %s = %v, want %v (consumed %v of 5)", p, k, got[k], v, m)
			}
		}
	}
	// Processed counts what the loop bodies finished: 6 (the 7th was broken on).
	if got := series(t, reg, "kstreams_records_processed_total", map[string]string{"stream": "mg", "topic": e.topic})[""]; got != 6 {
		t.Errorf("records processed = %v, want 6", got)
	}
	if got := series(t, reg, "kstreams_commits_total", map[string]string{"stream": "mg"})[""]; got < 1 {
		t.Errorf("commits = %v, want at least the explicit one", got)
	}
	if got := series(t, reg, "kstreams_kgo_connects_total", nil); len(got) == 0 {
		t.Error("no kprom series for the stream's client")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := series(t, reg, "kstreams_lag", nil); len(got) != 0 {
		t.Errorf("lag series left after Close: %v", got)
	}
	if got := series(t, reg, "kstreams_kgo_connects_total", nil); len(got) != 0 {
		t.Errorf("kprom series left after Close: %v", got)
	}
}

func TestMetricsRevokedPartitionsLeave(t *testing.T) {
	e := newEnv(t, 4, 40)
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	l := &ledger{seen: map[[2]int64]int{}}
	a := startMember(t, ctx, e, "a", l, kstream.Group("rv"), kstream.Name("a"), kstream.Metrics(reg))
	defer a.s.Close()
	partitionsOf := func(stream string) map[string]float64 {
		return series(t, reg, "kstreams_highwater", map[string]string{"stream": stream, "topic": e.topic, "group": "rv"})
	}
	eventually(t, 20*time.Second, "a's four partitions in the metrics", func() bool { return len(partitionsOf("a")) == 4 })
	b := startMember(t, ctx, e, "b", l, kstream.Group("rv"), kstream.Name("b"), kstream.Metrics(reg))
	defer b.s.Close()
	eventually(t, 20*time.Second, "the partitions to be split", func() bool { return a.ownedCount() == 2 && b.ownedCount() == 2 })
	eventually(t, 10*time.Second, "a's revoked partitions to leave its metrics", func() bool {
		got := partitionsOf("a")
		if len(got) != 2 {
			return false
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		for k := range got {
			p, _ := strconv.Atoi(strings.TrimPrefix(k, "partition="))
			if !a.owned[int32(p)] {
				return false
			}
		}
		return true
	})
	if got := series(t, reg, "kstreams_rebalances_total", map[string]string{"stream": "a", "kind": "revoked"})[""]; got != 1 {
		t.Errorf("a's revoked rebalances = %v, want 1", got)
	}
	cancel()
	<-a.done
	<-b.done
}

func TestMetricsCountersAndTwoEnginesOneRegistry(t *testing.T) {
	e := newEnv(t, 1, 0)
	if err := e.c.Produce(e.ctx, &kgo.Record{Topic: e.topic, Value: []byte(`1`)}, &kgo.Record{Topic: e.topic, Value: []byte(`bad`)}); err != nil {
		t.Fatal(err)
	}
	if err := e.c.CreateTopic(e.ctx, "other", 1); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	// Engine one: a stream that crashes on the bad record, again and again.
	eng1 := e.engine(kstream.Metrics(reg), kstream.Name("one"))
	s1, err := kstream.NewStream(codec.JSON[int](), kstream.Topics(e.topic), kstream.Group("c1"), kstream.Name("crashy"), kstream.OnError(kstream.ErrorPolicyRestart))
	if err != nil {
		t.Fatal(err)
	}
	eng1.Add(s1.Handle(func(context.Context, kstream.Record[int]) error { return nil }))
	// Engine two on the same registry: a healthy stream, and sends.
	eng2 := e.engine(kstream.Metrics(reg), kstream.Name("two"))
	eng2.Add(e.engineStream("other", "fine").Handle(func(context.Context, kstream.Record[string]) error { return nil }))
	for _, eng := range []*kstream.Engine{eng1, eng2} {
		if err := eng.Start(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if _, err := eng2.Send(e.ctx, "other", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	counter := func(name string, l map[string]string) float64 { return series(t, reg, name, l)[""] }
	eventually(t, 20*time.Second, "two restarts of the crashing stream", func() bool {
		return counter("kstreams_restarts_total", map[string]string{"stream": "crashy"}) >= 2
	})
	if c := counter("kstreams_crashes_total", map[string]string{"stream": "crashy"}); c < 2 {
		t.Errorf("crashes = %v", c)
	}
	if c := counter("kstreams_decode_errors_total", map[string]string{"stream": "crashy", "topic": e.topic}); c < 2 {
		t.Errorf("decode errors = %v", c)
	}
	eventually(t, 20*time.Second, "the healthy stream to process the three sends", func() bool {
		return counter("kstreams_records_processed_total", map[string]string{"stream": "fine", "topic": "other"}) == 3
	})
	if c := counter("kstreams_records_sent_total", map[string]string{"engine": "two", "topic": "other"}); c != 3 {
		t.Errorf("records sent = %v, want 3", c)
	}
	if h := series(t, reg, "kstreams_handler_duration_seconds", map[string]string{"stream": "fine"})[""]; h != 3 {
		t.Errorf("handler duration samples = %v, want 3", h)
	}
	clients := series(t, reg, "kstreams_kgo_connects_total", nil)
	ids := map[string]bool{}
	for k := range clients {
		for _, kv := range strings.Split(k, ",") {
			if strings.HasPrefix(kv, "client_id=") {
				ids[kv] = true
			}
		}
	}
	if len(ids) < 3 { // two producers and at least the healthy stream
		t.Errorf("kprom client ids %v, want one per client", ids)
	}

	// Health: engine one has a stream that is restarting or crashed.
	rec := httptest.NewRecorder()
	eng2.HealthHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	var body struct {
		Running bool
		Healthy bool
		Streams []struct{ Name, State string }
	}
	if err := json.NewDecoder(rec.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusOK || !body.Healthy || len(body.Streams) != 1 || body.Streams[0].State != "running" {
		t.Errorf("engine two health: %d %+v", rec.Code, body)
	}

	// Stopped engines leave no stale series.
	for _, eng := range []*kstream.Engine{eng1, eng2} {
		if err := eng.Stop(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if len(mf.GetMetric()) > 0 {
			t.Errorf("series left after both engines stopped: %s (%d)", mf.GetName(), len(mf.GetMetric()))
		}
	}
	rec = httptest.NewRecorder()
	eng2.HealthHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("health of a stopped engine: %d, want 503", rec.Code)
	}
}
