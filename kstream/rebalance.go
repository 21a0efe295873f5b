// The rebalance hand-off: how a waiting rebalance gets its turn at a record
// boundary, and the franz-go callbacks that it runs.

package kstream

import (
	"context"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
)

// yieldToRebalance lets a waiting rebalance run: unyielded records are
// given back (their partitions rewound to the first of them), marks are
// pushed so that the revoke commits them, and franz-go may go on.
func (ss *session) yieldToRebalance() {
	if ss.closing.Load() {
		ss.cl.AllowRebalance() // Close leaves the group; let it
		return
	}
	ss.mu.Lock()
	drain := ss.drain
	ss.mu.Unlock()
	if drain != nil {
		// Records in flight finish, and are marked, before a revoke, and
		// before the rewind is computed: counted as unprocessed, they
		// would be rewound to and handled again.
		drain()
	}
	ss.mu.Lock()
	rewind := ss.takeBufferLocked()
	ss.mu.Unlock()
	if len(rewind) > 0 {
		ss.cl.SetOffsets(rewind)
	}
	ss.pushMarks(ss.cl)
	ss.cl.AllowRebalance()
}

// takeBufferLocked empties the buffer and returns, per partition, where to
// rewind: its first unyielded record, or the first yielded record that was
// not processed if there is one. franz-go treats a rewound offset as the
// partition's committable position, so the rewind must never pass a record
// that was not processed.
func (ss *session) takeBufferLocked() map[string]map[int32]kgo.EpochOffset {
	var rewind map[string]map[int32]kgo.EpochOffset
	for _, r := range ss.buf[ss.pos:] {
		if rewind == nil {
			rewind = make(map[string]map[int32]kgo.EpochOffset)
		}
		m := rewind[r.Topic]
		if m == nil {
			m = make(map[int32]kgo.EpochOffset)
			rewind[r.Topic] = m
		}
		if _, ok := m[r.Partition]; ok {
			continue
		}
		eo := kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
		if ps := ss.parts[topicPartition{r.Topic, r.Partition}]; ps != nil {
			if low, ok := ps.lowestUnprocessed(); ok && low < eo.Offset {
				eo = kgo.EpochOffset{Epoch: -1, Offset: low}
			}
		}
		m[r.Partition] = eo
	}
	clear(ss.buf)
	ss.buf = ss.buf[:0]
	ss.pos = 0
	return rewind
}

// The franz-go callbacks. They run on franz-go's group goroutine, gated by
// BlockRebalanceOnPoll; they use the client they are given, because they
// can run before openSession has stored it.

func (ss *session) onAssigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	ss.mu.Lock()
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
	ss.mu.Unlock()
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
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for t, m := range offsets {
		for p, off := range m {
			tp := topicPartition{t, p}
			if ps := ss.parts[tp]; ps != nil {
				if eo := off.EpochOffset(); eo.Offset >= 0 {
					ps.committed, ps.committedKnown = eo.Offset, true
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
	if countPartitions(revoked) == 0 {
		return
	}
	ss.dropBuffered(revoked)
	if !ss.manual {
		if err := ss.commitMarked(ctx, cl); err != nil {
			ss.log.Error("commit before revoke failed; processed records will be delivered again", "err", err)
		}
	}
	ss.log.Info("partitions revoked", "partitions", revoked)
	ss.noteRebalance("revoked")
	ss.callListeners(func(l RebalanceListener) { l.OnRevoked(ctx, ss.handle, cloneAssignment(revoked)) })
	ss.disown(revoked)
}

func (ss *session) onLost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	if countPartitions(lost) == 0 {
		return
	}
	ss.dropBuffered(lost)
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
// waits for the stream. Outside a range, or while the range polls, the
// stream gives way at once; otherwise at the next record boundary.
func (ss *session) onCallbackBlocked(_ context.Context, cl *kgo.Client) {
	ss.mu.Lock()
	if ss.ranging {
		// A poll of the range has returned (that is what blocks): the
		// range gives way at its next step.
		ss.rebalancePending.Store(true)
		ss.mu.Unlock()
		return
	}
	drain := ss.drain
	ss.mu.Unlock()
	if ss.closing.Load() {
		cl.AllowRebalance()
		return
	}
	if drain != nil {
		drain() // before the rewind: see yieldToRebalance
	}
	ss.mu.Lock()
	rewind := ss.takeBufferLocked()
	ss.mu.Unlock()
	if len(rewind) > 0 {
		cl.SetOffsets(rewind)
	}
	ss.pushMarks(cl)
	cl.AllowRebalance()
}

// dropBuffered removes unyielded records of the given partitions. Gating
// means there are none; this keeps the guarantee if that ever changes.
func (ss *session) dropBuffered(gone map[string][]int32) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	kept := ss.buf[:ss.pos]
	for _, r := range ss.buf[ss.pos:] {
		if !slices.Contains(gone[r.Topic], r.Partition) {
			kept = append(kept, r)
		}
	}
	clear(ss.buf[len(kept):])
	ss.buf = kept
}

func (ss *session) disown(gone map[string][]int32) {
	// A commit in progress finishes before the partitions go, so that a
	// commit never reaches a partition this member no longer owns.
	ss.commitMu.Lock()
	defer ss.commitMu.Unlock()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for t, ps := range gone {
		for _, p := range ps {
			delete(ss.parts, topicPartition{t, p})
		}
	}
	ss.last = nil
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
