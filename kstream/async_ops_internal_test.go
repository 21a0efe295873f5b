package kstream

import (
	"sync"
	"testing"
	"unsafe"
)

// TestAsyncOpPoolHandsEachOpToOneSend runs sends on several goroutines
// against one goroutine giving sendOps back, as franz-go's promises do, with
// at most inflight records unacknowledged (the producer's
// MaxBufferedRecords): no sendOp is taken by a send while another send has
// it, and the pool makes no more sendOps than can be in flight, in the batch
// being filled, and left in the batch the sends take from.
func TestAsyncOpPoolHandsEachOpToOneSend(t *testing.T) {
	const (
		senders  = 4
		perSend  = 20_000
		inflight = 1000
	)
	e := &Engine{}
	pool := new(asyncOpPool)
	var (
		mu    sync.Mutex
		taken = map[*sendOp]bool{}
		twice int
	)
	acks := make(chan *sendOp, inflight)
	promises := make(chan struct{})
	go func() { // franz-go's promises: one goroutine, in order
		defer close(promises)
		for op := range acks {
			mu.Lock()
			delete(taken, op)
			mu.Unlock()
			pool.put(op)
		}
	}()
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for range perSend {
				op := pool.get(e)
				mu.Lock()
				if taken[op] {
					twice++
				}
				taken[op] = true
				mu.Unlock()
				acks <- op // blocks while inflight are unacknowledged
			}
		})
	}
	wg.Wait()
	close(acks)
	<-promises

	if twice > 0 {
		t.Errorf("%d times a send was given a sendOp another send had", twice)
	}
	made := len(pool.all)
	// When a send makes one, every other is in flight (in the channel, held
	// by a sender or by the promises), in the batch being filled, or in a
	// full batch published since the send looked.
	if limit := inflight + senders + 2*asyncOpBatch; made > limit {
		t.Errorf("the pool made %d sendOps for %d in flight at most, want at most %d", made, inflight+senders, limit)
	}
	if made == 0 {
		t.Error("the pool made no sendOps")
	}
}

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
	prefetchOp(op) // a hint: it must leave op as it was
	if b := (*[256]byte)(unsafe.Pointer(op)); *b != [256]byte{} {
		t.Fatal("prefetchOp changed the sendOp")
	}
}
