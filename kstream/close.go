// Closing a session: the final commit, leaving the group, closing the client.

package kstream

import (
	"context"
	"fmt"
	"time"
)

// close commits what was processed (default mode), leaves the group and
// closes the client. Records polled but not processed, and the record in
// flight, are not committed.
// close closes the session once; a concurrent or later call waits for the
// first to finish and returns nil.
func (ss *session) close(timeout time.Duration) error {
	did := false
	ss.closeOnce.Do(func() {
		did = true
		ss.closeErr = ss.doClose(timeout)
		close(ss.closed)
	})
	<-ss.closed
	if did {
		return ss.closeErr
	}
	return nil
}

func (ss *session) doClose(timeout time.Duration) error {
	ss.closing.Store(true)
	ss.stopFetching()
	ss.stopPushTimer()
	// One deadline for the final commit and for leaving the group.
	ctx, stop := ss.closeDeadline(timeout)
	defer stop()
	var err error
	if ss.group && !ss.manual {
		if cerr := ss.commitMarked(ctx, ss.cl); cerr != nil {
			err = fmt.Errorf("kstream: stream %q: commit on close: %w", ss.name, cerr)
		}
	}
	if !ss.closeClient(ctx) {
		return err
	}
	// A timer push that started before Stop holds pushMu until it is done.
	ss.pushMu.Lock()
	ss.pushMu.Unlock() //nolint:staticcheck // waiting, not guarding
	if ss.m != nil {
		ss.m.partitions.remove(ss)
	}
	ss.log.Debug("stream closed")
	return err
}

// closeDeadline returns a context that ends after timeout and, when it
// does, cancels the client's own context, so that requests to an
// unresponsive broker, and commits queued behind them (franz-go's commit
// lock does not watch our context), give up. stop releases it without
// aborting: returning is no reason to abort.
func (ss *session) closeDeadline(timeout time.Duration) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithTimeout(ss.abortCtx, timeout)
	stopAbort := context.AfterFunc(ctx, ss.abort)
	return ctx, func() {
		stopAbort()
		cancel()
	}
}

// closeClient leaves the group and closes the client, waiting until ctx
// (from closeDeadline) ends at most. Called from a listener (or while one
// runs) it does not wait, and reports false: leaving the group waits for
// the callback to return, so waiting here could deadlock; the client
// finishes closing, on the goroutine started here, as soon as the callback
// returns.
func (ss *session) closeClient(ctx context.Context) (waited bool) {
	closed := make(chan struct{})
	go func() {
		ss.cl.CloseAllowingRebalance()
		close(closed)
	}()
	if ss.inListener.Load() > 0 {
		ss.log.Debug("closing from a listener callback; the client closes when it returns")
		return false
	}
	select {
	case <-closed:
	case <-ctx.Done():
		ss.log.Warn("leaving the group did not finish before the close deadline; closing without it")
		<-closed // the deadline aborted the client: it gives up at once; nothing outlives Close
	}
	ss.abort()
	return true
}

// closeUnopened closes the client of a session that failed to open: the
// group may have been joined already, and a listener may be running.
func (ss *session) closeUnopened() {
	ss.stopFetching()
	ctx, stop := ss.closeDeadline(DefaultCloseTimeout)
	defer stop()
	ss.closeClient(ctx)
}
