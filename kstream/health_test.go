package kstream_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/kstream"
)

// healthz serves eng's health check once and returns its status and body.
func healthz(t *testing.T, eng *kstream.Engine) (int, kstream.Health, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	eng.HealthHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	var h kstream.Health
	if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil {
		t.Fatalf("health body %q: %v", rec.Body.String(), err)
	}
	var raw map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	return rec.Code, h, raw
}

func TestHealthMissingTopics(t *testing.T) {
	e := newEnv(t, 1, 0)
	var logs logRecorder
	eng := e.engine(kstream.Logger(slogTo(&logs)))
	var handled atomic.Int32
	eng.Add(e.engineStream("absent", "absent").Handle(func(context.Context, kstream.Record[string]) error {
		handled.Add(1)
		return nil
	}))
	eng.Add(e.engineStream(e.topic, "present").Handle(func(context.Context, kstream.Record[string]) error { return nil }))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, 10*time.Second, "a warning naming the missing topic", func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, "do not exist") && strings.Contains(l, "absent") {
				return true
			}
		}
		return false
	})
	t.Logf("warned after %v", time.Since(start))
	code, h, raw := healthz(t, eng)
	if code != http.StatusServiceUnavailable || h.Healthy || raw["healthy"] != false {
		t.Fatalf("health with a missing topic: %d %+v", code, h)
	}
	sh, _ := eng.StreamHealth("absent")
	if sh.Healthy || !slices.Equal(sh.MissingTopics, []string{"absent"}) || sh.State != kstream.StreamRunning {
		t.Fatalf("stream health %+v, want running, unhealthy, missing [absent]", sh)
	}
	if other, _ := eng.StreamHealth("present"); !other.Healthy || len(other.MissingTopics) != 0 {
		t.Fatalf("the other stream: %+v, want healthy", other)
	}

	// Once the topic exists, the stream consumes it and health turns back.
	if err := e.c.CreateTopic(e.ctx, "absent", 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "health to turn back", func() bool {
		code, h, _ := healthz(t, eng)
		return code == http.StatusOK && h.Healthy
	})
	if _, err := eng.Send(e.ctx, "absent", []byte("x")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the stream to consume the new topic", func() bool { return handled.Load() == 1 })
}

func TestHealthCrashLoop(t *testing.T) {
	e := newEnv(t, 1, 1)
	eng := e.engine(kstream.CrashLoop(3, 2*time.Second))
	var calls atomic.Int32
	third := make(chan struct{})
	eng.Add(e.engineStream(e.topic, "loop", kstream.OnError(kstream.ErrorPolicyRestart)).Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		switch calls.Add(1) {
		case 1, 2:
			return errBoom
		case 3:
			select {
			case <-third:
			case <-ctx.Done():
			}
			return errBoom
		}
		return nil
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the third delivery", func() bool { return calls.Load() == 3 })
	// Two restarts within the window: not yet a loop.
	code, h, _ := healthz(t, eng)
	if code != http.StatusOK || !h.Healthy || h.Streams[0].Restarts != 2 || h.Streams[0].CrashLoop {
		t.Fatalf("health after two restarts: %d %+v, want healthy", code, h)
	}
	close(third)
	eventually(t, 10*time.Second, "the third restart", func() bool {
		sh, _ := eng.StreamHealth("loop")
		return sh.Restarts == 3
	})
	code, h, raw := healthz(t, eng)
	if code != http.StatusServiceUnavailable || h.Healthy || !h.Streams[0].CrashLoop || h.Streams[0].Healthy {
		t.Fatalf("health after three restarts within the window: %d %+v, want a crash loop", code, h)
	}
	streams := raw["streams"].([]any)
	if s0 := streams[0].(map[string]any); s0["crash_loop"] != true || s0["healthy"] != false || !strings.Contains(s0["last_err"].(string), "boom") {
		t.Fatalf("JSON of the looping stream: %v", s0)
	}
	// The fourth delivery succeeds; once the restarts fall out of the
	// window, health turns back.
	eventually(t, 10*time.Second, "health to turn back after the window", func() bool {
		code, h, _ := healthz(t, eng)
		return code == http.StatusOK && h.Healthy && calls.Load() == 4
	})
}

// TestHealthJSONNamesMatchFields checks that every key of the health JSON is
// the snake case of the field it comes from, so that Go code and JSON read
// alike.
func TestHealthJSONNamesMatchFields(t *testing.T) {
	e := newEnv(t, 1, 0)
	eng := e.engine(kstream.Name("names"))
	eng.Add(e.engineStream(e.topic, "s").Handle(func(context.Context, kstream.Record[string]) error { return nil }))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	_, h, raw := healthz(t, eng)
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	for k := range raw["streams"].([]any)[0].(map[string]any) {
		keys = append(keys, "streams."+k)
	}
	slices.Sort(keys)
	want := []string{"engine", "healthy", "running", "streams", "streams.crash_loop", "streams.healthy", "streams.name", "streams.restarts", "streams.state"}
	if !slices.Equal(keys, want) {
		t.Errorf("JSON keys %v, want %v", keys, want)
	}
	if !h.Healthy || !h.Running || h.Engine != "names" || h.Streams[0].State != kstream.StreamRunning {
		t.Errorf("decoded health %+v", h)
	}
	if direct := eng.Health(); direct.Healthy != h.Healthy {
		t.Errorf("Health().Healthy = %v, JSON healthy = %v", direct.Healthy, h.Healthy)
	}
}
