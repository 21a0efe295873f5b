//go:build gc && !purego

package kstream

import (
	"bytes"
	"os"
	"testing"
	"unsafe"
)

// TestSendOpIsFourCacheLines: prefetchOp asks for a sendOp's first four
// cache lines, and sendOps are laid out so that a send and a callback
// write as few lines as they can: a field added past 256 bytes would be
// left out of the prefetch, and would move the sendOp to a size class whose
// objects do not start on a cache line.
func TestSendOpIsFourCacheLines(t *testing.T) {
	if got := unsafe.Sizeof(sendOp{}); got != 256 {
		t.Fatalf("sendOp is %d bytes, want 256", got)
	}
	op := new(sendOp)
	prefetchW256(op) // a hint: it must leave op as it was
	if b := (*[256]byte)(unsafe.Pointer(op)); *b != [256]byte{} {
		t.Fatal("prefetchW256 changed the sendOp")
	}
}

// TestCPUHasPrefetchWAsLinuxSays: the CPUID flag read by cpuHasPrefetchW
// is the one Linux lists as 3dnowprefetch.
func TestCPUHasPrefetchWAsLinuxSays(t *testing.T) {
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Skipf("no /proc/cpuinfo to compare with: %v", err)
	}
	want := bytes.Contains(info, []byte(" 3dnowprefetch"))
	if got := cpuHasPrefetchW(); got != want {
		t.Fatalf("cpuHasPrefetchW() = %v, /proc/cpuinfo lists 3dnowprefetch: %v", got, want)
	}
	if hasPrefetchW != want {
		t.Fatalf("hasPrefetchW = %v, want %v", hasPrefetchW, want)
	}
}
