// Share groups (KIP-932): the options, acknowledgements that follow loop
// control, and Release/Reject for Handle functions.

package kstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ShareGroup makes the stream a member of the share group name (KIP-932,
// "queues for Kafka", Kafka 4.0 and later) instead of a consumer group. Any
// number of members read the same partitions; the broker hands each record
// to one member at a time, counts its deliveries (Record.DeliveryCount) and
// archives it once it is accepted or rejected, or delivered too often
// (group.share.delivery.count.limit, 5 by default). There is no order
// between records, not even within a partition, and no offsets to commit.
//
// Acknowledgements follow loop control, as commits do with Group: a record
// the loop body finished with (continue, or the end of the body) is
// accepted; break, return and panic keep the record in hand, which the
// next range yields again first; Close releases every record this member
// holds and has not acknowledged, at once, for redelivery (to this member or
// another). Stream.Ack decides for a record ahead of loop control; a Handle
// function returns Release(err) or Reject(err) to do so. See
// docs/share-groups.md.
//
// ResetOffset applies: Open sets the group's share.auto.offset.reset (which
// says where a share group starts in a partition it has not read yet) to
// it, Earliest by default, when the group has no value set (or to the
// value given when ResetOffset is given), and logs a warning when it
// cannot (the principal may not alter group configs).
//
// ShareGroup cannot be combined with the options of consumer groups:
// Group, ManualCommit, InitialOffsets, Listener and InstanceID, nor with
// StartAt and StopAtEnd; NewStream rejects them with ErrInvalidOption.
// TopicPattern works. Commit and CommitRecords return an error wrapping
// ErrNoGroup, and Seek and SeekToTime an error: a share group has no
// position of its own. Pause and Resume are ignored, with a warning.
// PartitionConcurrency and KeyConcurrency work: records are handled in
// parallel, each acknowledged when its handler returns.
func ShareGroup(name string) Option {
	return option{name: "ShareGroup", scope: forStreams, fn: func(c *config) error {
		if name == "" {
			return fmt.Errorf("%w: ShareGroup: empty group name", ErrInvalidOption)
		}
		c.shareGroup = name
		return nil
	}}
}

// AckStatus is how a share group record is acknowledged (Stream.Ack).
type AckStatus int

const (
	// AckAccept: the record was processed; the broker archives it.
	AckAccept AckStatus = iota + 1
	// AckRelease: give the record back; the broker delivers it again, to
	// this member or another, with its delivery count one higher, until
	// the group's delivery limit archives it.
	AckRelease
	// AckReject: the record cannot be processed (poison); the broker
	// archives it and never delivers it again.
	AckReject
)

func (a AckStatus) String() string {
	switch a {
	case AckAccept:
		return "accept"
	case AckRelease:
		return "release"
	case AckReject:
		return "reject"
	}
	return fmt.Sprintf("AckStatus(%d)", int(a))
}

func (a AckStatus) kgo() kgo.AckStatus {
	switch a {
	case AckAccept:
		return kgo.AckAccept
	case AckRelease:
		return kgo.AckRelease
	}
	return kgo.AckReject
}

// ackDecision is the error Release and Reject return.
type ackDecision struct {
	status AckStatus
	err    error
}

func (d *ackDecision) Error() string {
	if d.err == nil {
		return "kstream: record " + d.status.String() + "d"
	}
	return "kstream: record " + d.status.String() + "d: " + d.err.Error()
}

func (d *ackDecision) Unwrap() error { return d.err }

// Release, returned by a Handle function (Handle, HandleBatches) of a share
// group stream, gives the record (or the whole batch) back to the broker
// for redelivery, and the stream goes on: it is not a crash, the error
// policy does not apply and health shows the stream running. err says why
// and is logged; it may be nil. errors.Is and errors.As see err through
// the error returned. Outside share groups it is an ordinary error (a
// crash).
func Release(err error) error { return &ackDecision{status: AckRelease, err: err} }

// Reject, returned by a Handle function (Handle, HandleBatches) of a share
// group stream, rejects the record (or the whole batch): it is poison, the
// broker archives it and never delivers it again. The stream goes on, as
// with Release; err is logged as a warning. Outside share groups it is an
// ordinary error (a crash).
func Reject(err error) error { return &ackDecision{status: AckReject, err: err} }

// errShareOnly is what the calls that make no sense on a share stream
// return.
func (s *Stream[T]) errShareOnly(what, why string) error {
	return fmt.Errorf("kstream: %s: stream %q reads share group %q: %s", what, s.name, s.cfg.shareGroup, why)
}

// Ack acknowledges rec, a record of this share group stream that the
// stream yielded (or handed to a Handle function) and that is not yet
// acknowledged, with status, ahead of loop control: what the loop body then
// does (continue, break, return, panic) no longer changes rec's fate, and a
// range after a break does not yield it again. The broker learns of it with
// the stream's next request (at once when idle).
//
// Ack returns an error when the stream is not a share group stream, not
// open (ErrNotOpen, ErrClosed), when status is not AckAccept, AckRelease or
// AckReject, and when rec is not a record this Open holds unacknowledged:
// acknowledged already (by Ack, or by loop control), released by Close, or
// from another stream or Open. It is safe to call from any goroutine.
func (s *Stream[T]) Ack(rec Record[T], status AckStatus) error {
	if s.cfg.shareGroup == "" {
		return fmt.Errorf("kstream: Ack: stream %q does not read a share group (ShareGroup); consumer group streams commit instead", s.name)
	}
	if status < AckAccept || status > AckReject {
		return fmt.Errorf("kstream: Ack: stream %q: unknown AckStatus %d (use AckAccept, AckRelease or AckReject)", s.name, int(status))
	}
	ss, err := s.session()
	if err != nil {
		return err
	}
	ss.lockFold()
	ok := rec.Raw != nil && ss.shareAckLocked(rec.Raw, status)
	ss.mu.Unlock()
	if !ok {
		return fmt.Errorf("kstream: Ack: stream %q: record %s/%d@%d is not held unacknowledged by this stream: acknowledged already, released by Close, or not this Open's", s.name, rec.Topic, rec.Partition, rec.Offset)
	}
	return nil
}

// shareOutcome applies what a Handle function of a share stream returned,
// err (not nil), to the records it handled: Release(e) and Reject(e)
// acknowledge them and return nil (the stream goes on); any other error
// releases them and is returned, for the error policy. On a stream of
// another kind it returns err.
func (s *Stream[T]) shareOutcome(ss *session, err error, raws ...*kgo.Record) error {
	if !ss.share {
		return err
	}
	var d *ackDecision
	status := AckRelease
	if errors.As(err, &d) {
		status = d.status
	}
	ss.lockFold()
	for _, r := range raws {
		ss.shareAckLocked(r, status)
	}
	ss.mu.Unlock()
	if d == nil {
		return err
	}
	if len(raws) > 0 {
		r := raws[0]
		args := []any{"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "records", len(raws), "delivery_count", r.DeliveryCount()}
		if d.err != nil {
			args = append(args, "err", d.err)
		}
		if status == AckReject {
			ss.log.Warn("handler rejected the record: archived, never delivered again", args...)
		} else {
			ss.log.Debug("handler released the record for redelivery", args...)
		}
	}
	return nil
}

// rawsOf returns the fetched records behind recs.
func rawsOf[T any](recs []Record[T]) []*kgo.Record {
	out := make([]*kgo.Record, 0, len(recs))
	for i := range recs {
		if recs[i].Raw != nil {
			out = append(out, recs[i].Raw)
		}
	}
	return out
}

// validateShare rejects the options that make no sense with ShareGroup.
func (c *config) validateShare() error {
	if c.shareGroup == "" {
		return nil
	}
	for _, o := range []struct{ name, why string }{
		{"ExactlyOnce", "transactions commit a consumer group's offsets; a share group acknowledges records"},
		{"CommitInterval", "a share group has no offsets to commit"},
		{"ReadCommitted", "a share group's isolation level is the group's share.isolation.level config"},
		{"Group", "a stream reads either a consumer group or a share group"},
		{"ManualCommit", "a share group acknowledges records, it has no offsets to commit (see Stream.Ack)"},
		{"InitialOffsets", "the broker decides which records a share group member gets"},
		{"Listener", "share group members have no partition rebalances to report"},
		{"InstanceID", "share groups have no static membership"},
		{"StartAt", "the group's share.auto.offset.reset says where a share group starts (ResetOffset)"},
		{"StopAtEnd", "a share group member has no partitions of its own to read to their end"},
	} {
		if c.isSet(o.name) {
			return fmt.Errorf("%w: %s cannot be combined with ShareGroup: %s", ErrInvalidOption, o.name, o.why)
		}
	}
	return nil
}

// shareAckLocked acknowledges r with status if this session holds it
// unacknowledged, and reports whether it did. Every acknowledgement the
// stream makes goes through it, so that the first decision wins and is
// counted once. ss.mu is held.
func (ss *session) shareAckLocked(r *kgo.Record, status AckStatus) bool {
	if _, ok := ss.sh.pending[r]; !ok {
		return false
	}
	delete(ss.sh.pending, r)
	r.Ack(status.kgo())
	if ss.sh.acks[0] != nil {
		ss.sh.acks[status-1].Inc()
	}
	if status == AckAccept {
		if ps := ss.partLocked(r.Topic, r.Partition); ps != nil && ps.processedCtr != nil {
			ps.processedCtr.Inc()
		}
	}
	return true
}

// shareTrackLocked records rs, just fetched, as held unacknowledged.
// ss.mu is held.
func (ss *session) shareTrackLocked(rs []*kgo.Record) {
	if ss.sh.pending == nil {
		ss.sh.pending = make(map[*kgo.Record]struct{}, len(rs))
	}
	for _, r := range rs {
		ss.sh.pending[r] = struct{}{}
		if ss.sh.deliveries != nil {
			ss.sh.deliveries.Observe(float64(r.DeliveryCount()))
		}
	}
}

// shareReleaseOrphansLocked releases the records held unacknowledged that
// are not in the buffer, so will not be yielded again: the queues a
// concurrent stream's lanes dropped at the end of a range, say. franz-go
// accepts at the next poll every record of the last poll not acknowledged;
// this keeps any record from being accepted that no body finished with.
// ss.mu is held.
func (ss *session) shareReleaseOrphansLocked() {
	if len(ss.sh.pending) == 0 {
		return
	}
	var kept map[*kgo.Record]bool
	if ss.pos < len(ss.buf) {
		kept = make(map[*kgo.Record]bool, len(ss.buf)-ss.pos)
		for _, r := range ss.buf[ss.pos:] {
			kept[r] = true
		}
	}
	for r := range ss.sh.pending {
		if !kept[r] {
			ss.shareAckLocked(r, AckRelease)
		}
	}
}

// shareUndecidedLocked returns the records of rs still held
// unacknowledged, reusing rs. ss.mu is held.
func (ss *session) shareUndecidedLocked(rs []*kgo.Record) []*kgo.Record {
	out := rs[:0]
	for _, r := range rs {
		if _, ok := ss.sh.pending[r]; ok {
			out = append(out, r)
		}
	}
	return out
}

// shareClose gives up every record held unacknowledged (the record in
// hand, the buffer, the records on lanes): from now on loop control and
// Ack no longer acknowledge them, and the client's leave, which Close
// starts next, releases them all at once, after it has stopped fetching
// (a release sent while fetching goes on can be answered with the same
// records acquired again). The acknowledgements made before are sent with
// the leave.
func (ss *session) shareClose() {
	ss.lockFold()
	n := len(ss.sh.pending)
	clear(ss.sh.pending)
	ss.mu.Unlock()
	if n > 0 {
		if ss.sh.acks[0] != nil {
			ss.sh.acks[AckRelease-1].Add(float64(n))
		}
		ss.log.Debug("close releases the records held unacknowledged", "records", n)
	}
}

// shareState is a share stream's session state (ss.sh), under ss.mu.
type shareState struct {
	// pending holds the records fetched and not yet acknowledged. They
	// are all of franz-go's last poll: a share stream polls only when
	// the buffer is empty and no record is in a body or on a lane.
	pending map[*kgo.Record]struct{}
	// emits counts, per record held, the records emitted for it and not
	// yet acknowledged; accepting holds the records a body finished whose
	// Accept waits for them (an emitted record's acknowledgement precedes
	// its source's Accept); failed, those with an emit that failed, which
	// are released instead (emit.go).
	emits      map[*kgo.Record]int
	accepting  map[*kgo.Record]bool
	failed     map[*kgo.Record]bool
	acks       [3]prometheus.Counter // by AckStatus-1; nil without metrics
	deliveries prometheus.Observer   // nil without metrics
}

// shareFinish acknowledges a record a concurrent stream's lane finished:
// accepted if handled, else released (unless decided before).
func (ss *session) shareFinish(r *kgo.Record, handled bool) {
	ss.lockFold()
	if handled {
		ss.shareAcceptLocked(r)
	} else {
		ss.shareAckLocked(r, AckRelease)
	}
	ss.mu.Unlock()
}

// shareAcceptLocked accepts r, which a body or handler finished, once the
// records emitted for it are acknowledged: now if none is outstanding.
// ss.mu is held.
func (ss *session) shareAcceptLocked(r *kgo.Record) {
	if ss.sh.emits[r] > 0 {
		if ss.sh.accepting == nil {
			ss.sh.accepting = make(map[*kgo.Record]bool)
		}
		ss.sh.accepting[r] = true
		return
	}
	ss.shareAckLocked(r, AckAccept)
}

// shareEmittedLocked records one more emit outstanding for each of srcs.
// ss.mu is held.
func (ss *session) shareEmittedLocked(srcs []*kgo.Record) {
	if ss.sh.emits == nil {
		ss.sh.emits = make(map[*kgo.Record]int)
	}
	for _, r := range srcs {
		ss.sh.emits[r]++
	}
}

// shareEmitDoneLocked records an emit for src acknowledged, or failed:
// once none is outstanding, a source the body finished is accepted, or
// released if one of its emits failed. ss.mu is held.
func (ss *session) shareEmitDoneLocked(src *kgo.Record, failed bool) {
	if failed {
		if ss.sh.failed == nil {
			ss.sh.failed = make(map[*kgo.Record]bool)
		}
		ss.sh.failed[src] = true
	}
	if ss.sh.emits[src]--; ss.sh.emits[src] > 0 {
		return
	}
	delete(ss.sh.emits, src)
	fail := ss.sh.failed[src]
	delete(ss.sh.failed, src)
	if !ss.sh.accepting[src] {
		if fail {
			// Not finished yet: it is released when its body ends
			// (shareAcceptLocked sees no emit outstanding and accepts,
			// so release it now; a later decision finds it gone).
			ss.shareAckLocked(src, AckRelease)
		}
		return
	}
	delete(ss.sh.accepting, src)
	if fail {
		ss.shareAckLocked(src, AckRelease)
		return
	}
	ss.shareAckLocked(src, AckAccept)
}

// waitIdle waits until no record is on the dispatcher's lanes, or the
// range must end (ctx done, fetching stopped, a failure).
func (d *dispatcher[T]) waitIdle(ctx context.Context) {
	stop := func() {
		d.mu.Lock()
		d.changed.Broadcast()
		d.mu.Unlock()
	}
	defer context.AfterFunc(ctx, stop)()
	defer context.AfterFunc(d.ss.fetchCtx, stop)()
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.inFlight.Load() > 0 && ctx.Err() == nil && d.ss.fetchCtx.Err() == nil && !d.hasFail.Load() {
		d.changed.Wait()
	}
}

// errShareCommit is what Commit and CommitRecords return on a share stream.
func (s *Stream[T]) errShareCommit(what string) error {
	return fmt.Errorf("%w: %w", ErrNoGroup, s.errShareOnly(what, "a share group acknowledges records (loop control, Stream.Ack), it has no offsets to commit"))
}

// errShareSeek is what Seek and SeekToTime return on a share stream.
func (s *Stream[T]) errShareSeek(what string) error {
	return s.errShareOnly(what, "the broker decides which records each member gets; a share group member has no position to move")
}

// sharePauseIgnored reports, with a warning, that Pause or Resume does
// nothing on a share stream: records held back for a paused partition
// would be accepted by franz-go's next poll.
func (s *Stream[T]) sharePauseIgnored(what string) bool {
	if s.cfg.shareGroup == "" {
		return false
	}
	s.logger().Warn(what+" ignored: a share group stream reads no partitions of its own; stop ranging (or Close) to stop taking records", "stream", s.name)
	return true
}

// isAckDecision reports whether err is (or wraps) a Release or Reject.
func isAckDecision(err error) bool {
	var d *ackDecision
	return errors.As(err, &d)
}
