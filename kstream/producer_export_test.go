package kstream

import "time"

// ContextWatches returns how many context watches of SendAsync records e
// has, for tests that check that none is left behind.
func (e *Engine) ContextWatches() int {
	e.watches.mu.Lock()
	defer e.watches.mu.Unlock()
	n := 0
	e.watches.eachLive(func(*ctxWatch) { n++ })
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

// SweepWatchesNow runs the sweep of e's context watches at once, in place of
// the one scheduled, and reports whether there was one scheduled.
func (e *Engine) SweepWatchesNow() bool {
	ws := &e.watches
	ws.mu.Lock()
	if ws.timer == nil || !ws.timer.Stop() {
		ws.mu.Unlock()
		return false
	}
	ws.mu.Unlock()
	e.sweepWatches() // counted in ws.pending by the timer it replaces
	return true
}
