package kstream

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
)

// A decoder that returns an error wrapping codec.ErrUnavailable (a schema
// registry that cannot be reached, say) cannot decode the record now, for a
// reason that is not the record's. Such a record is never yielded as a
// *DecodeError, which a loop may skip: it is given back, the stream waits,
// and the record is decoded again, until the decoder succeeds or the stream
// stops.

// Backoff between attempts to decode a record whose decoder was unavailable.
const (
	minDecodeRetry = 100 * time.Millisecond
	maxDecodeRetry = 5 * time.Second
)

// unavailable reports whether err, from decoding, says the decoder cannot
// decode now.
func unavailable(err error) bool {
	return errors.Is(err, codec.ErrUnavailable)
}

// decodeRetry is the state of a range's retries of unavailable decodes.
type decodeRetry struct {
	wait  time.Duration
	tries int
}

// ok resets the backoff after a successful decode, and what health shows.
func (d *decodeRetry) ok(ss *session) {
	if d.tries > 0 {
		*d = decodeRetry{}
		ss.decodeUnavailable.Store(nil)
	}
}

// retry gives rs (taken from the buffer, the first of them yielded or not)
// back to the front of the buffer, logs the decoder's error, and waits the
// backoff. It returns false when the range must end instead: ctx is done or
// the stream stops fetching. A rebalance waiting meanwhile runs at the next
// pop, with the records given back.
func (d *decodeRetry) retry(ctx context.Context, ss *session, rs []*kgo.Record, err error) bool {
	ss.lockFold()
	ss.endRunLocked() // the run's records after rs[0] go back behind it
	ss.inflight = ss.inflight[:0]
	ss.giveBackLocked(rs)
	ss.mu.Unlock()
	d.tries++
	if d.wait == 0 {
		d.wait = minDecodeRetry
	} else {
		d.wait = min(2*d.wait, maxDecodeRetry)
	}
	r := rs[0]
	msg := err.Error()
	ss.decodeUnavailable.Store(&msg)
	ss.log.Warn("decoder unavailable; the record is kept and decoded again after a backoff",
		"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "attempt", d.tries, "backoff", d.wait, "err", err)
	t := time.NewTimer(d.wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-ss.fetchDone:
	}
	return false
}

// useDecodeCtx gives a codec.ContextDecoder the range's context, ended also
// when the stream stops fetching (Close, an engine's stop), so that closing
// never waits for a decoder's dependency; the function returned ends it.
// Called by the ranging goroutine once it has claimed the range.
func (s *Stream[T]) useDecodeCtx(ctx context.Context, ss *session) (end func()) {
	if s.ctxDec == nil {
		return func() {}
	}
	c, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ss.fetchCtx, cancel)
	s.decodeCtx = c
	return func() {
		s.decodeCtx = nil
		stop()
		cancel()
	}
}
