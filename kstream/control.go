// Consumer control: pausing and resuming partitions, seeking, and the end of
// a bounded stream. Every change is recorded under session.mu and takes
// effect at the ranging goroutine's next record boundary (popLocked).

package kstream

import (
	"context"
	"maps"
	"slices"

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
	// partition, or a seek, do not wait for new records to arrive; woken
	// says that it did.
	wake  context.CancelFunc
	woken bool

	// cl is the session's client, for calls from other goroutines: a
	// listener can run before openSession has stored session.cl.
	cl *kgo.Client
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
	ss.mu.Lock()
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
	ss.mu.Lock()
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
			add[t] = append(add[t], p)
		}
	}
	cl := ss.ctl.cl
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
	ss.mu.Lock()
	del := make(map[string][]int32)
	for t, ps := range partitions {
		for _, p := range ps {
			tp := topicPartition{t, p}
			if !ss.ctl.paused[tp] {
				continue
			}
			delete(ss.ctl.paused, tp)
			del[t] = append(del[t], p)
			if held := ss.ctl.held[tp]; len(held) > 0 {
				delete(ss.ctl.held, tp)
				ss.insertHeldLocked(held)
			}
		}
	}
	ss.wakeLocked()
	cl := ss.ctl.cl
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

// wakeLocked ends the poll in progress, if any, so that the range looks at
// what changed. ss.mu is held.
func (ss *session) wakeLocked() {
	if ss.ctl.wake != nil {
		ss.ctl.wake()
		ss.ctl.woken = true
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
	if ss.pos < len(ss.buf) {
		kept := ss.buf[:ss.pos]
		for _, r := range ss.buf[ss.pos:] {
			if ss.parts[topicPartition{r.Topic, r.Partition}] != nil {
				kept = append(kept, r)
			}
		}
		clear(ss.buf[len(kept):])
		ss.buf = kept
	}
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
