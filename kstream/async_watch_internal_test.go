package kstream

import "testing"

// BenchmarkWatchScan is what a context that ends with more than watchSlots
// records costs its watch: a look at each of an engine's sendOps, here
// DefaultMaxBufferedRecords of them, all attached to another watch.
func BenchmarkWatchScan(b *testing.B) {
	e := &Engine{}
	pool := new(asyncOpPool)
	for range DefaultMaxBufferedRecords {
		pool.get(e).state.Store(2<<opIDShift | opAttached)
	}
	w := &ctxWatch{e: e, pool: pool, id: 1}
	w.sends.Store(watchSlots + 1)
	for b.Loop() {
		if ops := w.take(nil); len(ops) != 0 {
			b.Fatalf("took %d sendOps of another watch", len(ops))
		}
	}
}
