package kstream

// prefetchOp asks the CPU for the four cache lines of op, to be written,
// and returns without waiting for them: PREFETCHW, which CPUs without it
// run as a NOP. It changes no memory; see asyncOpPool for why.
//
//go:noescape
func prefetchOp(op *sendOp)
