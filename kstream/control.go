// Consumer control: pausing and resuming partitions, seeking, and the end of
// a bounded stream. Every change is recorded under session.mu and takes
// effect at the ranging goroutine's next record boundary (popLocked).

package kstream

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// control is the part of a session that Pause, Resume, Seek and StopAtEnd
// change. It is guarded by session.mu.
type control struct {
	// paused holds the partitions paused by Pause and not resumed; held,
	// their records taken from the buffer but not yielded, in offset
	// order. pausedGone holds the pauses of partitions revoked or lost, so
	// that a partition assigned again by the same rebalance (every
	// partition is, under an eager balancer) stays paused.
	paused     map[topicPartition]bool
	pausedGone map[topicPartition]bool
	held       map[topicPartition][]*kgo.Record

	// wake cancels the poll in progress, so that records of a resumed
	// partition, a seek or the end of a bounded stream do not wait for new
	// records to arrive; woken says that the range must look again, and
	// ends the next poll at once if none was in progress.
	wake  context.CancelFunc
	woken bool

	// seeks are the seeks recorded and not applied yet; seekPending says
	// there are some, for popLocked to check without a map lookup. blocked
	// says that franz-go holds rebalances back (a poll returned and
	// AllowRebalance was not called since), so that SetOffsets may be
	// called.
	seeks       map[topicPartition]int64
	seekPending atomic.Bool
	blocked     bool

	b bounds // StopAtEnd and StartAt (control_end.go)
}

// Pause stops yielding, and fetching, records of the given partitions, by
// topic, until Resume. It takes effect at the next record boundary: the
// record in hand is not affected. Records of these partitions already
// fetched are kept and are yielded after Resume, in order, before anything
// fetched for them later: nothing is lost or skipped. A paused partition
// stays paused through rebalances that leave it with this member (also
// under an eager balancer, which revokes and assigns it again); a
// partition revoked from or lost by this member is no longer paused, and
// its kept records go with it (the next owner reads them from the last
// commit).
//
// With a group, partitions this member does not own are ignored, with a
// logged warning; without one, any partition of the stream's topics may be
// paused. Pause does nothing before Open. It is safe to call from any
// goroutine, including the loop body, a handler and a rebalance listener.
func (s *Stream[T]) Pause(partitions map[string][]int32) {
	if s.sharePauseIgnored("Pause") {
		return
	}
	if ss := s.controlSession("Pause"); ss != nil {
		ss.pause(partitions)
	}
}

// Resume resumes the given partitions, by topic, paused by Pause: records
// kept for them are yielded first, at the next record boundary, and
// fetching goes on. Partitions that are not paused are ignored. It is safe
// to call from any goroutine, including the loop body, a handler and a
// rebalance listener.
func (s *Stream[T]) Resume(partitions map[string][]int32) {
	if s.sharePauseIgnored("Resume") {
		return
	}
	if ss := s.controlSession("Resume"); ss != nil {
		ss.resume(partitions)
	}
}

// Paused returns the partitions paused by Pause and not resumed, by topic,
// each list sorted. It is empty when the stream is not open.
func (s *Stream[T]) Paused() map[string][]int32 {
	ss := s.controlSession("")
	if ss == nil {
		return map[string][]int32{}
	}
	ss.lockFold()
	defer ss.mu.Unlock()
	return partitionsOf(maps.Keys(ss.ctl.paused))
}

// controlSession returns the open session, or the session being opened
// (whose listeners may already run), or nil, logging that what (if not
// empty) has no effect.
func (s *Stream[T]) controlSession(what string) *session {
	s.mu.Lock()
	ss := s.currentSessionLocked()
	s.mu.Unlock()
	if ss == nil && what != "" {
		s.logger().Warn(what+" ignored: the stream is not open", "stream", s.name)
	}
	return ss
}

// pause records the pause of the partitions this member may pause and
// pauses their fetching.
func (ss *session) pause(partitions map[string][]int32) {
	ss.lockFold()
	add := make(map[string][]int32)
	for t, ps := range partitions {
		for _, p := range ps {
			tp := topicPartition{t, p}
			if !ss.ownsLocked(tp) {
				ss.log.Warn("pause ignored: partition not owned by this member", "topic", t, "partition", p)
				continue
			}
			if ss.ctl.paused == nil {
				ss.ctl.paused = make(map[topicPartition]bool)
			}
			ss.ctl.paused[tp] = true
			ss.runStop.Store(true) // the run may hold its records
			add[t] = append(add[t], p)
		}
	}
	cl := ss.client() // read under ss.mu: see openSession
	ss.mu.Unlock()
	if len(add) > 0 {
		ss.log.Info("partitions paused", "partitions", add)
		if cl != nil { // else openSession pauses them once it has a client
			cl.PauseFetchPartitions(add)
		}
	}
}

// resume ends the pause of the partitions, putting their kept records back
// in the buffer, and resumes their fetching.
func (ss *session) resume(partitions map[string][]int32) {
	ss.lockFold()
	del := make(map[string][]int32)
	for t, ps := range partitions {
		for _, p := range ps {
			tp := topicPartition{t, p}
			if !ss.ctl.paused[tp] {
				continue
			}
			delete(ss.ctl.paused, tp)
			del[t] = append(del[t], p)
		}
	}
	if ss.run == nil {
		ss.insertResumedLocked()
	} // else endRunLocked inserts them once the run ends, at the next boundary
	ss.wakeLocked()
	cl := ss.client() // read under ss.mu: see openSession
	ss.mu.Unlock()
	if len(del) > 0 {
		ss.log.Info("partitions resumed", "partitions", del)
		if cl != nil {
			cl.ResumeFetchPartitions(del)
		}
	}
}

// ownsLocked reports whether this member may pause or seek tp: with a group,
// whether it owns tp; without one, whether tp is of the stream's topics.
// ss.mu is held.
func (ss *session) ownsLocked(tp topicPartition) bool {
	if ss.group {
		return ss.parts[tp] != nil
	}
	return tp.partition >= 0 && ss.cfg.subscribes(tp.topic)
}

// holdLocked keeps r, a record of a paused partition taken from the
// buffer, for its Resume. ss.mu is held.
func (ss *session) holdLocked(tp topicPartition, r *kgo.Record) {
	if ss.ctl.held == nil {
		ss.ctl.held = make(map[topicPartition][]*kgo.Record)
	}
	ss.ctl.held[tp] = append(ss.ctl.held[tp], r)
}

// insertHeldLocked puts the kept records of one resumed partition back in
// the unyielded part of the buffer, where they keep the partition's offset
// order: after any of its records with lower offsets (given back by a
// break, which were in hand when the pause came), before those with higher
// ones (fetched before the pause reached franz-go). ss.mu is held.
//
// No run may be active: the buffer from a run's start on is the run's
// (run.go). A Resume during a run leaves the records kept (insertResumedLocked).
func (ss *session) insertHeldLocked(held []*kgo.Record) {
	first := held[0]
	at := ss.pos
	for i := ss.pos; i < len(ss.buf); i++ {
		r := ss.buf[i]
		if r.Partition == first.Partition && r.Topic == first.Topic && r.Offset < first.Offset {
			at = i + 1
		}
	}
	buf := make([]*kgo.Record, 0, len(ss.buf)-ss.pos+len(held))
	buf = append(buf, ss.buf[ss.pos:at]...)
	buf = append(buf, held...)
	buf = append(buf, ss.buf[at:]...)
	ss.buf, ss.pos = buf, 0
}

// insertResumedLocked puts the records kept for partitions no longer
// paused back in the buffer (insertHeldLocked): at a Resume, or, when the
// Resume came during a run, once the run has ended (endRunLocked), before
// anything newer of those partitions is polled. ss.mu is held; no run is
// active.
func (ss *session) insertResumedLocked() {
	for tp, held := range ss.ctl.held {
		if !ss.ctl.paused[tp] {
			delete(ss.ctl.held, tp)
			if len(held) > 0 {
				ss.insertHeldLocked(held)
			}
		}
	}
}

// wakeLocked ends the poll in progress, or the next one if none is in
// progress (the range may be on its way to one), so that the range looks
// at what changed. ss.mu is held.
func (ss *session) wakeLocked() {
	ss.ctl.woken = true
	ss.runStop.Store(true)
	if ss.ctl.wake != nil {
		ss.ctl.wake()
	}
}

// dropControlLocked forgets the pauses and kept records of partitions
// revoked from or lost by this member, and any of their records still
// buffered (when a rebalance ran without a give-way, at a poll or at the
// end of a range with nothing buffered, a Resume may have buffered kept
// records since). It returns the pauses to lift in franz-go once the
// assignment that follows is known. ss.mu is held.
func (ss *session) dropControlLocked(gone map[string][]int32) {
	for t, ps := range gone {
		for _, p := range ps {
			tp := topicPartition{t, p}
			delete(ss.ctl.held, tp)
			if ss.ctl.paused[tp] {
				delete(ss.ctl.paused, tp)
				if ss.ctl.pausedGone == nil {
					ss.ctl.pausedGone = make(map[topicPartition]bool)
				}
				ss.ctl.pausedGone[tp] = true
			}
		}
	}
	ss.keepBufferedLocked(func(r *kgo.Record) bool {
		return ss.parts[topicPartition{r.Topic, r.Partition}] != nil
	})
}

// repauseLocked pauses again the partitions of assigned whose pause a
// revoke or loss of this rebalance dropped, and returns the pauses dropped
// for good, to be lifted in franz-go. ss.mu is held.
func (ss *session) repauseLocked(assigned map[string][]int32) map[string][]int32 {
	if len(ss.ctl.pausedGone) == 0 {
		return nil
	}
	for t, ps := range assigned {
		for _, p := range ps {
			tp := topicPartition{t, p}
			if ss.ctl.pausedGone[tp] {
				delete(ss.ctl.pausedGone, tp)
				if ss.ctl.paused == nil {
					ss.ctl.paused = make(map[topicPartition]bool)
				}
				ss.ctl.paused[tp] = true
			}
		}
	}
	lift := partitionsOf(maps.Keys(ss.ctl.pausedGone))
	clear(ss.ctl.pausedGone)
	return lift
}

// partitionsOf returns tps by topic, each list sorted.
func partitionsOf(tps func(func(topicPartition) bool)) map[string][]int32 {
	out := make(map[string][]int32)
	for tp := range tps {
		out[tp.topic] = append(out[tp.topic], tp.partition)
	}
	for _, ps := range out {
		slices.Sort(ps)
	}
	return out
}

// Seek sets where the stream reads next in the given partitions: each
// partition's next record is the one at Offset (or, past the end, what the
// ResetOffset policy says). It takes effect at the next record boundary
// (with PartitionConcurrency or KeyConcurrency, once the records in the
// lanes have finished): records already fetched for these partitions are
// dropped, and the record in hand, if the body finishes it, counts as
// processed as usual.
//
// Commits then follow the new position, also backwards: the next commit
// of a partition sought commits Offset, or what was processed after it,
// even below what was committed before. That is what a replay asks for;
// seeking back and closing at once makes the group read the records again
// after a restart. A commit already in progress when the seek takes effect
// may land after it.
//
// Seek applies to partitions this member owns (with a group) or reads
// (without one, any partition of the stream's topics); the others are
// ignored with a logged warning, as are partitions revoked before the seek
// takes effect. A negative offset is an error wrapping ErrInvalidOption.
// Seek does no I/O; it returns ErrNotOpen before Open, ErrClosed after
// Close, and ctx's error if ctx is done. It is safe to call from any
// goroutine, including the loop body, a handler and a rebalance listener.
func (s *Stream[T]) Seek(ctx context.Context, offsets ...TopicPartitionOffset) error {
	if s.cfg.shareGroup != "" {
		return s.errShareSeek("Seek")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ss, err := s.openControlSession()
	if err != nil {
		return err
	}
	for _, o := range offsets {
		if o.Offset < 0 {
			return fmt.Errorf("%w: Seek: topic %q partition %d: negative offset %d", ErrInvalidOption, o.Topic, o.Partition, o.Offset)
		}
	}
	ss.seek(offsets)
	return nil
}

// SeekToTime seeks every partition this member owns (without a group,
// every partition of the stream's topics) to its first record with a
// timestamp at or after t, or to its end where there is none, as Kafka's
// ListOffsets by time finds them. It looks the offsets up within ctx, then
// behaves as Seek.
func (s *Stream[T]) SeekToTime(ctx context.Context, t time.Time) error {
	if s.cfg.shareGroup != "" {
		return s.errShareSeek("SeekToTime")
	}
	ss, err := s.openControlSession()
	if err != nil {
		return err
	}
	offs, err := ss.offsetsAtTime(ctx, t)
	if err != nil {
		return fmt.Errorf("kstream: stream %q: SeekToTime %v: %w", s.name, t, err)
	}
	ss.seek(offs)
	return nil
}

// openControlSession returns the open session, or the session being
// opened, or why there is none.
func (s *Stream[T]) openControlSession() (*session, error) {
	s.mu.Lock()
	ss := s.currentSessionLocked()
	s.mu.Unlock()
	if ss != nil {
		return ss, nil
	}
	return s.session()
}

// seek records seeks of the partitions this member may seek, to be
// applied at the range's next record boundary (or at a give-way), and
// ends a poll in progress so that they need not wait for new records.
func (ss *session) seek(offsets []TopicPartitionOffset) {
	if ss.closing.Load() {
		return
	}
	ss.lockFold()
	defer ss.mu.Unlock()
	for _, o := range offsets {
		tp := topicPartition{o.Topic, o.Partition}
		if !ss.ownsLocked(tp) {
			ss.log.Warn("seek ignored: partition not owned by this member", "topic", o.Topic, "partition", o.Partition, "offset", o.Offset)
			continue
		}
		if ss.ctl.seeks == nil {
			ss.ctl.seeks = make(map[topicPartition]int64)
		}
		ss.ctl.seeks[tp] = o.Offset
		ss.ctl.seekPending.Store(true)
	}
	ss.wakeLocked()
}

// offsetsAtTime returns, for each partition this member owns (or reads,
// without a group), the offset of its first record at or after t.
func (ss *session) offsetsAtTime(ctx context.Context, t time.Time) ([]TopicPartitionOffset, error) {
	ss.lockFold()
	cl := ss.client() // read under ss.mu: see openSession
	var topics []string
	if ss.group || ss.cfg.pattern != "" {
		for tp := range ss.parts {
			if !slices.Contains(topics, tp.topic) {
				topics = append(topics, tp.topic)
			}
		}
	} else {
		topics = ss.cfg.topics
	}
	ss.mu.Unlock()
	if len(topics) == 0 {
		return nil, nil
	}
	listed, err := kadm.NewClient(cl).ListOffsetsAfterMilli(ctx, t.UnixMilli(), topics...)
	if err != nil {
		return nil, err
	}
	var out []TopicPartitionOffset
	ss.lockFold()
	defer ss.mu.Unlock()
	var errs []error
	listed.Each(func(l kadm.ListedOffset) {
		tp := topicPartition{l.Topic, l.Partition}
		if !ss.ownsLocked(tp) || (ss.group && ss.parts[tp] == nil) {
			return
		}
		if l.Err != nil {
			errs = append(errs, fmt.Errorf("topic %q partition %d: %w", l.Topic, l.Partition, l.Err))
			return
		}
		out = append(out, TopicPartitionOffset{Topic: l.Topic, Partition: l.Partition, Offset: l.Offset})
	})
	return out, errors.Join(errs...)
}

// seekReadyLocked reports whether the seeks recorded may be applied now:
// franz-go asks that SetOffsets be called while no rebalance can run, that
// is, between a poll's return and the next AllowRebalance. ss.mu is held.
func (ss *session) seekReadyLocked() bool {
	return ss.ctl.seekPending.Load() && (!ss.group || ss.ctl.blocked)
}

// applySeeksLocked applies the seeks recorded: see takeSeeksLocked. ss.mu
// is held, and released while franz-go's offsets are set.
func (ss *session) applySeeksLocked() {
	set := make(map[string]map[int32]kgo.EpochOffset)
	ss.takeSeeksLocked(set)
	if len(set) == 0 {
		return
	}
	ss.mu.Unlock()
	ss.client().SetOffsets(set)
	ss.lockFold()
}

// takeSeeksLocked drops the buffered and kept records of each partition
// with a seek recorded, moves its state to the new position
// (partState.seekTo) and adds the position to set, for SetOffsets. ss.mu is
// held.
func (ss *session) takeSeeksLocked(set map[string]map[int32]kgo.EpochOffset) {
	seeks := ss.ctl.seeks
	ss.ctl.seeks = nil
	ss.ctl.seekPending.Store(false)
	for tp, off := range seeks {
		ps := ss.partLocked(tp.topic, tp.partition)
		if ps == nil {
			ss.log.Warn("seek ignored: partition revoked before the seek took effect", "topic", tp.topic, "partition", tp.partition, "offset", off)
			continue
		}
		ss.dropBufferedLocked(tp)
		delete(ss.initialLeft, tp)
		ps.seekTo(off)
		ss.reopenEndLocked(ps)
		addOffset(set, tp, kgo.EpochOffset{Epoch: -1, Offset: off})
		ss.log.Info("seek applied", "topic", tp.topic, "partition", tp.partition, "offset", off)
	}
}

// dropBufferedLocked drops the records of tp fetched and not yielded, in
// the buffer and kept for a Resume. ss.mu is held.
func (ss *session) dropBufferedLocked(tp topicPartition) {
	delete(ss.ctl.held, tp)
	ss.keepBufferedLocked(func(r *kgo.Record) bool {
		return r.Partition != tp.partition || r.Topic != tp.topic
	})
}

// keepBufferedLocked keeps, of the records buffered, those keep accepts, in
// a new array: a run's iterator may still read the old one (run.go). ss.mu
// is held.
func (ss *session) keepBufferedLocked(keep func(*kgo.Record) bool) {
	ss.endRunLocked()
	if ss.pos >= len(ss.buf) {
		return
	}
	kept := make([]*kgo.Record, 0, len(ss.buf)-ss.pos)
	for _, r := range ss.buf[ss.pos:] {
		if keep(r) {
			kept = append(kept, r)
		}
	}
	ss.buf, ss.pos = kept, 0
}
