package kstream

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
	LastErr  error // the last crash, if any
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
