// The end of a bounded stream (StopAtEnd) and where StartAt starts: the
// offsets looked up when the stream opens (without a group) or when
// partitions are assigned (with one), and the per-partition bookkeeping
// that tells when every partition has been consumed up to its end.

package kstream

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// bounds is the part of control that StopAtEnd and StartAt use. It is
// guarded by session.mu.
type bounds struct {
	bounded bool // StopAtEnd
	// ready says that the partitions read are known: Open captured the
	// end offsets (without a group), or a first assignment came.
	ready bool
	// left counts the partitions whose end is not reached yet
	// (partState.ending).
	left int
	// lookup is what the last assignment's lookups found, for
	// adjustOffsets, which runs after onAssigned.
	lookup *offsetLookup
}

// offsetLookup holds the offsets listed for a set of topics: log start,
// end (high watermark or last stable offset) and, with StartAt, the first
// offset at or after its time.
type offsetLookup struct {
	start, end, at kadm.ListedOffsets
}

// reachedEndLocked reports whether a bounded stream has consumed every
// partition it reads up to its end. ss.mu is held.
func (ss *session) reachedEndLocked() bool {
	return ss.ctl.b.bounded && ss.ctl.b.ready && ss.ctl.b.left == 0
}

// reachedEnd reports whether a bounded stream has consumed every partition
// it reads up to its end.
func (ss *session) reachedEnd() bool {
	ss.lockFold()
	defer ss.mu.Unlock()
	return ss.reachedEndLocked()
}

// consumed is how far the partition has been consumed: the processed
// watermark or, once every record buffered for it has been processed, the
// offset after the records the stream fetched but did not buffer (control
// records of transactions, records past the end), so that a partition
// whose last records are transaction markers still reaches its end.
func (ps *partState) consumed() int64 {
	if ps.skipTo > ps.processed && ps.processed >= ps.fetchedData {
		return ps.skipTo
	}
	return ps.processed
}

// setEndLocked gives ps the end offset end, from where it starts, start
// (-1: not known yet, adjustOffsets tells). ss.mu is held.
func (ss *session) setEndLocked(ps *partState, end, start int64) {
	ps.end, ps.hasEnd = end, true
	if !ps.ending {
		ps.ending = true
		ss.ctl.b.left++
	}
	if start >= 0 {
		ss.startedAtLocked(ps, start)
	}
}

// startedAtLocked notes that ps starts at start: a partition with nothing
// from there to its end is done at once. ss.mu is held.
func (ss *session) startedAtLocked(ps *partState, start int64) {
	ps.skipTo = max(ps.skipTo, start)
	ss.checkEndLocked(ps)
}

// checkEndLocked ends ps's bound once it has been consumed up to its end.
// ss.mu is held.
func (ss *session) checkEndLocked(ps *partState) {
	if ps.ending && ps.consumed() >= ps.end {
		ps.ending = false
		ss.ctl.b.left--
		if ss.reachedEndLocked() {
			ss.wakeLocked()
		}
	}
}

// reopenEndLocked makes ps unfinished again after a seek before its end.
// ss.mu is held.
func (ss *session) reopenEndLocked(ps *partState) {
	if !ps.hasEnd {
		return
	}
	ps.skipTo, ps.fetchedData = 0, 0
	if !ps.ending && ps.processed < ps.end {
		ps.ending = true
		ss.ctl.b.left++
	}
	ss.checkEndLocked(ps)
}

// dropEndLocked forgets ps's bound, for a partition revoked or lost. ss.mu
// is held.
func (ss *session) dropEndLocked(ps *partState) {
	if ps.ending {
		ps.ending = false
		ss.ctl.b.left--
	}
}

// bufferLocked appends the records of one fetched partition to the buffer.
// A bounded stream leaves out control records (it keeps them from franz-go
// only to see its position pass them) and records at or past the end,
// noting how far they go. ss.mu is held.
func (ss *session) bufferLocked(ps *partState, recs []*kgo.Record) {
	if ss.share {
		ss.shareTrackLocked(recs) // held until acknowledged (share.go)
	}
	if !ss.ctl.b.bounded {
		ss.buf = append(ss.buf, recs...)
		return
	}
	if boundedClean(ps, recs) {
		// The common case, checked in a tight loop: no marker, nothing
		// past the end.
		if len(recs) > 0 {
			ps.fetchedData = max(ps.fetchedData, recs[len(recs)-1].Offset+1)
		}
		ss.buf = append(ss.buf, recs...)
		ss.checkEndLocked(ps)
		return
	}
	for _, r := range recs {
		if r.Attrs.IsControl() || (ps.hasEnd && r.Offset >= ps.end) {
			ps.skipTo = max(ps.skipTo, r.Offset+1)
			continue
		}
		ps.fetchedData = max(ps.fetchedData, r.Offset+1)
		ss.buf = append(ss.buf, r)
	}
	ss.checkEndLocked(ps)
}

// boundedClean reports whether recs, a partition's records in offset order,
// are all data records before the partition's end.
func boundedClean(ps *partState, recs []*kgo.Record) bool {
	if len(recs) > 0 && ps.hasEnd && recs[len(recs)-1].Offset >= ps.end {
		return false
	}
	for _, r := range recs {
		if r.Attrs.IsControl() {
			return false
		}
	}
	return true
}

// readCommitted reports whether cl reads with the read_committed isolation
// level.
func readCommitted(cl *kgo.Client) bool {
	v, _ := cl.OptValue(kgo.FetchIsolationLevel).(int8)
	return v == 1
}

// lookupOffsets lists the offsets the bounds and StartAt need for topics,
// retrying within ctx for up to lookupTimeout.
func (ss *session) lookupOffsets(ctx context.Context, cl *kgo.Client, topics []string) (*offsetLookup, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	adm := kadm.NewClient(cl)
	var lk offsetLookup
	var err error
	for attempt := 0; ; attempt++ {
		lk, err = ss.lookupOnce(ctx, adm, cl, topics)
		if err == nil || ctx.Err() != nil {
			break
		}
		ss.log.Warn("listing offsets failed, retrying", "topics", topics, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, err
	}
	return &lk, nil
}

// lookupTimeout bounds the offset lookups of StopAtEnd and StartAt.
const lookupTimeout = 30 * time.Second

func (ss *session) lookupOnce(ctx context.Context, adm *kadm.Client, cl *kgo.Client, topics []string) (offsetLookup, error) {
	var lk offsetLookup
	var err error
	check := func(l kadm.ListedOffsets, e error) (kadm.ListedOffsets, error) {
		if e != nil {
			return nil, e
		}
		return l, l.Error()
	}
	if ss.ctl.b.bounded {
		if lk.start, err = check(adm.ListStartOffsets(ctx, topics...)); err != nil {
			return lk, fmt.Errorf("listing start offsets: %w", err)
		}
		if readCommitted(cl) {
			lk.end, err = check(adm.ListCommittedOffsets(ctx, topics...))
		} else {
			lk.end, err = check(adm.ListEndOffsets(ctx, topics...))
		}
		if err != nil {
			return lk, fmt.Errorf("listing end offsets: %w", err)
		}
	}
	if t := ss.cfg.control.startAt; !t.IsZero() {
		if lk.at, err = check(adm.ListOffsetsAfterMilli(ctx, t.UnixMilli(), topics...)); err != nil {
			return lk, fmt.Errorf("listing offsets at %v: %w", t, err)
		}
	}
	return lk, nil
}

// startOf returns where a partition without a committed offset starts:
// its initial offset, else the offset at StartAt's time, else what the
// reset policy says. -1 when the lookup does not say.
func (ss *session) startOf(lk *offsetLookup, tp topicPartition) int64 {
	if off, ok := ss.initialLeft[tp]; ok {
		return off
	}
	get := func(l kadm.ListedOffsets) int64 {
		if o, ok := l.Lookup(tp.topic, tp.partition); ok && o.Err == nil && o.Offset >= 0 {
			return o.Offset
		}
		return -1
	}
	if !ss.cfg.control.startAt.IsZero() {
		if off := get(lk.at); off >= 0 {
			return off
		}
		return get(lk.end)
	}
	if ss.cfg.reset == Latest {
		return get(lk.end)
	}
	return get(lk.start)
}

// captureBounds looks the ends of a stream without a group up when it
// opens: every partition of its topics gets a state and an end.
func (ss *session) captureBounds(ctx context.Context) error {
	lk, err := ss.lookupOffsets(ctx, ss.client(), ss.cfg.topics)
	if err != nil {
		return fmt.Errorf("StopAtEnd: %w", err)
	}
	ss.lockFold()
	defer ss.mu.Unlock()
	var missing []string
	for _, t := range ss.cfg.topics {
		if len(lk.end[t]) == 0 {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("StopAtEnd: topics %q have no partitions", missing)
	}
	lk.end.Each(func(o kadm.ListedOffset) {
		tp := topicPartition{o.Topic, o.Partition}
		ps := ss.partLocked(o.Topic, o.Partition)
		ss.setEndLocked(ps, o.Offset, ss.startOf(lk, tp))
	})
	ss.ctl.b.ready = true
	ss.log.Info("stream bounded: end offsets captured", "ends", endsForLog(lk.end))
	return nil
}

// boundAssigned looks up the ends (and StartAt's offsets) of partitions
// just assigned; adjustOffsets, which runs next, says where they start.
func (ss *session) boundAssigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	if !ss.ctl.b.bounded && ss.cfg.control.startAt.IsZero() {
		return
	}
	var topics []string
	for t, ps := range assigned {
		if len(ps) > 0 {
			topics = append(topics, t)
		}
	}
	var lk *offsetLookup
	if len(topics) > 0 {
		var err error
		if lk, err = ss.lookupOffsets(ctx, cl, topics); err != nil {
			ss.log.Error("listing offsets for StopAtEnd or StartAt failed: the partitions start from their committed offset or the reset policy, and a bounded stream does not end while it owns them", "partitions", assigned, "err", err)
		}
	}
	ss.lockFold()
	defer ss.mu.Unlock()
	ss.ctl.b.lookup = lk
	if !ss.ctl.b.bounded {
		return
	}
	for t, parts := range assigned {
		for _, p := range parts {
			ps := ss.parts[topicPartition{t, p}]
			if ps == nil {
				continue
			}
			// Without its end, a partition is never done: ending early
			// would skip its records silently.
			end := int64(math.MaxInt64)
			if lk != nil {
				if o, ok := lk.end.Lookup(t, p); ok && o.Err == nil {
					end = o.Offset
				}
			}
			ss.setEndLocked(ps, end, -1)
		}
	}
	if lk != nil {
		ss.log.Info("partitions bounded: end offsets captured", "ends", endsForLog(lk.end))
	}
	ss.ctl.b.ready = true
	if ss.reachedEndLocked() { // assigned nothing
		ss.wakeLocked()
	}
}

// adjustStartLocked applies StartAt to a partition assigned without a committed
// offset, and tells a bounded partition where it starts. ss.mu is held.
func (ss *session) adjustStartLocked(tp topicPartition, off kgo.Offset) (kgo.Offset, bool) {
	lk := ss.ctl.b.lookup
	ps := ss.parts[tp]
	committed := off.EpochOffset().Offset
	changed := false
	start := committed
	if committed < 0 { // no commit: the reset offset
		start = -1
		if lk != nil {
			start = ss.startOf(lk, tp)
		}
		if !ss.cfg.control.startAt.IsZero() {
			if _, initial := ss.initialLeft[tp]; !initial {
				changed = true
				if start >= 0 {
					off = kgo.NewOffset().At(start).WithEpoch(-1)
				} else {
					off = kgo.NewOffset().AfterMilli(ss.cfg.control.startAt.UnixMilli())
				}
				ss.log.Info("StartAt applied", "topic", tp.topic, "partition", tp.partition, "offset", start)
			}
		}
	} else if lk != nil {
		// A committed offset that retention deleted resets.
		if o, ok := lk.start.Lookup(tp.topic, tp.partition); ok && o.Err == nil && committed < o.Offset {
			start = o.Offset
			if ss.cfg.reset == Latest {
				start = -1
				if e, ok := lk.end.Lookup(tp.topic, tp.partition); ok {
					start = e.Offset
				}
			}
		}
	}
	if o, ok := ss.initialLeft[tp]; ok {
		start = o
	}
	if ps != nil && ps.ending && start >= 0 {
		ss.startedAtLocked(ps, start)
	}
	return off, changed
}

func endsForLog(l kadm.ListedOffsets) map[string]map[int32]int64 {
	out := make(map[string]map[int32]int64)
	l.Each(func(o kadm.ListedOffset) {
		if out[o.Topic] == nil {
			out[o.Topic] = make(map[int32]int64)
		}
		out[o.Topic][o.Partition] = o.Offset
	})
	return out
}
