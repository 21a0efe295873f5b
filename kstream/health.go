package kstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// Health is a snapshot of an engine and its streams, for a health check.
// It marshals to JSON with the keys given beside each field (HealthHandler
// serves it so).
type Health struct {
	Engine  string         `json:"engine"`
	Running bool           `json:"running"`
	Healthy bool           `json:"healthy"` // running, and every stream healthy
	Streams []StreamHealth `json:"streams"`
}

// StreamHealth is the state of one stream of an engine. It marshals to JSON
// with the keys given beside each field; LastErr is its message.
type StreamHealth struct {
	Name  string      `json:"name"`
	State StreamState `json:"state"`
	// Healthy is false while the stream is crashed or stopping, while
	// some of its topics do not exist (MissingTopics), while it is in a
	// crash loop (CrashLoop), and while its decoder is unavailable
	// (DecoderUnavailable).
	Healthy bool `json:"healthy"`
	// LastErr is the last crash, or why the last stop did not finish, if
	// any.
	LastErr error `json:"last_err,omitempty"`
	// Restarts counts the restarts by ErrorPolicyRestart since the engine
	// started the stream.
	Restarts int `json:"restarts"`
	// CrashLoop is true while the stream has been restarted at least as
	// many times as the engine's CrashLoop option says within its window
	// (3 times within a minute by default).
	CrashLoop bool `json:"crash_loop"`
	// MissingTopics are the stream's topics the brokers did not know at
	// the stream's last check (made soon after it opens, then every
	// second while some are missing, every 30 seconds otherwise).
	MissingTopics []string `json:"missing_topics,omitempty"`
	// DecoderUnavailable is the last error of the stream's decoder while
	// it cannot decode for a reason that is not the record's (it wraps
	// codec.ErrUnavailable: a schema registry that cannot be reached): the
	// stream holds the record and retries; empty once a decode succeeds.
	DecoderUnavailable string `json:"decoder_unavailable,omitempty"`
}

// MarshalJSON writes sh with LastErr as its message.
func (sh StreamHealth) MarshalJSON() ([]byte, error) {
	type plain StreamHealth
	v := struct {
		plain
		LastErr string `json:"last_err,omitempty"`
	}{plain: plain(sh)}
	if sh.LastErr != nil {
		v.LastErr = sh.LastErr.Error()
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads what MarshalJSON writes; LastErr becomes an error
// with the message.
func (sh *StreamHealth) UnmarshalJSON(b []byte) error {
	type plain StreamHealth
	var v struct {
		plain
		LastErr string `json:"last_err,omitempty"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*sh = StreamHealth(v.plain)
	if v.LastErr != "" {
		sh.LastErr = errors.New(v.LastErr)
	}
	return nil
}

// MarshalText writes the state's name: "running", "crashed", ...
func (s StreamState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state's name, as MarshalText writes it.
func (s *StreamState) UnmarshalText(b []byte) error {
	for st := StreamStopped; st <= StreamFinished; st++ {
		if st.String() == string(b) {
			*s = st
			return nil
		}
	}
	return fmt.Errorf("kstream: unknown stream state %q", b)
}

// Default crash-loop detection: see CrashLoop.
const (
	DefaultCrashLoopRestarts = 3
	DefaultCrashLoopWindow   = time.Minute
)

// Health reports the engine's state and each stream's, in the order the
// streams were added.
func (e *Engine) Health() Health {
	n, window := e.cfg.crashLoop()
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	h := Health{Engine: e.name, Running: e.state == engineRunning, Streams: make([]StreamHealth, 0, len(e.runners))}
	h.Healthy = h.Running
	for _, r := range e.runners {
		r.mu.Lock()
		sh := StreamHealth{Name: r.name, State: r.state, LastErr: r.lastErr, Restarts: r.restarts}
		recent := 0
		for _, t := range r.restartTimes {
			if now.Sub(t) < window {
				recent++
			}
		}
		r.mu.Unlock()
		sh.CrashLoop = recent >= n
		if sh.State == StreamRunning || sh.State == StreamRestarting {
			sh.MissingTopics = r.s.missingTopics()
			sh.DecoderUnavailable = r.s.decoderUnavailable()
		}
		sh.Healthy = sh.State != StreamCrashed && sh.State != StreamStopping && !sh.CrashLoop &&
			len(sh.MissingTopics) == 0 && sh.DecoderUnavailable == ""
		h.Healthy = h.Healthy && sh.Healthy
		h.Streams = append(h.Streams, sh)
	}
	return h
}

// StreamHealth returns the health of the stream named name, and whether the
// engine has it.
func (e *Engine) StreamHealth(name string) (StreamHealth, bool) {
	for _, sh := range e.Health().Streams {
		if sh.Name == name {
			return sh, true
		}
	}
	return StreamHealth{}, false
}

// HealthHandler returns an http.Handler for a health check endpoint
// (/healthz, say). It answers with Health as JSON, with status 200 when it
// is Healthy and 503 otherwise: when the engine is not running, or a stream
// is crashed, stopping (its function outlived a stop's deadline: the stream
// consumes nothing), in a crash loop, or subscribed to topics that do not
// exist. A stream restarting now and then counts as healthy: its policy is
// dealing with it; so does a finished one (StopAtEnd): it did its work.
func (e *Engine) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := e.Health()
		if h.Streams == nil {
			h.Streams = []StreamHealth{}
		}
		w.Header().Set("Content-Type", "application/json")
		if !h.Healthy {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(h)
	})
}

// noteRestart records a restart for crash-loop detection, keeping only as
// many as detection needs. r.mu is held.
func (r *runner) noteRestartLocked(now time.Time, keep int) {
	r.restartTimes = append(r.restartTimes, now)
	if len(r.restartTimes) > keep {
		r.restartTimes = slices.Delete(r.restartTimes, 0, len(r.restartTimes)-keep)
	}
}
