package kstream

import (
	"context"
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
	// Commit commits, on each partition this member owns, every record
	// before the partition's lowest unfinished one: a record whose body or
	// handler is still running (while the stream closes), that failed, or
	// that a range left (break, return, panic). That record stays for the
	// partition's next owner. This holds under PartitionConcurrency and
	// KeyConcurrency too.
	Commit(ctx context.Context) error
	// Assignment returns the partitions this member owns, by topic.
	Assignment() map[string][]int32
	// Emit writes a record tied to the record being handled, as
	// Stream.Emit does.
	Emit(ctx context.Context, topic string, value []byte, opts ...SendOption) error
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

// ManualCommitRebalanceListener commits the records finished so far (as
// AnyStream.Commit says) before partitions are revoked, so that with ManualCommit a rebalance (or Close)
// does not deliver them again to the next owner. It also does what
// MetricsRebalanceListener does. A failed commit is logged by the stream;
// the records are then delivered again (at least once).
type ManualCommitRebalanceListener struct {
	MetricsRebalanceListener
}

// OnRevoked commits the records finished so far.
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
