package kstream

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// markPushInterval bounds how long a processed record's mark waits in the
// stream before franz-go's autocommit can see it. Marks are also pushed at
// every poll, at the end of every range, before every commit and revoke.
const markPushInterval = 500 * time.Millisecond

// partState is what the stream knows of one partition it owns; a partition
// this member does not own has none. Offsets are "next offset" values: the
// offset after the last record of that kind, 0 when there is none.
//
// The offset arithmetic of commits and rewinds lives in its methods, which
// need no client (offsets_internal_test.go tests them):
//
//	base <= lowest unprocessed <= yielded
//	processed <= yielded (a commit never covers a record not yielded)
//	pushed <= processed (marks given to franz-go)
type partState struct {
	epoch     int32 // leader epoch of the last processed record
	yielded   int64
	processed int64
	pushed    int64 // processed as last given to franz-go's marks
	committed int64 // committed offset as this member last knew it; -1 after a seek
	highwater int64

	// base is where this member's yielding of the partition began: the
	// first record it yielded (or, after a rewind below it, the rewind
	// target). Every record below base was processed or is not this
	// member's to process.
	base int64

	committedKnown bool               // the group had a commit, or this member made one
	processedCtr   prometheus.Counter // nil without metrics

	// StopAtEnd (control_end.go): the end offset, whether there is one,
	// whether it is still to be reached; how far the records fetched and
	// not buffered (control records, records past the end) go, and the
	// records buffered.
	end, skipTo, fetchedData int64
	hasEnd, ending           bool

	em *emitState // the partition's emits (emit.go); nil before its first
}

// noteYield records that r is being yielded.
func (ps *partState) noteYield(r *kgo.Record) {
	if ps.yielded == 0 {
		ps.base = r.Offset
	}
	if r.Offset+1 > ps.yielded {
		ps.yielded = r.Offset + 1
	}
}

// lowestUnprocessed returns the offset of the first record yielded but not
// processed, if any. Records finish in offset order within a partition (or,
// with KeyConcurrency, are marked only up to the lowest unfinished one), so
// it is the processed watermark, or base when nothing after base is.
func (ps *partState) lowestUnprocessed() (int64, bool) {
	return ps.lowestFrom(ps.processed)
}

// lowestUnfinished is lowestUnprocessed for a rewind: the first record no
// body finished. A record finished whose emits are outstanding is not
// processed (its commit waits) but is not handled again either.
func (ps *partState) lowestUnfinished() (int64, bool) {
	if ps.em != nil {
		// processed passes finished only when Commit covered the record
		// in hand: that record is not handled again either.
		return ps.lowestFrom(max(ps.em.finished, ps.processed))
	}
	return ps.lowestUnprocessed()
}

func (ps *partState) lowestFrom(mark int64) (int64, bool) {
	low := max(mark, ps.base)
	if ps.yielded <= low {
		return 0, false
	}
	return low, true
}

// settled is the furthest offset a commit may cover without passing a
// record that no body finished: the lowest unprocessed record, or, when
// every yielded record is processed, the end of what was yielded.
func (ps *partState) settled() int64 {
	if low, ok := ps.lowestUnprocessed(); ok {
		return low
	}
	return ps.capEmits(ps.yielded)
}

// capEmits returns off, or the partition's lowest source record with
// emits outstanding or failed if that is lower: no commit passes it.
func (ps *partState) capEmits(off int64) int64 {
	if ps.em != nil {
		if c, ok := ps.em.capOffset(); ok && c < off {
			return c
		}
	}
	return off
}

// rewindTo records that the partition will be read again from off: records
// at or after it were given back (a break, a rebalance's give-way, a decoder
// that was unavailable), so they count as not yielded. Records below off
// that are yielded and unfinished (running on a lane) stay so: base only
// moves down.
func (ps *partState) rewindTo(off int64) {
	ps.base = min(ps.base, off)
	ps.yielded = min(ps.yielded, off)
}

// seekTo moves the partition to off, as Seek asked: every record before
// off counts as processed and pushed, none after it as yielded, and the
// last commit as unknown, so that the next commit commits off or beyond
// even if that is below what was committed before.
func (ps *partState) seekTo(off int64) {
	ps.base, ps.yielded, ps.processed, ps.pushed = off, off, off, off
	ps.epoch = -1
	ps.committed, ps.committedKnown = -1, false
	if ps.em != nil {
		ps.em = nil // acknowledgements of emits before the seek find no state
	}
}

// rewindTarget is where a partition resumes after a give-way: its lowest
// unprocessed record, or its first buffered (polled, not yielded) record,
// whichever comes first. ok is false when the partition needs no rewind:
// nothing unprocessed and nothing buffered.
func (ps *partState) rewindTarget(firstBuffered int64, hasBuffered bool) (off int64, ok bool) {
	low, hasLow := ps.lowestUnfinished()
	switch {
	case hasLow && hasBuffered:
		return min(low, firstBuffered), true
	case hasLow:
		return low, true
	case hasBuffered:
		return firstBuffered, true
	}
	return 0, false
}

func (ss *session) markLocked(r *kgo.Record) {
	if ss.share {
		// A share stream accepts what a body finished with, unless
		// Ack decided first, once what it emitted is acknowledged
		// (share.go).
		ss.shareAcceptLocked(r)
		return
	}
	ps := ss.cachedPartLocked(r.Topic, r.Partition) // inlined: this runs per record
	if ps == nil {
		ps = ss.partLocked(r.Topic, r.Partition)
	}
	if ps == nil {
		return
	}
	if ps.em != nil {
		ss.markEmittedLocked(ps, r)
	} else if r.Offset+1 > ps.processed {
		ps.processed = r.Offset + 1
		ps.epoch = r.LeaderEpoch
		ss.dirty = true
		if ps.ending {
			ss.checkEndLocked(ps)
		}
	}
	if ps.processedCtr != nil {
		ps.processedCtr.Inc()
	}
}

// stopPushTimer stops the mark-push timer for Close. Under pushMu, so that
// a push running meanwhile, which re-arms the timer unless the session is
// closing, either finished before (and Stop undoes its re-arming) or sees
// closing.
func (ss *session) stopPushTimer() {
	ss.pushMu.Lock()
	defer ss.pushMu.Unlock()
	ss.pushTimer.Stop()
}

func (ss *session) newPartState(topic string) *partState {
	ps := &partState{}
	if ss.m != nil {
		ps.processedCtr = ss.m.processed.WithLabelValues(ss.name, topic)
	}
	return ps
}

// pushMarks hands processed offsets to franz-go, whose autocommit commits
// them. Only the default (at-least-once) mode marks.
func (ss *session) pushMarks(cl *kgo.Client) {
	if !ss.group || ss.manual || ss.txn != nil {
		return
	}
	ss.pushMu.Lock()
	defer ss.pushMu.Unlock()
	ss.lockFold()
	if !ss.dirty {
		ss.mu.Unlock()
		return
	}
	for _, m := range ss.scratch {
		clear(m)
	}
	for tp, ps := range ss.parts {
		if ps.processed <= ps.pushed {
			continue
		}
		m := ss.scratch[tp.topic]
		if m == nil {
			m = make(map[int32]kgo.EpochOffset)
			ss.scratch[tp.topic] = m
		}
		m[tp.partition] = kgo.EpochOffset{Epoch: ps.epoch, Offset: ps.processed}
		ps.pushed = ps.processed
	}
	ss.dirty = false
	ss.mu.Unlock()
	ss.pushDue.Store(false)
	if !ss.closing.Load() {
		// Close stops the timer; its own final push must not re-arm it.
		ss.pushTimer.Reset(markPushInterval)
	}
	cl.MarkCommitOffsets(ss.scratch)
}
