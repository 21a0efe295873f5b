// The poll/yield loop: records are polled into a buffer and taken from it
// one at a time, at record boundaries.

package kstream

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// popStatus says why pop returned no record.
type popStatus int

const (
	popRecord  popStatus = iota // a record (or an error) to yield
	popEnd                      // ctx done, or the stream is closing: end quietly
	popTimeout                  // the deadline passed with nothing buffered
	popYield                    // a rebalance waits and the caller holds records
)

// step finishes prev (marks it processed unless the stream is closing),
// then takes the next record and records it as yielded and in flight. It is
// the locked path of Records.
//
// With a run (run.go) prev is the last record the run yielded; the run ends
// here (unless a Close ended it already), and the records kept for
// partitions resumed meanwhile go back to the buffer. If a record is taken,
// the buffer from it on becomes the next run, returned for runStep.
func (ss *session) step(ctx context.Context, done <-chan struct{}, prev *kgo.Record) (*kgo.Record, error, popStatus, []*kgo.Record) {
	push := false
	ss.lockFold()
	ss.endRunLocked()
	if prev != nil {
		ss.inflight = ss.inflight[:0]
		// Under ExactlyOnce a record finished while closing is marked:
		// its output is in the transaction Close commits.
		if !ss.closing.Load() || ss.txn != nil {
			ss.markLocked(prev)
			push = ss.dirty && ss.pushDue.Load()
		}
	}
	r, fe, st := ss.popLocked(ctx, done, time.Time{}, true)
	var run []*kgo.Record
	if r != nil {
		// popLocked just looked r's partition up, so this hits the cache.
		ss.last.noteYield(r)
		ss.inflight = append(ss.inflight, r)
		run = ss.startRunLocked(r)
	}
	ss.mu.Unlock()
	if push {
		ss.pushMarks(ss.client())
	}
	return r, fe, st, run
}

// popLocked takes the next polled record or error, polling when none is
// buffered. With a zero deadline it waits as long as ctx allows. allow says
// whether the caller holds no records, so that a waiting rebalance may run;
// if it may not, popLocked returns popYield instead. ss.mu is held, and
// released while polling.
//
// The error, if any, is a *FetchError or an *EmitError. Under ExactlyOnce
// popLocked also ends the transaction when it is due and nothing is in
// hand (txn.go).
func (ss *session) popLocked(ctx context.Context, done <-chan struct{}, deadline time.Time, allow bool) (*kgo.Record, error, popStatus) {
	for {
		if ss.closing.Load() {
			return nil, nil, popEnd
		}
		// This runs for every record: a one-case select costs a fraction
		// of a two-case one, and the stream's own stop is an atomic flag
		// (set before fetchDone closes) rather than a second select.
		select {
		case <-done:
			return nil, nil, popEnd
		default:
		}
		if ss.fetchStopped.Load() {
			return nil, nil, popEnd
		}
		if ss.rebalancePending.Load() {
			if !allow {
				return nil, nil, popYield
			}
			ss.rebalancePending.Store(false)
			ss.mu.Unlock()
			ss.giveWay(ss.client())
			ss.lockFold()
			continue
		}
		if ss.seekReadyLocked() {
			if !allow {
				return nil, nil, popYield
			}
			ss.applySeeksLocked()
			continue
		}
		if ss.emitFailed.Load() {
			if !allow {
				return nil, nil, popYield
			}
			ss.mu.Unlock()
			ss.recoverEmits()
			ss.lockFold()
			continue
		}
		if ss.txn != nil && allow && ss.txnEndDueLocked() {
			ss.mu.Unlock()
			ss.endTxnNow(true)
			ss.lockFold()
			continue
		}
		if len(ss.errs) > 0 {
			fe := ss.errs[0]
			ss.errs = ss.errs[1:]
			return nil, fe, popRecord
		}
		if ss.fatal != nil {
			return nil, ss.fatal, popRecord
		}
		if ss.ctl.b.bounded && ss.reachedEndLocked() {
			return nil, nil, popEnd
		}
		for ss.pos < len(ss.buf) {
			r := ss.buf[ss.pos]
			ss.buf[ss.pos] = nil
			ss.pos++
			// The lookup also primes the cache that step reads. A record
			// of a partition this member does not own is never yielded:
			// callbacks run only after giveWay emptied the buffer (or while
			// closing, when nothing is yielded), and disown drops what a
			// Resume buffered since, so this guards the invariant rather
			// than handling a case.
			if ss.cachedPartLocked(r.Topic, r.Partition) == nil && ss.partLocked(r.Topic, r.Partition) == nil {
				continue // (the cache is tried inline first: this runs per record)
			}
			if len(ss.ctl.paused) > 0 {
				if tp := (topicPartition{r.Topic, r.Partition}); ss.ctl.paused[tp] {
					ss.holdLocked(tp, r)
					continue
				}
			}
			return r, nil, popRecord
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return nil, nil, popTimeout
		}
		if ss.share && !allow {
			// franz-go accepts, at the next poll, every record of the
			// last poll not acknowledged: a share stream polls only when
			// the caller holds no record (share.go).
			return nil, nil, popTimeout
		}
		pollDeadline, pollAllow := deadline, allow
		if ss.txn != nil && ss.dirty {
			// The open transaction holds records: rebalances wait for its
			// end (a waiting one wakes the poll), and the poll returns
			// when the transaction is due.
			pollAllow = false
			if due := ss.txnDeadline(); pollDeadline.IsZero() || due.Before(pollDeadline) {
				pollDeadline = due
			}
		}
		ss.mu.Unlock()
		st := ss.poll(ctx, pollDeadline, pollAllow)
		ss.lockFold()
		if st == popTimeout && !pollDeadline.Equal(deadline) && (deadline.IsZero() || time.Now().Before(deadline)) {
			continue // the transaction's deadline, not the caller's
		}
		if ss.ctl.woken {
			// Resume or Seek ended the poll: look again.
			ss.ctl.woken = false
			if st == popTimeout {
				continue
			}
		}
		if st != popEnd && ss.seekReadyLocked() {
			continue // rebalances are held back now: apply the seeks
		}
		if st != popRecord {
			return nil, nil, st
		}
	}
}

// poll fetches the next records into the buffer. ss.mu is not held.
func (ss *session) poll(ctx context.Context, deadline time.Time, allow bool) popStatus {
	ss.pushMarks(ss.client())
	if ss.share {
		if ss.emitting.Load() > 0 {
			// The records finished wait for their emits before their
			// Accept (shareAcceptLocked), which must come before the poll.
			_ = ss.client().Flush(ctx)
		}
		// Nothing held unacknowledged must be accepted by the poll.
		ss.lockFold()
		ss.shareReleaseOrphansLocked()
		ss.mu.Unlock()
	}
	if ss.group && allow {
		ss.lockFold()
		ss.ctl.blocked = false
		ss.mu.Unlock()
		ss.client().AllowRebalance()
	}
	var pctx context.Context
	var cancel context.CancelFunc
	if deadline.IsZero() {
		pctx, cancel = context.WithCancel(ctx)
	} else {
		pctx, cancel = context.WithDeadline(ctx, deadline)
	}
	defer cancel()
	defer context.AfterFunc(ss.fetchCtx, cancel)()
	ss.lockFold()
	if ss.txn != nil {
		// Close ends the transaction only once no poll moves franz-go's
		// position (closeTxn waits for pollDone); a poll that would
		// start after Close began does not start.
		if ss.closing.Load() {
			ss.mu.Unlock()
			return popEnd
		}
		ss.pollDone = make(chan struct{})
	}
	ss.ctl.wake = cancel
	if ss.ctl.woken {
		cancel()
	}
	ss.mu.Unlock()
	fs := ss.client().PollRecords(pctx, ss.pollSize())
	if ss.group && ss.closing.Load() {
		// Close may have allowed rebalances before this poll returned and
		// blocked them again; leaving the group waits for that.
		ss.client().AllowRebalance()
	}

	var seeks map[string]map[int32]kgo.EpochOffset
	leave := false // a fatal group error: the client stops trying to join
	ss.lockFold()
	ss.ctl.wake = nil
	ss.ctl.blocked = true // every PollRecords return holds rebalances back
	status := popRecord
	fs.EachError(func(topic string, partition int32, err error) {
		if ctx.Err() != nil || ss.fetchCtx.Err() != nil {
			status = popEnd
			return
		}
		if pctx.Err() != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
			if status == popRecord {
				status = popTimeout
			}
			return
		}
		switch classifyFetchError(err) {
		case errEnd:
			status = popEnd
		case errRetried:
			ss.log.Warn("fetch error, retrying", "topic", topic, "partition", partition, "err", err)
		case errNonFatal:
			if topic == "" {
				partition = -1 // a group-level error, not a partition's
			}
			ss.log.Warn("fetch error", "topic", topic, "partition", partition, "err", err)
			ss.errs = append(ss.errs, error(&FetchError{Topic: topic, Partition: partition, Err: err}))
		case errFatal:
			if topic == "" {
				partition = -1
			}
			ss.log.Error("fatal fetch error, stream stops", "topic", topic, "partition", partition, "err", err)
			if ss.fatal == nil {
				ss.fatal = &FetchError{Topic: topic, Partition: partition, Err: err, Fatal: true}
				leave = ss.group && topic == ""
			}
		}
	})
	// The buffer is empty when a poll starts, but a Resume during the
	// poll may have put kept records in it.
	if ss.pos < len(ss.buf) {
		n := copy(ss.buf, ss.buf[ss.pos:])
		clear(ss.buf[n:])
		ss.buf = ss.buf[:n]
	} else {
		ss.buf = ss.buf[:0]
	}
	ss.pos = 0
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		ps := ss.partLocked(p.Topic, p.Partition)
		if ps == nil {
			return
		}
		if p.HighWatermark > ps.highwater {
			ps.highwater = p.HighWatermark
		}
		if !ss.group && ss.initialLeft != nil {
			tp := topicPartition{p.Topic, p.Partition}
			if off, ok := ss.initialLeft[tp]; ok {
				delete(ss.initialLeft, tp)
				if seeks == nil {
					seeks = make(map[string]map[int32]kgo.EpochOffset)
				}
				if seeks[p.Topic] == nil {
					seeks[p.Topic] = make(map[int32]kgo.EpochOffset)
				}
				seeks[p.Topic][p.Partition] = kgo.EpochOffset{Epoch: -1, Offset: off}
				ss.log.Info("initial offset applied", "topic", p.Topic, "partition", p.Partition, "offset", off)
				return // these records precede the initial offset's effect
			}
		}
		ss.bufferLocked(ps, p.Records)
	})
	if status == popTimeout && len(ss.buf) > 0 {
		status = popRecord
	}
	if ss.pollDone != nil {
		close(ss.pollDone) // what the poll fetched is buffered now
		ss.pollDone = nil
	}
	ss.mu.Unlock()
	if seeks != nil {
		ss.client().SetOffsets(seeks)
	}
	if leave {
		ss.leaveAfterFatal()
	}
	return status
}

// yielding records rs as yielded and in flight, dropping any whose
// partition this member no longer owns. It returns how many it kept at the
// front of rs.
func (ss *session) yielding(rs []*kgo.Record) int {
	ss.lockFold()
	defer ss.mu.Unlock()
	n := 0
	for _, r := range rs {
		ps := ss.partLocked(r.Topic, r.Partition)
		if ps == nil {
			continue
		}
		ps.noteYield(r)
		rs[n] = r
		n++
	}
	ss.inflight = append(ss.inflight[:0], rs[:n]...)
	return n
}

// processed marks rs processed, unless the stream is closing, and clears
// the records in flight.
func (ss *session) processed(rs []*kgo.Record) {
	ss.lockFold()
	ss.inflight = ss.inflight[:0]
	if ss.closing.Load() && ss.txn == nil {
		ss.mu.Unlock()
		return
	}
	for _, r := range rs {
		ss.markLocked(r)
	}
	push := ss.dirty && ss.pushDue.Load()
	ss.mu.Unlock()
	if push {
		ss.pushMarks(ss.client())
	}
}

// unpopLocked puts records taken by popLocked but not yielded back at the
// front of the buffer, so that the next range yields them.
func (ss *session) unpopLocked(rs []*kgo.Record) {
	if len(rs) == 0 {
		return
	}
	if len(rs) <= ss.pos {
		// There is room before the buffer's unyielded part (a run, or
		// records popped one by one, left it).
		ss.pos -= len(rs)
		copy(ss.buf[ss.pos:], rs)
		return
	}
	rest := ss.buf[ss.pos:]
	buf := make([]*kgo.Record, 0, len(rs)+len(rest))
	buf = append(append(buf, rs...), rest...)
	ss.buf, ss.pos = buf, 0
}

// pollSize is how many records a poll takes from the client: MaxPollRecords
// if given; else all it has buffered, so that franz-go sends the next fetch
// while the loop works through this one (it fetches again only once its
// buffer is drained), except for a share stream (a member acquires what it
// takes) and under ExactlyOnce (a transaction ends sooner on a small buffer).
func (ss *session) pollSize() int {
	if ss.cfg.maxPollSet || ss.share || ss.cfg.exactlyOnce {
		return ss.cfg.maxPoll
	}
	return 0
}
