package kstream

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// commitTargetLocked is the offset Commit commits for a partition: after
// every record yielded so far, except that while the stream is closing the
// record in flight is left out, because its body did not finish. For a
// listener (explicit false), a record a range left unfinished (break,
// return, panic) is left out too: it stays for the partition's next owner.
func (ss *session) commitTargetLocked(tp topicPartition, ps *partState, explicit bool) int64 {
	target := ps.yielded
	if ss.drain != nil {
		// A dispatcher's records finish out of order: only what is
		// processed is done.
		target = ps.processed
	}
	if !explicit && ps.hasAbandoned && ps.abandoned < target {
		target = ps.abandoned
	}
	if ss.closing.Load() {
		for _, r := range ss.inflight {
			if r.Partition == tp.partition && r.Topic == tp.topic && r.Offset < target {
				target = r.Offset
			}
		}
	}
	return target
}

// commitYielded commits every record yielded so far on the partitions this
// member owns; explicit is false for a listener's commit.
func (ss *session) commitYielded(ctx context.Context, explicit bool) error {
	if !ss.group {
		return ErrNoGroup
	}
	ss.commitMu.Lock()
	defer ss.commitMu.Unlock()
	ss.mu.Lock()
	offs := make(map[string]map[int32]kgo.EpochOffset)
	for tp, ps := range ss.parts {
		if !ps.owned {
			continue
		}
		target := ss.commitTargetLocked(tp, ps, explicit)
		if target <= ps.committed || target == 0 {
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
	if !ss.group {
		return ErrNoGroup
	}
	ss.commitMu.Lock()
	defer ss.commitMu.Unlock()
	ss.mu.Lock()
	offs := make(map[string]map[int32]kgo.EpochOffset)
	for _, r := range recs {
		if r == nil {
			continue
		}
		tp := topicPartition{r.Topic, r.Partition}
		ps := ss.parts[tp]
		if ps == nil || !ps.owned || r.Offset+1 <= ps.committed || r.Offset+1 > ps.yielded {
			continue
		}
		if cur, ok := offs[r.Topic][r.Partition]; ok && cur.Offset >= r.Offset+1 {
			continue
		}
		addOffset(offs, tp, kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1})
	}
	ss.mu.Unlock()
	return ss.commitLocked(ctx, offs)
}

// commitLocked commits offs synchronously. In the default mode the offsets
// become marks (franz-go never moves a mark backwards) and all marks are
// committed; with ManualCommit they are committed as given, after filtering
// to owned partitions and offsets beyond the last commit. commitMu is held.
func (ss *session) commitLocked(ctx context.Context, offs map[string]map[int32]kgo.EpochOffset) error {
	if !ss.manual {
		ss.mu.Lock()
		for t, m := range offs {
			for p, eo := range m {
				if ps := ss.parts[topicPartition{t, p}]; ps != nil && eo.Offset > ps.processed {
					ps.processed, ps.epoch = eo.Offset, eo.Epoch
					ss.dirty = true
				}
			}
		}
		ss.mu.Unlock()
		if err := ss.commitMarked(ctx, ss.cl); err != nil {
			return fmt.Errorf("kstream: stream %q: commit: %w", ss.name, err)
		}
		ss.noteCommitted(offs)
		return nil
	}
	if len(offs) == 0 {
		return nil
	}
	var rerr error
	ss.cl.CommitOffsetsSync(ctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
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
	ss.mu.Lock()
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
		ss.mu.Lock()
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
	ss.mu.Lock()
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
// committed offset backwards.
//
// With ManualCommit this is the only way (with CommitRecords) anything is
// committed. Without it, Commit is rarely needed: processed records are
// committed automatically; Commit makes that happen now and includes the
// record in hand.
//
// Commit returns ErrNoGroup for a stream without a group, ErrNotOpen before
// Open and ErrClosed after Close. It is safe to call from any goroutine.
func (s *Stream[T]) Commit(ctx context.Context) error {
	ss, err := s.session()
	if err != nil {
		return err
	}
	return ss.commitYielded(ctx, true)
}

// CommitRecords commits, for each partition, up to and including the latest
// of recs. Records of partitions this member no longer owns, records not yet
// yielded, and records at or below the last commit are left out, so it never
// moves an offset backwards or touches another member's partition.
func (s *Stream[T]) CommitRecords(ctx context.Context, recs ...Record[T]) error {
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
