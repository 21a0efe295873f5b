//go:build gc && !purego

package kstream

// hasPrefetchW says whether the CPU has PREFETCHW: some early 64-bit Intel
// CPUs lack it, and may fault on it rather than ignore it.
var hasPrefetchW = cpuHasPrefetchW()

// prefetchOp asks the CPU for the four cache lines of op, to be written,
// and returns without waiting for them. It changes no memory; see
// asyncOpPool for why. Without PREFETCHW it does nothing.
func prefetchOp(op *sendOp) {
	if hasPrefetchW {
		prefetchW256(op)
	}
}

// prefetchW256 is PREFETCHW of the 256 bytes at op (prefetch_amd64.s).
//
//go:noescape
func prefetchW256(op *sendOp)

// cpuHasPrefetchW reads the CPU's PRFCHW flag (prefetch_amd64.s).
func cpuHasPrefetchW() bool
