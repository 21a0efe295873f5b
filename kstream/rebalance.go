// The rebalance hand-off: how a waiting rebalance gets its turn at a record
// boundary, and the franz-go callbacks that it runs.

package kstream

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// giveWay lets a waiting rebalance run. It is the one hand-off, reached at
// a record boundary of a range (rebalancePending, set by onCallbackBlocked)
// and from onCallbackBlocked itself when no range is running. A concurrent
// Handle stream first drops the records it has not started and waits for
// the handlers running (they mark what they finish); in the default mode
// the records emitted so far are waited for (up to giveWayEmitWait); then
// every partition is rewound to its lowest unprocessed record, or its first
// polled record not yet yielded, the marks are pushed so that a revoke
// commits them, and franz-go may go on. franz-go treats a rewound offset as
// the partition's committable position, so the rewind never passes an
// unprocessed record, nor one whose emits are outstanding or failed.
// cl is given because franz-go's hook can run before openSession stored
// the client.
func (ss *session) giveWay(cl *kgo.Client) {
	if ss.closing.Load() {
		cl.AllowRebalance() // Close leaves the group; let it
		return
	}
	ctx, cancel := context.WithTimeout(ss.abortCtx, giveWayEmitWait)
	defer cancel()
	if ss.txn != nil {
		// The transaction ends, committed, before the rebalance goes on
		// (a concurrent stream's lanes first finish what they hold).
		ss.endTxn(ctx, true)
	}
	ss.lockFold()
	stop := ss.stopDispatch
	ss.mu.Unlock()
	if stop != nil {
		ss.noteDropped(stop())
	}
	if ss.txn == nil && ss.emitting.Load() > 0 {
		// The records emitted so far (lanes that finished may have
		// emitted too) are acknowledged first, so that the rewind,
		// which never passes a record whose output is not acknowledged
		// (rewindLocked), need not go back, and the commit before a
		// revoke covers them.
		_ = cl.Flush(ctx)
	}
	ss.lockFold()
	rewind := ss.rewindLocked()
	if ss.ctl.seekPending.Load() {
		// A seek recorded wins over the rewind of its partition.
		if rewind == nil {
			rewind = make(map[string]map[int32]kgo.EpochOffset)
		}
		ss.takeSeeksLocked(rewind)
	}
	ss.ctl.blocked = false
	ss.mu.Unlock()
	if len(rewind) > 0 {
		cl.SetOffsets(rewind)
	}
	ss.pushMarks(cl)
	cl.AllowRebalance()
}

// giveWayEmitWait bounds how long a give-way waits for the records
// emitted so far (or, under ExactlyOnce, for the end of the transaction).
const giveWayEmitWait = 10 * time.Second

// rewindLocked empties the buffer and returns, per partition that needs
// it, where to read again (partState.rewindTarget); each such partition's
// state counts the records from there as not yielded. In the default mode
// the position is never past a record whose emitted records are not
// acknowledged (rewindEmitsLocked): franz-go takes it as committable.
// ss.mu is held.
func (ss *session) rewindLocked() map[string]map[int32]kgo.EpochOffset {
	ss.endRunLocked()
	firstBuffered := make(map[topicPartition]*kgo.Record)
	note := func(r *kgo.Record) {
		tp := topicPartition{r.Topic, r.Partition}
		if fb, ok := firstBuffered[tp]; !ok || r.Offset < fb.Offset {
			firstBuffered[tp] = r
		}
	}
	for _, r := range ss.buf[ss.pos:] {
		note(r)
	}
	// Records kept for paused partitions are fetched again after their
	// Resume, from the rewind target.
	for _, held := range ss.ctl.held {
		note(held[0])
	}
	clear(ss.ctl.held)
	// Dropped, not cleared: a run's iterator may still read its view of
	// the array (run.go).
	ss.buf, ss.pos = nil, 0
	var rewind map[string]map[int32]kgo.EpochOffset
	for tp, ps := range ss.parts {
		fb := firstBuffered[tp]
		var fbOff int64
		if fb != nil {
			fbOff = fb.Offset
		}
		off, ok := ps.rewindTarget(fbOff, fb != nil)
		if !ok {
			continue
		}
		if ss.txn == nil && ps.em != nil {
			off = ps.capEmits(off)
			ss.rewindEmitsLocked(tp, ps, off)
		}
		eo := kgo.EpochOffset{Epoch: -1, Offset: off}
		if fb != nil && fb.Offset == off {
			eo.Epoch = fb.LeaderEpoch
		}
		ps.rewindTo(off)
		if rewind == nil {
			rewind = make(map[string]map[int32]kgo.EpochOffset)
		}
		addOffset(rewind, tp, eo)
	}
	return rewind
}

// The franz-go callbacks. They run on franz-go's group goroutine, gated by
// BlockRebalanceOnPoll; they use the client they are given, because they
// can run before openSession has stored it.

func (ss *session) onAssigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	ss.clp.CompareAndSwap(nil, cl)
	ss.lockFold()
	for t, ps := range assigned {
		for _, p := range ps {
			ss.parts[topicPartition{t, p}] = ss.newPartState(t)
		}
	}
	ss.last = nil
	if !ss.assignedOnce {
		ss.assignedOnce = true
		for tp, off := range ss.initialLeft {
			if !slices.Contains(assigned[tp.topic], tp.partition) {
				ss.log.Warn("initial offset ignored: partition not assigned to this member", "topic", tp.topic, "partition", tp.partition, "offset", off)
				delete(ss.initialLeft, tp)
			}
		}
	}
	lift := ss.repauseLocked(assigned)
	ss.mu.Unlock()
	if len(lift) > 0 {
		cl.ResumeFetchPartitions(lift)
	}
	ss.boundAssigned(ctx, cl, assigned)
	if countPartitions(assigned) == 0 {
		return
	}
	ss.log.Info("partitions assigned", "partitions", assigned)
	ss.noteRebalance("assigned")
	ss.callListeners(func(l RebalanceListener) { l.OnAssigned(ctx, ss.handle, cloneAssignment(assigned)) })
}

// adjustOffsets applies initial offsets to newly assigned partitions and
// notes the committed offsets the group had for them.
func (ss *session) adjustOffsets(_ context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	ss.lockFold()
	defer ss.mu.Unlock()
	for t, m := range offsets {
		for p, off := range m {
			tp := topicPartition{t, p}
			if ps := ss.parts[tp]; ps != nil {
				if eo := off.EpochOffset(); eo.Offset >= 0 {
					ps.committed, ps.committedKnown = eo.Offset, true
				}
			}
			if ss.ctl.b.bounded || !ss.cfg.control.startAt.IsZero() {
				if adj, changed := ss.adjustStartLocked(tp, off); changed {
					m[p] = adj
				}
			}
			if o, ok := ss.initialLeft[tp]; ok {
				delete(ss.initialLeft, tp)
				m[p] = kgo.NewOffset().At(o).WithEpoch(-1)
				ss.log.Info("initial offset applied", "topic", t, "partition", p, "offset", o)
			}
		}
	}
	return offsets, nil
}

func (ss *session) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	ss.clp.CompareAndSwap(nil, cl)
	if countPartitions(revoked) == 0 {
		return
	}
	if ss.txn != nil {
		ss.txn.revoked.Store(true) // the transaction open now ends aborted
	} else if !ss.manual {
		// A revoke that runs during a poll (rebalances allowed) did not
		// pass through giveWay's flush: the commit covers what emitted
		// records are acknowledged, so wait for them first.
		if err := ss.awaitEmits(ctx); err != nil {
			ss.log.Warn("waiting for emitted records before a revoke", "err", err)
		}
		if err := ss.commitMarked(ctx, cl); err != nil {
			ss.log.Error("commit before revoke failed; processed records will be delivered again", "err", err)
		}
	}
	ss.log.Info("partitions revoked", "partitions", revoked)
	ss.noteRebalance("revoked")
	ss.callListeners(func(l RebalanceListener) { l.OnRevoked(ctx, ss.handle, cloneAssignment(revoked)) })
	ss.disown(revoked)
}

func (ss *session) onLost(ctx context.Context, cl *kgo.Client, lost map[string][]int32) {
	ss.clp.CompareAndSwap(nil, cl)
	if countPartitions(lost) == 0 {
		return
	}
	if ss.txn != nil {
		ss.txn.revoked.Store(true)
	}
	ss.log.Warn("partitions lost", "partitions", lost)
	ss.noteRebalance("lost")
	ss.callListeners(func(l RebalanceListener) { l.OnLost(ctx, ss.handle, cloneAssignment(lost)) })
	ss.disown(lost)
}

// callListeners calls each listener in order, with the calling goroutine
// (franz-go's) recorded as in a listener of ss, so that Close and Stop
// called from a listener, and only from one, do not wait for the leave
// that waits for the callback to end.
func (ss *session) callListeners(call func(RebalanceListener)) {
	if len(ss.cfg.listeners) == 0 {
		return
	}
	defer enterListener(ss)()
	for _, l := range ss.cfg.listeners {
		call(l)
	}
}

// onCallbackBlocked runs (in a goroutine of franz-go's) when a rebalance
// waits for the stream. Outside a range the stream gives way at once;
// during one, at the range's next record boundary.
func (ss *session) onCallbackBlocked(_ context.Context, cl *kgo.Client) {
	ss.lockFold()
	if ss.ranging {
		// A poll of the range has returned (that is what blocks): the
		// range gives way at its next step. A poll that held
		// rebalances back (ExactlyOnce, busy lanes) is woken.
		ss.rebalancePending.Store(true)
		if ss.ctl.wake != nil {
			ss.ctl.woken = true
			ss.ctl.wake()
		}
		ss.mu.Unlock()
		return
	}
	// A range starting meanwhile waits for this give-way (beginRange).
	done := make(chan struct{})
	ss.idleGiveWay = done
	ss.mu.Unlock()
	ss.giveWay(cl)
	ss.lockFold()
	ss.idleGiveWay = nil
	ss.mu.Unlock()
	close(done)
}

func (ss *session) disown(gone map[string][]int32) {
	// A commit in progress finishes before the partitions go, so that a
	// commit never reaches a partition this member no longer owns.
	ss.commitMu.Lock()
	defer ss.commitMu.Unlock()
	ss.lockFold()
	defer ss.mu.Unlock()
	for t, ps := range gone {
		for _, p := range ps {
			tp := topicPartition{t, p}
			if st := ss.parts[tp]; st != nil {
				ss.dropEndLocked(st)
			}
			delete(ss.parts, tp)
		}
	}
	ss.last = nil
	ss.dropControlLocked(gone)
}

func (ss *session) noteRebalance(kind string) {
	if ss.m != nil {
		ss.m.rebalances.WithLabelValues(ss.name, kind).Inc()
	}
}

func countPartitions(m map[string][]int32) int {
	n := 0
	for _, ps := range m {
		n += len(ps)
	}
	return n
}

func cloneAssignment(m map[string][]int32) map[string][]int32 {
	out := make(map[string][]int32, len(m))
	for t, ps := range maps.All(m) {
		if len(ps) > 0 {
			out[t] = slices.Clone(ps)
		}
	}
	return out
}
