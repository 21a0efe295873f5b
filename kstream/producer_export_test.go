package kstream

// ContextWatches returns how many context watches of SendAsync records
// exist, for tests that check that none is left behind.
func ContextWatches() int {
	n := 0
	ctxWatches.Range(func(any, any) bool { n++; return true })
	return n
}
