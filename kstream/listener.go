package kstream

import (
	"context"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
)

// RebalanceListener is told when the partitions of a stream's group member
// change, as kstreams' RebalanceListener is. Each method gets the stream (as
// AnyStream) and the partitions concerned, by topic; the map is the
// listener's to keep. Empty changes are not reported.
//
// Callbacks run on franz-go's group goroutine, one at a time, and never while
// the stream's loop body holds a record: the stream lets a rebalance proceed
// only at a record boundary, so when OnRevoked runs, no record of the revoked
// partitions is being processed and none will be yielded again by this
// member. In a callback it is safe to call the stream's Name, Assignment and
// Commit, to read and write your own state, and to do I/O that is bounded by
// ctx. Keep callbacks short: the whole group waits for them, and a member
// that takes longer than the rebalance timeout is removed from the group. Do
// not range over the stream from a callback. Close (or an engine's Stop) may
// be called from one: it commits and starts leaving the group, and returns
// without waiting for the leave, which finishes as soon as the callback
// returns.
type RebalanceListener interface {
	// OnAssigned is called after partitions are assigned to this member
	// and before any of their records are fetched.
	OnAssigned(ctx context.Context, s AnyStream, assigned map[string][]int32)
	// OnRevoked is called before partitions are taken from this member
	// in a rebalance or on Close. Commits made here still succeed; in the
	// default mode the processed records were committed just before.
	OnRevoked(ctx context.Context, s AnyStream, revoked map[string][]int32)
	// OnLost is called when partitions were taken from this member
	// without a rebalance it took part in (its session expired, it was
	// fenced). Commits made here fail; another member may already own
	// the partitions.
	OnLost(ctx context.Context, s AnyStream, lost map[string][]int32)
}

// AnyStream is the view of a stream that is the same whatever its record
// type: what a RebalanceListener gets.
type AnyStream interface {
	// Name returns the stream's name.
	Name() string
	// Commit commits every record the stream has yielded so far, as
	// Stream.Commit does, except a record that a range left unfinished
	// (break, return, panic) or whose body is still running while the
	// stream closes: it stays for the partition's next owner.
	Commit(ctx context.Context) error
	// Assignment returns the partitions this member owns, by topic.
	Assignment() map[string][]int32
}

// streamHandle is the AnyStream of one session, so that a listener's
// Commit reaches the session even while Close is tearing it down.
type streamHandle struct {
	name string
	ss   *session
}

func (h *streamHandle) Name() string                     { return h.name }
func (h *streamHandle) Commit(ctx context.Context) error { return h.ss.commitYielded(ctx, false) }
func (h *streamHandle) Assignment() map[string][]int32   { return h.ss.assignment() }

// MetricsRebalanceListener is kstreams' listener that drops the metrics of
// revoked and lost partitions. Here every stream does that whatever its
// listeners: its per-partition series exist only while the partition is
// assigned (see Metrics). So its methods do nothing; it is for code that
// wants to name it, or to embed it in a listener of its own.
type MetricsRebalanceListener struct{}

// OnAssigned does nothing.
func (MetricsRebalanceListener) OnAssigned(context.Context, AnyStream, map[string][]int32) {}

// OnRevoked does nothing: the revoked partitions' series are gone already.
func (MetricsRebalanceListener) OnRevoked(context.Context, AnyStream, map[string][]int32) {}

// OnLost does nothing: the lost partitions' series are gone already.
func (MetricsRebalanceListener) OnLost(context.Context, AnyStream, map[string][]int32) {}

// ManualCommitRebalanceListener commits the records yielded so far before
// partitions are revoked, so that with ManualCommit a rebalance (or Close)
// does not deliver them again to the next owner. It also does what
// MetricsRebalanceListener does. A failed commit is logged by the stream;
// the records are then delivered again (at least once).
type ManualCommitRebalanceListener struct {
	MetricsRebalanceListener
}

// OnRevoked commits the records yielded so far.
func (ManualCommitRebalanceListener) OnRevoked(ctx context.Context, s AnyStream, _ map[string][]int32) {
	if err := s.Commit(ctx); err != nil {
		if h, ok := s.(*streamHandle); ok {
			h.ss.log.Error("commit before revoke failed; records yielded since the last commit will be delivered again", "err", err)
		}
	}
}

// ListenerFuncs adapts functions to a RebalanceListener; a nil function is
// not called.
type ListenerFuncs struct {
	Assigned func(ctx context.Context, s AnyStream, assigned map[string][]int32)
	Revoked  func(ctx context.Context, s AnyStream, revoked map[string][]int32)
	Lost     func(ctx context.Context, s AnyStream, lost map[string][]int32)
}

// OnAssigned calls f.Assigned.
func (f ListenerFuncs) OnAssigned(ctx context.Context, s AnyStream, assigned map[string][]int32) {
	if f.Assigned != nil {
		f.Assigned(ctx, s, assigned)
	}
}

// OnRevoked calls f.Revoked.
func (f ListenerFuncs) OnRevoked(ctx context.Context, s AnyStream, revoked map[string][]int32) {
	if f.Revoked != nil {
		f.Revoked(ctx, s, revoked)
	}
}

// OnLost calls f.Lost.
func (f ListenerFuncs) OnLost(ctx context.Context, s AnyStream, lost map[string][]int32) {
	if f.Lost != nil {
		f.Lost(ctx, s, lost)
	}
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
		ss.pushMarks(cl)
		if err := cl.CommitMarkedOffsets(ctx); err != nil {
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

// callListeners calls each listener in order, counted as running so that
// Close and Stop called from one do not wait for the callback to end.
func (ss *session) callListeners(call func(RebalanceListener)) {
	ss.inListener.Add(1)
	defer ss.inListener.Add(-1)
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
