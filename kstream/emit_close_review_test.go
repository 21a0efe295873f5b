package kstream_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/kstream"
)

// Close from another goroutine while the loop polls (found in review):
// commits must cover exactly the records whose output it holds. A poll that
// returns records while Close's endTxn runs (after its rewind, before End
// reads franz-go's uncommitted head) moves the head past records never
// yielded, and End commits them without output.
func TestExactlyOnceCloseDuringPollCommitsOnlyWhatHasOutput(t *testing.T) {
	const n = 4000
	e := newEnv(t, 1, n)
	for iter := 0; iter < 6; iter++ {
		out := fmt.Sprintf("%s-out%d", e.topic, iter)
		if err := e.c.CreateTopic(e.ctx, out, 1); err != nil {
			t.Fatal(err)
		}
		group := fmt.Sprintf("g%d", iter)
		s := e.stream(kstream.Group(group), kstream.ExactlyOnce(), kstream.CommitInterval(time.Hour), kstream.MaxPollRecords(1))
		if err := s.Open(e.ctx); err != nil {
			t.Fatal(err)
		}
		var handled atomic.Int64
		var emitErr atomic.Value
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rec, err := range s.Records(context.Background()) {
				if err != nil {
					return
				}
				if err := s.Emit(e.ctx, out, []byte("out-"+rec.Value)); err != nil {
					emitErr.Store(fmt.Sprintf("offset %d: %v", rec.Offset, err))
					return
				}
				handled.Add(1)
			}
		}()
		for handled.Load() < int64(200+iter*97) {
			time.Sleep(time.Millisecond)
		}
		cerr := s.Close()
		wg.Wait()
		c := e.committed(group)[0]
		got := e.outputs(out, true)
		var missing []int64
		for i := int64(0); i < c; i++ {
			if got[fmt.Sprintf("out-v%d", i)] != 1 {
				missing = append(missing, i)
			}
		}
		extra := 0
		for i := c; i < n; i++ {
			if got[fmt.Sprintf("out-v%d", i)] > 0 {
				extra++
			}
		}
		t.Logf("iter %d: emit err %v, close err %v, handled %d, committed %d, outputs %d", iter, emitErr.Load(), cerr, handled.Load(), c, len(got))
		if len(missing) > 0 || extra > 0 {
			if len(missing) > 10 {
				missing = missing[:10]
			}
			t.Errorf("iter %d: committed %d: offsets committed without their output (first %v), %d outputs of uncommitted records visible", iter, c, missing, extra)
		}
	}
}

// Close from a listener's OnRevoked (documented as allowed: it returns
// without waiting for the leave). Under ExactlyOnce Close ends the
// transaction with GroupTransactSession.End, which takes the session's
// failMu; franz-go holds that mutex while it runs the OnRevoked callback.
func TestExactlyOnceCloseFromOnRevokedReturns(t *testing.T) {
	e := newEnv(t, 2, 20)
	var a *kstream.Stream[string]
	closed := make(chan error, 1)
	var once sync.Once
	a = e.stream(kstream.Group("g"), kstream.ExactlyOnce(),
		kstream.Listener(kstream.ListenerFuncs{Revoked: func(ctx context.Context, _ kstream.AnyStream, rev map[string][]int32) {
			once.Do(func() {
				closed <- a.Close()
			})
		}}))
	if err := a.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(e.ctx)
	defer acancel()
	go func() {
		for _, err := range a.Records(actx) {
			if err != nil {
				return
			}
		}
	}()
	eventually(t, 20*time.Second, "a owns both partitions", func() bool {
		return len(a.Assignment()[e.topic]) == 2
	})
	b := e.stream(kstream.Group("g"))
	if err := b.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	bctx, bcancel := context.WithCancel(e.ctx)
	go func() {
		for _, err := range b.Records(bctx) {
			if err != nil {
				return
			}
		}
	}()
	defer func() { bcancel(); b.Close() }()
	select {
	case err := <-closed:
		t.Logf("Close from OnRevoked returned: %v", err)
	case <-time.After(20 * time.Second):
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "endTxn") {
				t.Log(g)
			}
		}
		t.Fatal("Close called from OnRevoked under ExactlyOnce did not return within 20s")
	}
}
