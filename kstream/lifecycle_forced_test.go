package kstream_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/kstream"
)

// Tests of a forced stop: a handler that ignores its ctx past the stop's
// deadline, so that its stream is closed under it.

// stuckHandler handles records, except that it holds the first one whose
// value is at, ignoring its ctx, until released.
type stuckHandler struct {
	at      string
	stuck   chan struct{} // closed when it holds the record
	release chan struct{}
	once    sync.Once
	relOnce sync.Once
	handled seen
	held    atomic.Bool
}

func newStuckHandler(t *testing.T, at string) *stuckHandler {
	h := &stuckHandler{at: at, stuck: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(h.Release) // before the goroutine leak check, which was registered first
	return h
}

func (h *stuckHandler) Release() { h.relOnce.Do(func() { close(h.release) }) }

func (h *stuckHandler) handle(_ context.Context, rec kstream.Record[string]) error {
	if rec.Value == h.at && h.held.CompareAndSwap(false, true) {
		close(h.stuck)
		<-h.release // ignores ctx
	}
	h.handled.add(rec.Value)
	return nil
}

// Item 4 of the core contract issue: a forced stop aborted the client before
// the final commit, so every record processed since the last automatic
// commit came again, not only the record in hand.
func TestLifecycleForcedStopCommitsWhatWasProcessed(t *testing.T) {
	e := newEnv(t, 1, 5)
	eng := e.engine()
	h := newStuckHandler(t, "v3")
	// Automatic commits an hour apart: only the final commit can commit.
	eng.Add(e.engineStream(e.topic, "forced", kstream.ClientOptions(kgo.AutoCommitInterval(time.Hour))).Handle(h.handle))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	<-h.stuck
	stopCtx, cancel := context.WithTimeout(e.ctx, 300*time.Millisecond)
	defer cancel()
	err := eng.Stop(stopCtx)
	if err == nil || !strings.Contains(err.Error(), `"forced" did not stop before the deadline`) {
		t.Fatalf("Stop = %v, want the stream reported as not stopped", err)
	}
	// v0, v1 and v2 were processed; v3 is in hand.
	e.wantCommitted("forced", map[int32]int64{0: 3})
}

// Item C of the core contract issue: after a forced stop, Health said the
// stream ran, and a later Start never started it again (startRunner refused
// while the old handler ran).
func TestLifecycleForcedStopHealthAndRestart(t *testing.T) {
	e := newEnv(t, 1, 2)
	eng := e.engine()
	h := newStuckHandler(t, "v0")
	eng.Add(e.engineStream(e.topic, "stuck").Handle(h.handle))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	<-h.stuck
	stopCtx, cancel := context.WithTimeout(e.ctx, 300*time.Millisecond)
	defer cancel()
	if err := eng.Stop(stopCtx); err == nil {
		t.Fatal("Stop = nil, want the stream reported as not stopped")
	}
	sh, _ := eng.StreamHealth("stuck")
	if sh.State == kstream.StreamRunning {
		t.Fatalf("after the forced stop, with the engine stopped, the stream's health says %v", sh.State)
	}
	if sh.State != kstream.StreamStopping || sh.LastErr == nil || !strings.Contains(sh.LastErr.Error(), "did not stop") {
		t.Fatalf("after the forced stop: health %+v, want stopping with the reason", sh)
	}

	// Started again while the old handler still runs: the stream cannot
	// run yet, and health says so.
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	if sh, _ := eng.StreamHealth("stuck"); sh.State != kstream.StreamStopping {
		t.Fatalf("after Start, with the old handler still running: health %+v, want stopping", sh)
	}
	rec := httptest.NewRecorder()
	eng.HealthHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("health check %d %s while the stream cannot run, want 503", rec.Code, rec.Body)
	}

	// Once the old handler returns, the stream starts again: v0, which
	// was in hand and not committed, comes again, then v1.
	h.Release()
	eventually(t, 20*time.Second, "the stream to start again and handle v0 and v1", func() bool {
		got := h.handled.get()
		return len(got) == 3 && got[1] == "v0" && got[2] == "v1"
	})
	if sh, _ := eng.StreamHealth("stuck"); sh.State != kstream.StreamRunning {
		t.Fatalf("after the restart: health %+v, want running", sh)
	}
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("stuck", map[int32]int64{0: 2})
}
