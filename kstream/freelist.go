package kstream

import "sync/atomic"

// A lock-free list of reused per-record state (a session's emitOps), written by
// the goroutine that frees an item (franz-go's callback) and read by the
// one that reuses it: pushed one at a time with a compare-and-swap, taken
// whole with a Swap. Taking the whole list at once is what makes the push
// safe with items reused (no ABA). next returns an item's link field.

// pushFree puts n on the list at head.
func pushFree[T any](head *atomic.Pointer[T], n *T, next func(*T) **T) {
	link := next(n)
	for {
		*link = head.Load()
		if head.CompareAndSwap(*link, n) {
			return
		}
	}
}

// takeFree appends the items of the list at head, taken whole, to dst, up
// to max items in dst; the rest are left to the collector. Their links are
// cleared.
func takeFree[T any](head *atomic.Pointer[T], dst []*T, max int, next func(*T) **T) []*T {
	for n := head.Swap(nil); n != nil; {
		link := next(n)
		following := *link
		*link = nil
		if len(dst) < max {
			dst = append(dst, n)
		}
		n = following
	}
	return dst
}
