package kstream

// ContextWatches returns how many context watches of SendAsync records
// exist, for tests that check that none is left behind.
func ContextWatches() int {
	ctxWatches.mu.Lock()
	defer ctxWatches.mu.Unlock()
	return len(ctxWatches.byCh)
}
