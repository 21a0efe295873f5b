package kstream

import (
	"context"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
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

// TestSendAsyncLeavesNoSendOpAhead: a sendOp's ahead (the sendOp its
// callback prefetches) is set by every send that takes it from a batch,
// and cleared by the callback: once Flush has returned, no sendOp of the
// pool keeps another alive. (Some records are sent under a context that
// ends; a sendOp whose record its watch failed leaves the pool.)
func TestSendAsyncLeavesNoSendOpAhead(t *testing.T) {
	fc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	ctx := context.Background()
	e, err := NewEngine(Brokers(fc.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Stop(ctx) }()
	var (
		mu      sync.Mutex
		outcome = map[bool]int{} // failed → records
	)
	done := func(_ RecordMetadata, err error) {
		mu.Lock()
		outcome[err != nil]++
		mu.Unlock()
	}
	const perRound = 3 * asyncOpBatch
	for round := range 3 { // the rounds after the first reuse its sendOps
		sctx, cancel := context.WithCancel(ctx)
		for i := range perRound {
			c := ctx
			if i%7 == 0 {
				c = sctx // some under a context that ends while they are in flight
			}
			e.SendAsync(c, "t", []byte("v"), done)
			if i == perRound/2 {
				cancel()
			}
		}
		cancel()
		if err := e.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		left := 0
		e.asyncOps.Load().each(func(op *sendOp) {
			if op.ahead != nil {
				left++
			}
		})
		if left > 0 {
			t.Fatalf("round %d: %d sendOps still point at another after Flush", round, left)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if got := outcome[false] + outcome[true]; got != 3*perRound {
		t.Fatalf("%d outcomes, want %d", got, 3*perRound)
	}
}

// TestAsyncOpAheadIsTheSendOpTakenTwoSendsLater: a send that takes a
// sendOp from a batch points it at the one the send after next takes, which
// its callback prefetches.
func TestAsyncOpAheadIsTheSendOpTakenTwoSendsLater(t *testing.T) {
	e := &Engine{}
	pool := new(asyncOpPool)
	for range asyncOpBatch { // one full batch, given back as the callbacks do
		op := pool.get(e)
		op.ahead = nil
		pool.put(op)
	}
	var taken []*sendOp
	for range asyncOpBatch {
		taken = append(taken, pool.get(e))
	}
	for i, op := range taken {
		var want *sendOp
		if i+callbackAhead < len(taken) {
			want = taken[i+callbackAhead]
		}
		if op.ahead != want {
			t.Fatalf("send %d of %d: ahead is %p, want %p (send %d's sendOp, or nil past the batch)", i, len(taken), op.ahead, want, i+callbackAhead)
		}
	}
}
