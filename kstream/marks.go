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

// partState is what the stream knows of one partition it owns. Offsets are
// "next offset" values: the offset after the last record of that kind, 0
// when there is none.
type partState struct {
	owned     bool
	epoch     int32 // leader epoch of the last processed record
	yielded   int64
	processed int64
	pushed    int64 // processed as last given to franz-go's marks
	committed int64 // committed offset as this member last knew it
	highwater int64

	committedKnown bool               // the group had a commit, or this member made one
	processedCtr   prometheus.Counter // nil without metrics

	// firstYielded is the offset of the first record yielded in this
	// session (valid once yielded > 0). abandoned, when hasAbandoned, is the
	// lowest record a range left without finishing (break, return, panic):
	// commits stop below it until a record at or after it is processed.
	firstYielded int64
	abandoned    int64
	hasAbandoned bool
}

// noteYield records that r is being yielded.
func (ps *partState) noteYield(r *kgo.Record) {
	if ps.yielded == 0 {
		ps.firstYielded = r.Offset
	}
	if r.Offset+1 > ps.yielded {
		ps.yielded = r.Offset + 1
	}
}

// lowestUnprocessed returns the offset of the first record yielded but not
// processed, if any.
func (ps *partState) lowestUnprocessed() (int64, bool) {
	if ps.yielded <= ps.processed || ps.yielded == 0 {
		return 0, false
	}
	if ps.processed > ps.firstYielded {
		return ps.processed, true
	}
	return ps.firstYielded, true
}

func (ss *session) markLocked(r *kgo.Record) {
	ps := ss.partLocked(r.Topic, r.Partition)
	if ps == nil || !ps.owned {
		return
	}
	if r.Offset+1 > ps.processed {
		ps.processed = r.Offset + 1
		ps.epoch = r.LeaderEpoch
		ss.dirty = true
	}
	if ps.hasAbandoned && r.Offset >= ps.abandoned {
		ps.hasAbandoned = false
	}
	if ps.processedCtr != nil {
		ps.processedCtr.Inc()
	}
}

func (ss *session) newPartState(topic string) *partState {
	ps := &partState{owned: true}
	if ss.m != nil {
		ps.processedCtr = ss.m.processed.WithLabelValues(ss.name, topic)
	}
	return ps
}

// pushMarks hands processed offsets to franz-go, whose autocommit commits
// them. Only the default (at-least-once) mode marks.
func (ss *session) pushMarks(cl *kgo.Client) {
	if !ss.group || ss.manual {
		return
	}
	ss.pushMu.Lock()
	defer ss.pushMu.Unlock()
	ss.mu.Lock()
	if !ss.dirty {
		ss.mu.Unlock()
		return
	}
	for _, m := range ss.scratch {
		clear(m)
	}
	for tp, ps := range ss.parts {
		if !ps.owned || ps.processed <= ps.pushed {
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
	ss.pushTimer.Reset(markPushInterval)
	cl.MarkCommitOffsets(ss.scratch)
}
