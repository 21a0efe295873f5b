//go:build !amd64

package kstream

// prefetchOp does nothing here: it is written for amd64 only
// (prefetch_amd64.s).
func prefetchOp(*sendOp) {}
