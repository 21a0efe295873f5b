// Runs: the Records iterator's fast path. The record step takes under
// ss.mu starts a run: the buffer from that record on, through which the
// iterator steps without the lock for as long as the records are of the
// same partition (runStep). Per record it publishes its position (one
// atomic store) and checks the flags that ask for the locked path (atomic
// loads, and the range's ctx). Whoever takes ss.mu through lockFold first
// folds the run's progress into the partition's state, so that every
// reader under the lock (Commit, Emit, the metrics, Close) sees exactly
// what a per-record lock would have shown it.

package kstream

import (
	"github.com/twmb/franz-go/pkg/kgo"
)

// A run's bookkeeping, in session:
//
//	run       the run, a view of buf from its first record on, under mu; nil
//	          when there is none
//	runStart  the index in buf of run[0]; runPart its partition's state
//	runIdx    written by the iterator only: run[:runIdx] are finished by the
//	          body, run[runIdx] is in hand
//	runFolded under mu: how far foldRunLocked has accounted for; run[:runFolded]
//	          are marked processed and run[runFolded] is yielded and in flight
//	runStop   asks the iterator to end its run at the next record boundary:
//	          set by Pause, Resume, Seek, StopAtEnd's changes (wakeLocked) and
//	          endRunLocked; reset when a run starts, under mu
//
// The iterator checks the flags (and the range's ctx) before it publishes a
// record, and yields every record it publishes: a fold never sees in hand a
// record that no body was given. A flag raised meanwhile is seen at the
// next boundary, as if raised just after the step. While the run lasts, buf
// from runStart on is the run's: the iterator itself ends the run (step,
// endRange, decode retry, the rewinds and buffer drops of its slow path)
// before anything reads or changes the buffer; another goroutine does not,
// except for a Close (a rewind ending its transaction, the revoke of its
// leave), after which nothing is yielded or committed from the buffer. A
// Resume during a run leaves the records it would insert kept until the
// run ends (insertResumedLocked). Nothing writes the buffer's array in
// place from another goroutine (a rewind or a drop of buffered records makes
// a new array), since the iterator may still read run[next] from its view.

// lockFold takes ss.mu, settles the emit acknowledgements queued without
// it (emitOp.acked) and folds the progress of a run. Every holder of ss.mu
// outside the iterator's run steps takes it this way.
func (ss *session) lockFold() {
	ss.mu.Lock()
	ss.foldLocked()
}

// foldLocked is lockFold's work once ss.mu is held.
func (ss *session) foldLocked() {
	if ss.acks.Load() != nil {
		ss.settleAcksLocked() // emit.go
	}
	if ss.run != nil {
		ss.foldRunLocked()
	}
}

// foldRunLocked brings the partition's state up to the run's published
// position: the records finished are marked processed (as step would have,
// one by one: marking the last of them is the same, the partition's
// processed count aside) and the record in hand is yielded and in flight.
// ss.mu is held.
func (ss *session) foldRunLocked() {
	idx := int(ss.runIdx.Load())
	if idx <= ss.runFolded {
		return
	}
	ps := ss.runPart
	if n := idx - ss.runFolded; n > 1 && ps.processedCtr != nil {
		ps.processedCtr.Add(float64(n - 1)) // markLocked counts the last
	}
	ss.markLocked(ss.run[idx-1])
	hand := ss.run[idx]
	ps.noteYield(hand)
	ss.inflight = append(ss.inflight[:0], hand)
	ss.runFolded = idx
}

// endRunLocked ends the run, if there is one: its progress is folded, the
// records up to the one in hand count as taken from the buffer, and the rest
// as buffered. The record in hand stays in flight (the caller finishes it or
// gives it back). Then the records kept for partitions resumed during the
// run go back to the buffer (insertResumedLocked). ss.mu is held.
func (ss *session) endRunLocked() {
	if ss.run != nil {
		ss.runStop.Store(true)
		ss.foldRunLocked()
		// Only the slots the iterator has read are cleared: it may still
		// read the next one.
		ss.pos = ss.runStart + ss.runFolded + 1
		clear(ss.buf[ss.runStart:ss.pos])
		ss.run, ss.runPart, ss.runFolded = nil, nil, 0
	}
	if len(ss.ctl.held) > 0 {
		ss.insertResumedLocked()
	}
}

// startRunLocked makes r, just taken by popLocked from the buffer, the
// first record of a run: the buffer from r on, which the iterator steps
// through as long as the records are of r's partition (runStep). popLocked
// checked that partition (owned, not paused); no rebalance runs before the
// run ends, and Pause ends it. It returns the run, or nil when nothing is
// buffered after r. While the run lasts the buffer belongs to it: whatever
// reads or changes the buffer ends it first (endRunLocked), and the
// buffer's array is never written in place from the run's start on (a
// rewind drops the array instead of clearing it). ss.mu is held.
func (ss *session) startRunLocked(r *kgo.Record) []*kgo.Record {
	if ss.share || ss.pos >= len(ss.buf) {
		return nil
	}
	start := ss.pos - 1
	ss.buf[start] = r // popLocked took r from there and cleared the slot
	ss.run, ss.runStart = ss.buf[start:], start
	ss.runPart, ss.runFolded = ss.last, 0
	ss.runIdx.Store(0)
	ss.runStop.Store(false)
	return ss.run
}

// runFlagged reports whether something asks for the locked path at the
// next record boundary: the stream stopping, a rebalance, a seek, a pause
// or resume, a failed emit, a transaction to end. (Marks due to be pushed
// are not among them: the push timer folds the run itself.)
func (ss *session) runFlagged() bool {
	if ss.runStop.Load() || ss.closing.Load() || ss.fetchStopped.Load() || ss.rebalancePending.Load() ||
		ss.ctl.seekPending.Load() || ss.emitFailed.Load() {
		return true
	}
	t := ss.txn
	return t != nil && (t.due.Load() || t.revoked.Load())
}

// runStep is the iterator's step through its run: prev, run[next-1], is
// finished, and run[next] is taken if it is of the same partition and
// nothing asks for the locked path (the range's ctx is done, or
// runFlagged); otherwise it returns nil, and the caller steps under the
// lock (step), which ends the run.
//
// The checks come before the position is published, and a record published
// is always yielded: no other goroutine ever sees in hand a record no body
// was given (Commit covers the record in hand). A flag raised between the
// checks and the store is seen at the next boundary, as if it had been
// raised just after the step.
//
// The slots of the records before run[next] may have been cleared by a fold
// that ended the run: runStep reads only run[next], and r's partition is
// compared with head's, the run's first record, which the caller keeps.
func (ss *session) runStep(run []*kgo.Record, next int, head *kgo.Record, done <-chan struct{}) *kgo.Record {
	if next >= len(run) {
		return nil
	}
	r := run[next]
	if r.Partition != head.Partition || r.Topic != head.Topic {
		return nil // the next partition's records: popLocked checks them
	}
	// The range's ctx is looked at here, not through a flag set by
	// context.AfterFunc: a body that cancels it must see the range end at
	// the very next boundary, and AfterFunc runs later, on a goroutine of
	// its own.
	select {
	case <-done:
		return nil
	default:
	}
	if ss.runFlagged() {
		return nil
	}
	ss.runIdx.Store(int32(next))
	return r
}
