package kstream

import "time"

// ContextWatches returns how many context watches of SendAsync records
// exist, for tests that check that none is left behind.
func ContextWatches() int {
	n := 0
	ctxWatches.Range(func(any, any) bool { n++; return true })
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
