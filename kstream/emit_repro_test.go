package kstream_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/kstream"
)

// Both tests fail on the core as of 0136019 and pass with this change to
// endTxn (kstream/txn.go), right after t.sess.End returns:
//
//	ss.mu.Lock()
//	t.failures = nil // records End aborted failed while it ran: this transaction's
//	ss.emitFailed.Store(false)
//
// Found by the ExactlyOnce chaos scenario (integration/chaos, scenario 8):
// a loop that leaves early (here: return) with emitted records still
// buffered aborts its transaction; franz-go fails those records with
// kgo.ErrAborting while the abort runs, after endTxn took t.failures, so
// the failures land in the next transaction. The next end (here: Close)
// then aborts a transaction that had nothing wrong with it and reports
// "commit on close: transaction aborted: ... client is aborting buffered
// records", and ranging again would yield *EmitErrors for records of a
// transaction already aborted.
func TestReproExactlyOnceAbortLeaksEmitFailures(t *testing.T) {
	const n = 30
	e := newEnv(t, 1, n)
	out := e.topic + "-out"
	if err := e.c.CreateTopic(e.ctx, out, 1); err != nil {
		t.Fatal(err)
	}
	// A long linger keeps the emitted records buffered at the abort.
	s := e.stream(kstream.Group("g"), kstream.ExactlyOnce(), kstream.CommitInterval(time.Hour),
		kstream.ClientOptions(kgo.ProducerLinger(2*time.Second)))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	errStop := errors.New("stop")
	err := func() error {
		for rec, err := range s.Records(e.ctx) {
			if err != nil {
				return err
			}
			if err := s.Emit(e.ctx, out, []byte("out-"+rec.Value)); err != nil {
				return err
			}
			if rec.Offset == 9 {
				return errStop // leaves the loop early: the transaction aborts
			}
		}
		return nil
	}()
	if !errors.Is(err, errStop) {
		t.Fatalf("first range: %v", err)
	}
	// Range again: every record comes again (the abort rewound), and no
	// *EmitError of the aborted transaction comes with them.
	lctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	seen := 0
	for rec, err := range s.Records(lctx) {
		if err != nil {
			t.Errorf("second range yielded %v", err)
			continue
		}
		if err := s.Emit(lctx, out, []byte("out-"+rec.Value)); err != nil {
			t.Fatal(err)
		}
		if seen++; seen == n {
			cancel()
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close after a clean second range: %v", err)
	}
	wantEach(t, e.outputs(out, true), n, true)
}

// The same leak seen from Close: after the early return, Close has nothing
// to commit, yet it reports the aborted transaction's emit failures as a
// failed commit (this is what made the chaos members exit 1 on SIGTERM).
func TestReproExactlyOnceCloseAfterEarlyReturn(t *testing.T) {
	const n = 30
	e := newEnv(t, 1, n)
	out := e.topic + "-out"
	if err := e.c.CreateTopic(e.ctx, out, 1); err != nil {
		t.Fatal(err)
	}
	s := e.stream(kstream.Group("g"), kstream.ExactlyOnce(), kstream.CommitInterval(time.Hour),
		kstream.ClientOptions(kgo.ProducerLinger(2*time.Second)))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	for rec, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Emit(e.ctx, out, []byte("out-"+rec.Value)); err != nil {
			t.Fatal(err)
		}
		if rec.Offset == 9 {
			break // the transaction aborts
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close after an aborted transaction, nothing since: %v", err)
	}
	// Nothing was finished since the abort: no commit may pass offset 0.
	if got := e.committed("g")[0]; got > 0 {
		t.Fatalf("committed %d after an aborted transaction and nothing since", got)
	}
}

// Found by the default-mode Emit chaos scenario (integration/chaos,
// scenario 9): with graceful rebalances only, a record was handled (and
// its output written) twice. At a revoke, the commit of the revoked
// partitions covers only the records whose emits are already
// acknowledged; the revoke does not wait for the emits in flight, so the
// partition's next owner handles again the records whose output was
// written a moment later. A long linger makes the window wide: every
// record a handled before the rebalance has its emit in flight.
//
// It fails on 0136019 and passes with, in onRevoked (kstream/rebalance.go),
// before ss.commitMarked in the default mode:
//
//	if err := ss.awaitEmits(ctx); err != nil {
//		ss.log.Warn("waiting for emitted records before a revoke", "err", err)
//	}
func TestReproEmitRevokeDoesNotWaitForAcks(t *testing.T) {
	const parts, first, total = 2, 20, 40
	e := newEnv(t, parts, first)
	out := e.topic + "-out"
	if err := e.c.CreateTopic(e.ctx, out, 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var mu sync.Mutex
	handled := map[[2]int64]int{}
	distinct := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(handled)
	}
	run := func(name string) (*kstream.Stream[string], chan error) {
		s := e.stream(kstream.Group("g"), kstream.Name(name),
			kstream.ClientOptions(kgo.ProducerLinger(500*time.Millisecond)))
		done := make(chan error, 1)
		go func() {
			done <- s.Use(ctx, func(records iter.Seq2[kstream.Record[string], error]) error {
				for rec, err := range records {
					if err != nil {
						return err
					}
					mu.Lock()
					handled[[2]int64{int64(rec.Partition), rec.Offset}]++
					mu.Unlock()
					if err := s.Emit(ctx, out, []byte("out-"+rec.Value)); err != nil && ctx.Err() == nil {
						return err
					}
				}
				return nil
			})
		}()
		return s, done
	}
	_, aDone := run("a")
	eventually(t, 20*time.Second, "a to handle the first records", func() bool { return distinct() == first })
	b, bDone := run("b") // the group rebalances: a gives partitions up with emits in flight
	eventually(t, 20*time.Second, "b to own a partition", func() bool { return len(b.Assignment()[e.topic]) > 0 })
	e.produce(first, total)
	eventually(t, 30*time.Second, "every record to be handled", func() bool { return distinct() == total })
	cancel()
	for _, d := range []chan error{aDone, bDone} {
		if err := <-d; err != nil {
			t.Fatal(err)
		}
	}
	var dups []string
	mu.Lock()
	for k, n := range handled {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%d@%d×%d", k[0], k[1], n))
		}
	}
	mu.Unlock()
	if len(dups) > 0 {
		sort.Strings(dups)
		t.Fatalf("with graceful rebalances only, %d records handled twice: %v", len(dups), dups)
	}
}
