package kstream

import (
	"encoding/json"
	"net/http"
)

// Health is a snapshot of an engine and its streams, for a health check.
type Health struct {
	Engine  string
	Running bool
	Streams []StreamHealth
}

// StreamHealth is the state of one stream of an engine.
type StreamHealth struct {
	Name     string
	State    StreamState
	LastErr  error // the last crash, or why the last stop did not finish, if any
	Restarts int   // restarts by ErrorPolicyRestart since the engine started it
}

// Health reports the engine's state and each stream's, in the order the
// streams were added.
func (e *Engine) Health() Health {
	e.mu.Lock()
	defer e.mu.Unlock()
	h := Health{Engine: e.name, Running: e.state == engineRunning, Streams: make([]StreamHealth, 0, len(e.runners))}
	for _, r := range e.runners {
		r.mu.Lock()
		h.Streams = append(h.Streams, StreamHealth{Name: r.name, State: r.state, LastErr: r.lastErr, Restarts: r.restarts})
		r.mu.Unlock()
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
// (/healthz, say). It answers with Health as JSON, and status 200 while the
// engine runs and no stream has crashed or is stopping (its function
// outlived a stop's deadline: the stream consumes nothing), 503 otherwise. A
// restarting stream counts as healthy: its policy is dealing with it; so
// does a finished one (StopAtEnd): it did its work.
func (e *Engine) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := e.Health()
		type stream struct {
			Name      string `json:"name"`
			State     string `json:"state"`
			LastError string `json:"last_error,omitempty"`
			Restarts  int    `json:"restarts"`
		}
		body := struct {
			Engine  string   `json:"engine"`
			Running bool     `json:"running"`
			Healthy bool     `json:"healthy"`
			Streams []stream `json:"streams"`
		}{Engine: h.Engine, Running: h.Running, Healthy: h.Running, Streams: []stream{}}
		for _, s := range h.Streams {
			js := stream{Name: s.Name, State: s.State.String(), Restarts: s.Restarts}
			if s.LastErr != nil {
				js.LastError = s.LastErr.Error()
			}
			if s.State == StreamCrashed || s.State == StreamStopping {
				body.Healthy = false
			}
			body.Streams = append(body.Streams, js)
		}
		w.Header().Set("Content-Type", "application/json")
		if !body.Healthy {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(body)
	})
}
