//go:build !amd64 || !gc || purego

package kstream

// prefetchOp does nothing here: it is written for amd64 and the gc
// toolchain only (prefetch_amd64.s).
func prefetchOp(*sendOp) {}
