package kstream

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// session is one Open of a stream: a franz-go client, the records polled but
// not yet yielded, and what the stream knows of each partition. It is not
// generic; Stream[T] adds decoding on top.
//
// Rebalances are gated with BlockRebalanceOnPoll, so franz-go runs the
// assigned, revoked and lost callbacks only while the iterator allows it:
// when it polls with an empty buffer, at the end of a range, or at a record
// boundary after franz-go asked for a rebalance (OnPartitionsCallbackBlocked),
// in which case the unyielded buffer is rewound with SetOffsets first. So a
// callback never runs while the loop body holds a record, and a revoke waits
// for at most the record in hand, not for the whole polled batch.
type session struct {
	cfg    *config
	name   string
	log    *slog.Logger
	clp    atomic.Pointer[kgo.Client] // set once the client exists; see client()
	group  bool
	manual bool
	// share: the stream reads a share group (share.go); group is false.
	share bool
	sh    shareState // under mu
	// outOfOrder: records finish out of offset order (PartitionConcurrency,
	// KeyConcurrency), so commits stop at the lowest unfinished record.
	outOfOrder bool
	// decodeUnavailable is the decoder's error while it is unavailable
	// (decode_retry.go), for health.
	decodeUnavailable atomic.Pointer[string]
	handle            *streamHandle
	m                 *metricsSet // nil without the Metrics option
	tracing           *tracing    // nil without the Tracing option

	closing          atomic.Bool
	rebalancePending atomic.Bool
	fetchCtx         context.Context // canceled by stopFetching
	fetchDone        <-chan struct{} // fetchCtx.Done()
	fetchStopped     atomic.Bool     // set by stopFetching just before it cancels fetchCtx
	stopFetching     context.CancelFunc
	abortCtx         context.Context // the client's context; canceled by abort
	abort            context.CancelFunc

	closeOnce sync.Once
	closed    chan struct{} // closed when the first close returned
	left      chan struct{} // closed when the client has closed (the group left)
	leftOnce  sync.Once
	closeErr  error
	pushDue   atomic.Bool // set by pushTimer: marks waited markPushInterval
	pushTimer *time.Timer

	commitMu sync.Mutex // serializes commits so that they stay monotonic
	pushMu   sync.Mutex // serializes pushes of marks; guards scratch
	scratch  map[string]map[int32]kgo.EpochOffset

	mu       sync.Mutex
	buf      []*kgo.Record // polled, not yet yielded: buf[pos:]
	pos      int
	errs     []error // *FetchError of the last poll, *EmitError: not yet yielded
	fatal    *FetchError
	parts    map[topicPartition]*partState
	lastTP   topicPartition
	last     *partState // cache of parts[lastTP]; nil after any removal
	inflight []*kgo.Record
	// The Records iterator's run (run.go).
	run          []*kgo.Record
	runStart     int // the index in buf of run[0]
	runFolded    int
	runPart      *partState // the partition of the run's records
	runIdx       atomic.Int32
	runStop      atomic.Bool
	ranging      bool
	idleGiveWay  chan struct{} // closed when a give-way outside a range ends
	dirty        bool          // some partition has processed > pushed
	initialLeft  map[topicPartition]int64
	assignedOnce bool
	// stopDispatch, set while a concurrent Handle stream runs, drops the
	// records its lanes have not started and waits for those running.
	stopDispatch func() (gap bool)
	// drainDispatch waits until a concurrent stream's lanes have finished
	// every record dispatched (ExactlyOnce: endTxn).
	drainDispatch func()
	// txnGap: a drop of lane work left a record finished above one not
	// handled; the open transaction holds its output and cannot commit.
	txnGap bool
	ctl    control // pauses, seeks and bounds (control.go)

	// Emit (emit.go): records emitted and not yet acknowledged, whether
	// one failed and waits for recoverEmits, the generation of emit
	// bookkeeping; the transaction of an ExactlyOnce stream (txn.go).
	emitting   atomic.Int64
	acks       atomic.Pointer[emitOp] // acknowledged, to be settled under mu (emitOp.acked)
	freedOps   atomic.Pointer[emitOp] // acknowledged under ExactlyOnce, for reuse
	emitOps    []*emitOp              // for reuse, under mu (newEmitOpLocked)
	emitFailed atomic.Bool
	emitGen    uint64 // under mu
	// emitCtxIn is the ctx of the last Emit and emitCtxOut its
	// WithoutCancel, under mu (emit.go).
	emitCtxIn, emitCtxOut context.Context
	emitCtxManual         *sendCtx // emitCtxOut saying ToPartition chose the partition
	// pollDone, under ExactlyOnce, is closed when the poll in progress
	// has buffered what it fetched (closeTxn waits for it); under mu.
	pollDone chan struct{}
	// txnAbortOnClose: Close ran in a listener, so closeClient's
	// goroutine ends (aborts) the transaction (close.go).
	txnAbortOnClose atomic.Bool
	txn             *txnState
}

// partLocked returns the state of r's partition, creating it for a stream
// without a group (which owns every partition it fetches). ss.mu is held.
func (ss *session) partLocked(topic string, partition int32) *partState {
	if ps := ss.cachedPartLocked(topic, partition); ps != nil {
		return ps
	}
	tp := topicPartition{topic, partition}
	ps := ss.parts[tp]
	if ps == nil && !ss.group {
		ps = ss.newPartState(topic)
		ss.parts[tp] = ps
	}
	if ps != nil {
		ss.last, ss.lastTP = ps, tp
	}
	return ps
}

// cachedPartLocked is partLocked's cache alone: the state of the partition
// looked up last, if it is this one, else nil. It is small enough to be
// inlined, which partLocked (with its map lookup) is not, so the per-record
// callers (popLocked, markLocked) try it first: records come partition by
// partition, so it nearly always hits. ss.mu is held.
func (ss *session) cachedPartLocked(topic string, partition int32) *partState {
	if ps := ss.last; ps != nil && ss.lastTP.partition == partition && ss.lastTP.topic == topic {
		return ps
	}
	return nil
}

// ownedPartLocked returns the state of tp if this member owns it (has its
// state), nil otherwise; unlike partLocked it never creates one. The cache
// is tried first: Emit and its acknowledgements look a partition up per
// record. ss.mu is held.
func (ss *session) ownedPartLocked(tp topicPartition) *partState {
	if ps := ss.cachedPartLocked(tp.topic, tp.partition); ps != nil {
		return ps
	}
	return ss.parts[tp]
}

// client returns the session's franz-go client. A rebalance callback can
// run (and a listener call Commit) before openSession has stored it: the
// callbacks store the client they are given first.
func (ss *session) client() *kgo.Client { return ss.clp.Load() }

// beginRange marks the session as being ranged over, once a give-way that
// franz-go started while no range ran has finished: a range must not take a
// record that the give-way is rewinding to.
func (ss *session) beginRange() {
	ss.lockFold()
	for ss.idleGiveWay != nil {
		ch := ss.idleGiveWay
		ss.mu.Unlock()
		<-ch
		ss.lockFold()
	}
	ss.ranging = true
	ss.mu.Unlock()
}

// endRange is called when a range ends for any reason (end, break, return,
// panic). The records in flight (the record or batch in hand) stay
// unprocessed and go back to the front of the buffer, so that ranging again
// yields them again first.
func (ss *session) endRange() {
	ss.lockFold()
	ss.endRunLocked() // the record in hand is in flight, the rest buffered
	ss.ranging = false
	if ss.share {
		// A record acknowledged by Ack is not given back (share.go).
		ss.inflight = ss.shareUndecidedLocked(ss.inflight)
	}
	early := len(ss.inflight) > 0 // break, return or panic with a record in hand
	if !ss.closing.Load() && early {
		ss.giveBackLocked(ss.inflight)
	}
	ss.inflight = ss.inflight[:0]
	if ss.share && !ss.closing.Load() {
		// What will not be yielded again (a concurrent stream's lane
		// queues) goes back to the broker now.
		ss.shareReleaseOrphansLocked()
	}
	empty := ss.pos >= len(ss.buf)
	ss.mu.Unlock()
	if ss.closing.Load() {
		if ss.group {
			ss.client().AllowRebalance() // Close leaves the group; let it
		}
		return
	}
	if ss.txn != nil && early {
		// Leaving the loop early aborts the open transaction: every
		// record since the last commit is delivered again.
		ss.endTxnNow(false)
	}
	ss.pushMarks(ss.client())
	if !ss.group {
		return
	}
	if ss.rebalancePending.Swap(false) || empty {
		// With nothing buffered, a rebalance may run while no range
		// does; through giveWay, so that partitions with records yielded
		// and not processed (dropped by a concurrent stream's lanes) are
		// rewound first (giveWay clears ctl.blocked).
		ss.giveWay(ss.client())
	}
}

// giveBackLocked puts records that were yielded but not processed back at
// the front of the buffer and counts them as not yielded. ss.mu is held.
func (ss *session) giveBackLocked(rs []*kgo.Record) {
	for _, r := range rs {
		if ps := ss.parts[topicPartition{r.Topic, r.Partition}]; ps != nil && r.Offset >= ps.processed {
			if r.Offset < ps.yielded {
				ps.rewindTo(r.Offset)
			}
		}
	}
	ss.unpopLocked(rs)
}

// assignment returns the partitions this member owns.
func (ss *session) assignment() map[string][]int32 {
	ss.lockFold()
	defer ss.mu.Unlock()
	out := make(map[string][]int32)
	for tp := range ss.parts {
		out[tp.topic] = append(out[tp.topic], tp.partition)
	}
	for _, ps := range out {
		slices.Sort(ps)
	}
	return out
}
