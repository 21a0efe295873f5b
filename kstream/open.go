package kstream

import (
	"context"
	"fmt"
	"sync/atomic"
)

// Opening a stream connects to the brokers, which takes a round trip or
// more, and the group's first assignment can arrive meanwhile: a listener
// may run before Open returns. The stream's mutex is therefore not held
// while connecting, so that a listener (or anything else) that calls Close,
// Assignment or Engine.Stop during an Open does not wait for an Open that
// waits for it. An openAttempt stands for the Open in progress.
type openAttempt struct {
	done           chan struct{}           // closed when the attempt has ended
	ctx            context.Context         // the Open's context, until the attempt ends
	cancel         context.CancelFunc      // gives up connecting (Close during Open)
	ss             atomic.Pointer[session] // the session being opened, once it exists
	closeRequested bool                    // Close was called during the attempt (under s.mu)
}

// beginOpenLocked registers an Open in progress, connecting within ctx.
func (s *Stream[T]) beginOpenLocked(ctx context.Context) *openAttempt {
	op := &openAttempt{done: make(chan struct{})}
	op.ctx, op.cancel = context.WithCancel(ctx)
	s.opening = op
	return op
}

// waitOpeningLocked waits, with s.mu released, for the Open in progress.
func (s *Stream[T]) waitOpeningLocked(ctx context.Context) error {
	done := s.opening.done
	s.mu.Unlock()
	defer s.mu.Lock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kstream: stream %q: waiting for an Open in progress: %w", s.name, ctx.Err())
	}
}

// finishOpen connects, without s.mu, and makes the session the stream's,
// unless Close was called meanwhile: then it closes the session and returns
// ErrClosed.
func (s *Stream[T]) finishOpen(op *openAttempt) (*session, error) {
	defer op.cancel()
	s.mu.Lock()
	in := s.inherited
	s.mu.Unlock()
	ss, err := openSession(op.ctx, &s.cfg, s.name, in, op.ss.Store)

	s.mu.Lock()
	s.opening = nil
	closed := op.closeRequested
	switch {
	case err == nil && closed:
		// Visible while it closes, as any closing session is: to a
		// concurrent Close (which waits for it) and to forceClose.
		s.state, s.closingSS = stateClosed, ss
	case err == nil:
		s.sess, s.state = ss, stateOpen
		s.openSS.Store(ss)
	case closed:
		s.state = stateClosed
		err = ErrClosed
	}
	s.mu.Unlock()
	if err == nil && closed {
		if cerr := ss.close(DefaultCloseTimeout); cerr != nil {
			ss.log.Error("closing a stream closed while it opened", "err", cerr)
		}
		s.mu.Lock()
		if s.closingSS == ss {
			s.closingSS = nil
		}
		s.mu.Unlock()
		ss, err = nil, ErrClosed
	}
	close(op.done)
	return ss, err
}
