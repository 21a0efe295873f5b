package kstream

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// commitTargetLocked is the offset a commit of everything yielded commits
// for a partition. Commit from a serial range (explicit) covers every
// record yielded so far, the one in the body included. Everywhere else it
// stops at the partition's lowest unprocessed record (partState.settled):
// for a listener, whose commit must leave a failed or abandoned record to
// the next owner; with PartitionConcurrency or KeyConcurrency, whose
// records finish out of order; and while the stream closes, when the body
// holding a record did not finish it.
func (ss *session) commitTargetLocked(ps *partState, explicit bool) int64 {
	if explicit && !ss.outOfOrder && !ss.closing.Load() {
		return ps.capEmits(ps.yielded)
	}
	return ps.settled()
}

// commitYielded commits every record yielded so far on the partitions this
// member owns, as commitTargetLocked says; explicit is false for a
// listener's commit.
func (ss *session) commitYielded(ctx context.Context, explicit bool) error {
	if err := ss.commitAllowed(ctx); err != nil {
		return err
	}
	ss.commitMu.Lock()
	defer ss.commitMu.Unlock()
	ss.lockFold()
	offs := make(map[string]map[int32]kgo.EpochOffset)
	for tp, ps := range ss.parts {
		target := ss.commitTargetLocked(ps, explicit)
		if target <= ps.committed {
			continue
		}
		addOffset(offs, tp, kgo.EpochOffset{Epoch: ps.epoch, Offset: target})
	}
	ss.mu.Unlock()
	return ss.commitLocked(ctx, offs)
}

// commitRecords commits, per partition, up to and including the latest of
// recs, on the partitions this member owns.
func (ss *session) commitRecords(ctx context.Context, recs []*kgo.Record) error {
	if err := ss.commitAllowed(ctx); err != nil {
		return err
	}
	ss.commitMu.Lock()
	defer ss.commitMu.Unlock()
	ss.lockFold()
	offs := make(map[string]map[int32]kgo.EpochOffset)
	for _, r := range recs {
		if r == nil {
			continue
		}
		tp := topicPartition{r.Topic, r.Partition}
		ps := ss.parts[tp]
		if ps == nil || r.Offset+1 > ps.yielded {
			continue // another member's partition, or not yielded yet
		}
		off := r.Offset + 1
		if ss.outOfOrder {
			// Never past a record still running, or failed.
			off = min(off, ps.settled())
		}
		off = ps.capEmits(off) // nor past one whose emits are not acknowledged
		if off <= ps.committed {
			continue
		}
		epoch := r.LeaderEpoch
		if off != r.Offset+1 {
			epoch = -1
		}
		if cur, ok := offs[r.Topic][r.Partition]; ok && cur.Offset >= off {
			continue
		}
		addOffset(offs, tp, kgo.EpochOffset{Epoch: epoch, Offset: off})
	}
	ss.mu.Unlock()
	return ss.commitLocked(ctx, offs)
}

// commitAllowed returns why the session cannot commit, if it cannot, and
// otherwise waits for the acknowledgements of the records emitted so far,
// which the commit may cover.
func (ss *session) commitAllowed(ctx context.Context) error {
	switch {
	case !ss.group:
		return ErrNoGroup
	case ss.txn != nil:
		return errCommitUnderExactlyOnce
	}
	return ss.awaitEmits(ctx)
}

// commitLocked commits offs synchronously. In the default mode the offsets
// become marks (franz-go never moves a mark backwards) and all marks are
// committed; with ManualCommit they are committed as given, after filtering
// to owned partitions and offsets beyond the last commit. commitMu is held.
func (ss *session) commitLocked(ctx context.Context, offs map[string]map[int32]kgo.EpochOffset) error {
	if !ss.manual {
		ss.lockFold()
		for t, m := range offs {
			for p, eo := range m {
				if ps := ss.parts[topicPartition{t, p}]; ps != nil && eo.Offset > ps.processed {
					ps.processed, ps.epoch = eo.Offset, eo.Epoch
					ss.dirty = true
				}
			}
		}
		ss.mu.Unlock()
		// commitMarked notes what it committed.
		if err := ss.commitMarked(ctx, ss.client()); err != nil {
			return fmt.Errorf("kstream: stream %q: commit: %w", ss.name, err)
		}
		return nil
	}
	if len(offs) == 0 {
		return nil
	}
	var rerr error
	ss.client().CommitOffsetsSync(ctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		rerr = err
		if rerr == nil {
			rerr = commitResponseErr(resp)
		}
	})
	ss.noteCommit(rerr)
	if rerr != nil {
		return fmt.Errorf("kstream: stream %q: commit: %w", ss.name, rerr)
	}
	ss.noteCommitted(offs)
	return nil
}

// commitMarked pushes the marks and commits them synchronously (the default
// mode's commit before a revoke, on Close and for Commit), counting it in
// the metrics when there was something to commit. It returns the commit's
// error. cl is given because a revoke can run before openSession stored
// the client.
func (ss *session) commitMarked(ctx context.Context, cl *kgo.Client) error {
	ss.pushMarks(cl)
	ss.lockFold()
	pending := false
	for _, ps := range ss.parts {
		if ps.pushed > ps.committed {
			pending = true
			break
		}
	}
	ss.mu.Unlock()
	err := cl.CommitMarkedOffsets(ctx)
	if pending || err != nil {
		ss.noteCommit(err)
	}
	if err == nil {
		ss.lockFold()
		for _, ps := range ss.parts {
			if ps.pushed > ps.committed {
				ps.committed, ps.committedKnown = ps.pushed, true
			}
		}
		ss.mu.Unlock()
	}
	return err
}

func (ss *session) noteCommitted(offs map[string]map[int32]kgo.EpochOffset) {
	ss.lockFold()
	defer ss.mu.Unlock()
	for t, m := range offs {
		for p, eo := range m {
			if ps := ss.parts[topicPartition{t, p}]; ps != nil && eo.Offset > ps.committed {
				ps.committed, ps.committedKnown = eo.Offset, true
			}
		}
	}
}

// commitResponseErr returns the first partition error of a commit response.
func commitResponseErr(resp *kmsg.OffsetCommitResponse) error {
	if resp == nil {
		return nil
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("topic %q partition %d: %w", t.Topic, p.Partition, err)
			}
		}
	}
	return nil
}

func addOffset(offs map[string]map[int32]kgo.EpochOffset, tp topicPartition, eo kgo.EpochOffset) {
	m := offs[tp.topic]
	if m == nil {
		m = make(map[int32]kgo.EpochOffset)
		offs[tp.topic] = m
	}
	m[tp.partition] = eo
}

// Commit commits every record this stream has yielded so far, including the
// one the loop body is handling, on the partitions this member still owns.
// It waits for the broker's answer and returns its error. It never moves a
// committed offset backwards, except for a partition sought back with Seek
// or SeekToTime, whose commits follow the new position.
//
// With ManualCommit this is the only way (with CommitRecords) anything is
// committed. Without it, Commit is rarely needed: processed records are
// committed automatically; Commit makes that happen now and includes the
// record in hand.
//
// Under PartitionConcurrency or KeyConcurrency, and while the stream is
// closing, Commit stops at each partition's lowest unfinished record
// instead: records are handled out of order there, and a record that is
// still running or failed must stay uncommitted.
//
// Commit returns ErrNoGroup for a stream without a group, ErrNotOpen before
// Open and ErrClosed after Close. It is safe to call from any goroutine.
func (s *Stream[T]) Commit(ctx context.Context) error {
	if s.cfg.shareGroup != "" {
		return s.errShareCommit("Commit")
	}
	ss, err := s.session()
	if err != nil {
		return err
	}
	return ss.commitYielded(ctx, true)
}

// CommitRecords commits, for each partition, up to and including the latest
// of recs. Records of partitions this member no longer owns, records not yet
// yielded, and records at or below the last commit are left out, so it never
// moves an offset backwards (except after a Seek back, whose commits follow
// the new position) or touches another member's partition.
//
// Under PartitionConcurrency or KeyConcurrency, a commit never passes a
// partition's lowest unfinished record: one whose handler is still running
// (the caller's own record included) or failed. What it leaves out is
// committed by a later commit once those records are handled.
func (s *Stream[T]) CommitRecords(ctx context.Context, recs ...Record[T]) error {
	if s.cfg.shareGroup != "" {
		return s.errShareCommit("CommitRecords")
	}
	ss, err := s.session()
	if err != nil {
		return err
	}
	raws := make([]*kgo.Record, 0, len(recs))
	for i := range recs {
		raws = append(raws, recs[i].Raw)
	}
	return ss.commitRecords(ctx, raws)
}
