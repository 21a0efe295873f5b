// ExactlyOnce: the transaction of a stream's member (DESIGN §10).

package kstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// txnState is the transaction of an ExactlyOnce session. The session is
// always in a transaction: one begins when the session opens and each time
// one ends. A transaction ends (endTxn) at a record boundary with nothing
// in hand, where every record yielded is either finished or given back:
//
//   - when CommitInterval has passed (due): at once if nothing is
//     buffered, else when the buffer is empty or a second interval has
//     passed (the buffer is then given back, as for a rebalance);
//   - before a rebalance goes on (giveWay), and on Close: committed;
//   - when the loop leaves early (break, return, panic), a handler fails,
//     or an emitted record fails: aborted.
//
// While a transaction holds records, polls do not let rebalances run; a
// rebalance that waits wakes the poll, and the range gives way at once.
type txnState struct {
	sess     *kgo.GroupTransactSession
	interval time.Duration
	mu       sync.Mutex   // serializes ends
	began    atomic.Int64 // unix nanos of the transaction's begin
	due      atomic.Bool  // interval passed since began
	revoked  atomic.Bool  // a revoke or loss since began: the end aborts
	timer    *time.Timer
	failures []*EmitError // emitted records that failed, under session.mu
	gen      uint64       // transactions ended, under session.mu
}

// txnOpts returns the client options of an ExactlyOnce session, placed
// before the user's ClientOptions (so that kgo.TransactionalID given there
// wins).
func txnOpts(cfg *config) []kgo.Opt {
	return []kgo.Opt{
		kgo.TransactionalID(transactionalID(cfg)),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	}
}

// transactionalID derives the member's transactional ID: from the group,
// the stream's name and InstanceID when set, so that a restarted instance
// fences its predecessor's transaction at once; else with a random part.
func transactionalID(cfg *config) string {
	id := "kstreams-" + cfg.group
	if cfg.name != "" {
		id += "-" + cfg.name
	}
	if cfg.instanceID != "" {
		return id + "-" + cfg.instanceID
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return id + "-" + hex.EncodeToString(b[:])
}

func newTxnState(sess *kgo.GroupTransactSession, cfg *config) *txnState {
	t := &txnState{sess: sess, interval: cfg.commitInterval}
	if t.interval == 0 {
		t.interval = DefaultTxnCommitInterval
	}
	t.timer = time.AfterFunc(time.Hour, func() { t.due.Store(true) })
	t.timer.Stop()
	return t
}

// beginTxn begins the next transaction and arms its interval.
func (ss *session) beginTxn() error {
	t := ss.txn
	if err := t.sess.Begin(); err != nil {
		return err
	}
	t.began.Store(time.Now().UnixNano())
	t.due.Store(false)
	t.timer.Reset(t.interval)
	return nil
}

// txnEndDue reports whether the transaction should end at this boundary
// (nothing in hand). ss.mu is held.
func (ss *session) txnEndDueLocked() bool {
	t := ss.txn
	if t.revoked.Load() {
		return true
	}
	if !ss.dirty {
		return false
	}
	if ss.pos >= len(ss.buf) {
		// At a poll: the poll's deadline may have passed a moment before
		// the timer fired.
		return t.due.Load() || !time.Now().Before(ss.txnDeadline())
	}
	return t.due.Load() && time.Since(time.Unix(0, t.began.Load())) >= 2*t.interval
}

// txnDeadline is when a poll of a transaction holding records must
// return, for the transaction to end on time.
func (ss *session) txnDeadline() time.Time {
	return time.Unix(0, ss.txn.began.Load()).Add(ss.txn.interval)
}

// endTxn ends the open transaction, committing it if commit is true and
// nothing prevents it, and begins the next. Records in hand (running
// handlers first finish, as for a rebalance) and records buffered are
// given back first, so that the transaction commits exactly the records
// finished. An abort rewinds every partition to its last committed offset
// and queues the *EmitError of each failed emit to be yielded. An end that
// fails for good (the transactional ID was fenced, the broker refuses) is
// a fatal error of the stream.
//
// It returns an error when a commit was asked for, there was something to
// commit, and the transaction aborted because of an error or a failed
// emit; a transaction that aborted because the group moved on while it was
// open (a revoke, a new generation or member epoch) is how a rebalance ends
// a transaction, not a failure.
func (ss *session) endTxn(ctx context.Context, commit bool) error {
	t := ss.txn
	t.mu.Lock()
	defer t.mu.Unlock()
	cl := ss.client()
	wanted := commit
	ss.lockFold()
	stop, drain := ss.stopDispatch, ss.drainDispatch
	ss.mu.Unlock()
	if commit && drain != nil {
		// Every record dispatched finishes first: dropping some would
		// leave records finished above them, whose output the
		// transaction holds and whose offsets it cannot commit.
		drain()
	}
	if stop != nil {
		ss.noteDropped(stop())
	}
	ss.lockFold()
	if commit && ss.txnGap {
		commit, wanted = false, false
		ss.log.Warn("transaction aborted: lane work was dropped below records that finished (a stop or a rebalance under PartitionConcurrency or KeyConcurrency); its records will be delivered again")
	}
	if commit && len(ss.inflight) > 0 {
		// A body holds a record (Close from another goroutine): what it
		// emitted is in the transaction and its offset is not, so the
		// transaction cannot commit. Its records are delivered again, as
		// after a break.
		commit, wanted = false, false
		ss.log.Warn("closing while the loop body holds a record: the open transaction is aborted and its records will be delivered again")
	}
	rewind := ss.rewindLocked()
	content := ss.dirty
	ss.mu.Unlock()
	if len(rewind) > 0 {
		cl.SetOffsets(rewind)
	}
	if commit {
		// The end flushes too; flushing first lets a failed emit turn
		// the commit into an abort.
		if err := cl.Flush(ctx); err != nil {
			commit = false
		}
	}
	ss.lockFold()
	failures := t.failures
	t.failures = nil
	ss.emitFailed.Store(false)
	ss.dirty = false
	ss.mu.Unlock()
	if len(failures) > 0 || !content {
		// With nothing in it, an abort costs nothing, where a commit of
		// an empty transaction makes franz-go wait 500 ms.
		commit = false
	}
	committed, err := t.sess.End(ctx, kgo.TransactionEndTry(commit))
	rebalanced := t.revoked.Swap(false)
	ss.lockFold()
	// Emits of this transaction that fail from now on (an abort fails
	// what was buffered) belong to it, not to the next.
	t.gen++
	ss.txnGap = false
	t.failures = nil
	ss.emitFailed.Store(false)
	if committed {
		for _, ps := range ss.parts {
			if ps.processed > ps.committed {
				ps.committed, ps.committedKnown = ps.processed, true
			}
		}
	} else {
		// franz-go moved its positions back to the last commit; so does
		// the session, and the buffer is empty since the rewind above.
		ss.buf, ss.pos = nil, 0 // dropped, not cleared: see rewindLocked
		for topic, m := range cl.CommittedOffsets() {
			for p, eo := range m {
				if ps := ss.parts[topicPartition{topic, p}]; ps != nil && eo.Offset >= 0 {
					ps.base, ps.yielded, ps.processed, ps.pushed = eo.Offset, eo.Offset, eo.Offset, eo.Offset
					ps.epoch = eo.Epoch
					ps.committed, ps.committedKnown = eo.Offset, true
					ps.em = nil
				}
			}
		}
		for _, f := range failures {
			ss.errs = append(ss.errs, f)
		}
	}
	ss.mu.Unlock()
	hadContent := content || len(failures) > 0
	ss.noteTxn(committed, hadContent, err)
	var aborted error
	if wanted && hadContent && !committed {
		switch {
		case err != nil:
			aborted = fmt.Errorf("transaction aborted: %w", err)
		case len(failures) > 0:
			aborted = fmt.Errorf("transaction aborted: %w", failures[0])
		}
		// Otherwise the group moved on while the transaction was open (a
		// revoke, a new generation or member epoch): franz-go aborts it
		// by design and its records go to their owners again. Not an
		// error of the end (Close, for one, succeeds).
		ss.log.Warn("transaction aborted; its records will be delivered again", "emit_failures", len(failures), "rebalanced", rebalanced, "err", err)
	}
	if err == nil && !ss.closing.Load() {
		err = ss.beginTxn()
	}
	if err != nil {
		ss.log.Error("transaction failed for good; the stream stops", "err", err)
		ss.lockFold()
		if ss.fatal == nil {
			ss.fatal = &FetchError{Partition: -1, Err: fmt.Errorf("transaction: %w", err), Fatal: true}
		}
		ss.mu.Unlock()
	}
	return aborted
}

// noteDropped records that dropping a concurrent stream's lane work left a
// gap (dispatcher.giveWay), for the open transaction.
func (ss *session) noteDropped(gap bool) {
	if gap && ss.txn != nil {
		ss.lockFold()
		ss.txnGap = true
		ss.mu.Unlock()
	}
}

// closeTxn commits the open transaction on Close. A poll of the range
// (whose ctx stopFetching ended) finishes first: franz-go's End commits
// its read position, which a poll moves, and the records of a poll that
// returns now are buffered, not yielded, so the end gives them back.
func (ss *session) closeTxn(ctx context.Context) error {
	ss.lockFold()
	polling := ss.pollDone
	ss.mu.Unlock()
	if polling != nil {
		select {
		case <-polling:
		case <-ctx.Done():
			// The poll did not return: abort rather than commit a
			// position it may have moved.
			ss.endTxn(ctx, false)
			return fmt.Errorf("waiting for the range's poll: %w", ctx.Err())
		}
	}
	return ss.endTxn(ctx, true)
}

// endTxnNow is endTxn bounded by its own deadline, not by the loop's ctx,
// whose end is a normal end of the loop; it gives up when the session is
// aborted.
func (ss *session) endTxnNow(commit bool) error {
	ctx, cancel := context.WithTimeout(ss.abortCtx, txnEndTimeout)
	defer cancel()
	return ss.endTxn(ctx, commit)
}

// txnEndTimeout bounds one end of a transaction.
const txnEndTimeout = 30 * time.Second
