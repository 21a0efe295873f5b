// Closing a session: the final commit, leaving the group, closing the client.

package kstream

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// close commits what was processed (default mode), leaves the group and
// closes the client, within timeout. Records polled but not processed, and
// the record in flight, are not committed.
//
// close closes the session once; a concurrent or later call waits for the
// first to finish and returns nil, except from one of the session's
// listeners: the close in progress waits for that callback to return, so
// the call returns at once.
func (ss *session) close(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return ss.closeCtx(ctx)
}

// closeCtx is close bounded by ctx: when ctx ends, the close in progress
// gives up on the brokers (its client is aborted) and a caller waiting for
// another's close stops waiting.
func (ss *session) closeCtx(ctx context.Context) error {
	first := false
	ss.closeOnce.Do(func() { first = true })
	if first {
		ss.closeErr = ss.doClose(ctx)
		close(ss.closed)
		return ss.closeErr
	}
	if ss.calledFromListener() {
		return nil
	}
	select {
	case <-ss.closed:
	case <-ctx.Done():
		return fmt.Errorf("kstream: stream %q: waiting for a close in progress: %w", ss.name, ctx.Err())
	}
	// A first close from a listener returned without waiting for the
	// leave; this caller waits for it, as Close from any other goroutine
	// does.
	return ss.waitLeft(ctx)
}

// closeGrace is how long a close waits, after its deadline aborted the
// client, for a rebalance listener that ignores its ctx to return.
const closeGrace = time.Second

// waitLeft waits until the client has closed, until ctx ends plus
// closeGrace at most.
func (ss *session) waitLeft(ctx context.Context) error {
	select {
	case <-ss.left:
		return nil
	case <-ctx.Done():
	}
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case <-ss.left:
		return nil
	case <-t.C:
		ss.log.Error("the client did not close: a rebalance listener is still running and ignores its ctx; the client closes when it returns")
		return fmt.Errorf("kstream: stream %q: leaving the group did not finish before the close deadline: a rebalance listener is still running", ss.name)
	}
}

func (ss *session) doClose(parent context.Context) error {
	ss.closing.Store(true)
	ss.stopFetching()
	ss.stopPushTimer()
	ss.stopTopicWatch()
	// One deadline for the final commit and for leaving the group.
	ctx, stop := ss.closeDeadline(parent)
	defer stop()
	var err error
	if ss.txn == nil {
		// What was emitted is written before the final commit (which
		// covers it) or, on a share stream, the Accepts that wait for it.
		if ferr := ss.awaitEmits(ctx); ferr != nil {
			ss.log.Warn("closing before every emitted record was acknowledged; their source records will be delivered again", "err", ferr)
		}
	}
	switch {
	case ss.txn != nil:
		ss.txn.timer.Stop()
		if ss.calledFromListener() {
			// franz-go runs the listener holding the lock that ending
			// the transaction takes: closeClient's goroutine aborts it
			// once the listener has returned.
			ss.txnAbortOnClose.Store(true)
			break
		}
		if cerr := ss.closeTxn(ctx); cerr != nil {
			err = fmt.Errorf("kstream: stream %q: commit on close: %w", ss.name, cerr)
		}
	case ss.group && !ss.manual:
		if cerr := ss.commitMarked(ctx, ss.client()); cerr != nil {
			err = fmt.Errorf("kstream: stream %q: commit on close: %w", ss.name, cerr)
		}
	}
	if ss.share {
		ss.shareClose() // the leave releases what is held, at once (share.go)
	}
	// Whatever happens next, the session is gone for the metrics.
	if ss.m != nil {
		defer ss.m.partitions.remove(ss)
	}
	waited, left := ss.closeClient(ctx)
	if !waited {
		return err
	}
	if !left && err == nil && parent.Err() != nil {
		err = fmt.Errorf("kstream: stream %q: leaving the group did not finish before the close deadline: %w", ss.name, parent.Err())
	}
	// A timer push that started before Stop holds pushMu until it is done.
	ss.pushMu.Lock()
	ss.pushMu.Unlock() //nolint:staticcheck // waiting, not guarding
	ss.log.Debug("stream closed")
	return err
}

// closeDeadline returns a context that ends with parent and, when it does,
// cancels the client's own context, so that requests to an unresponsive
// broker, and commits queued behind them (franz-go's commit lock does not
// watch our context), give up. stop releases it without aborting:
// returning is no reason to abort.
func (ss *session) closeDeadline(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(ss.abortCtx)
	stopParent := context.AfterFunc(parent, cancel)
	stopAbort := context.AfterFunc(ctx, ss.abort)
	return ctx, func() {
		stopParent()
		stopAbort()
		cancel()
	}
}

// closeClient leaves the group and closes the client, waiting until ctx
// (from closeDeadline) ends at most. Called from one of the session's
// listeners it does not wait, and reports false: leaving the group waits
// for the callback to return, so waiting here would deadlock; the client
// finishes closing, on the goroutine started here, as soon as the callback
// returns. Called from any other goroutine it waits, also while a
// listener runs: the leave then waits for the callback to end. The one
// goroutine that may outlive the wait is the one closing the client under
// a listener that ignores its ctx past the deadline: it ends when the
// listener returns.
func (ss *session) closeClient(ctx context.Context) (waited, left bool) {
	go func() {
		if ss.txnAbortOnClose.Load() {
			ss.endTxnNow(false)
		}
		ss.client().CloseAllowingRebalance()
		ss.leftOnce.Do(func() { close(ss.left) })
	}()
	if ss.calledFromListener() {
		ss.log.Debug("closing from a listener callback; the client closes when it returns")
		return false, false
	}
	left = true
	select {
	case <-ss.left:
	case <-ctx.Done():
		left = false
		ss.log.Warn("leaving the group did not finish before the close deadline; closing without it")
		// The deadline aborted the client: it gives up at once, unless a
		// rebalance listener that ignores its ctx (the client's, now
		// canceled) is still running; the leave waits for that callback.
		t := time.NewTimer(closeGrace)
		select {
		case <-ss.left:
		case <-t.C:
			ss.log.Error("a rebalance listener is still running and ignores its ctx: Close returns; the client closes when the listener returns")
		}
		t.Stop()
	}
	ss.abort()
	return true, left
}

// closeUnopened closes the client of a session that failed to open: the
// group may have been joined already, and a listener may be running.
func (ss *session) closeUnopened() {
	ss.stopFetching()
	parent, cancel := context.WithTimeout(context.Background(), DefaultCloseTimeout)
	defer cancel()
	ctx, stop := ss.closeDeadline(parent)
	defer stop()
	ss.closeClient(ctx)
}

// Listener callbacks run on franz-go's goroutines, and leaving the group
// waits for a callback to return. So Close (and an engine's Stop) must not
// wait for the leave when, and only when, it is called from a callback of
// the session being closed. The caller is recognised by its goroutine:
// callListeners records the goroutine it runs on, for as long as the
// callbacks run, and calledFromListener looks the caller's goroutine up.
// A counter of callbacks running could not tell a call from a callback
// from a call from another goroutine made while one runs, which must wait.
var listenerGoroutines sync.Map // goroutine ID → *session whose listeners it is calling

// enterListener records that the calling goroutine is calling ss's
// listeners, until the returned function is called.
func enterListener(ss *session) (exit func()) {
	id := goroutineID()
	if id == 0 {
		return func() {}
	}
	listenerGoroutines.Store(id, ss)
	return func() { listenerGoroutines.Delete(id) }
}

// calledFromListener reports whether the calling goroutine is running one
// of ss's listener callbacks.
func (ss *session) calledFromListener() bool {
	id := goroutineID()
	if id == 0 {
		return false
	}
	v, ok := listenerGoroutines.Load(id)
	return ok && v.(*session) == ss
}

// goroutineID returns the ID of the calling goroutine, which the runtime
// never gives to another goroutine, or 0 if it cannot be read. Go has no
// API for it; the first line of a goroutine's stack trace,
// "goroutine 42 [running]:", names it. It costs about a microsecond, so it
// is read on paths that run once per callback, stop or close, never per
// record.
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b, ok := bytes.CutPrefix(b, []byte("goroutine "))
	if !ok {
		return 0
	}
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0
	}
	return id
}
