package kstream

import "time"

// ContextWatches returns how many context watches of SendAsync records e
// has, for tests that check that none is left behind.
func (e *Engine) ContextWatches() int {
	e.watches.mu.Lock()
	defer e.watches.mu.Unlock()
	n := len(e.watches.live)
	for _, w := range e.watches.retired {
		if !w.finished {
			n++
		}
	}
	return n
}

// SetSendDrainTimeout sets how long Stop waits for done functions after
// closing the producer, and returns a function that restores it. Tests
// that change it must not run in parallel.
func SetSendDrainTimeout(d time.Duration) (restore func()) {
	old := sendDrainTimeout
	sendDrainTimeout = d
	return func() { sendDrainTimeout = old }
}

// SetWatchIdle sets how often the context watches of SendAsync records are
// swept, and returns a function that restores it. Tests that change it
// must not run in parallel.
func SetWatchIdle(d time.Duration) (restore func()) {
	old := watchIdle
	watchIdle = d
	return func() { watchIdle = old }
}
