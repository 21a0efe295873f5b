package kstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// StreamState is where a stream run by an engine is in its life.
type StreamState int

const (
	// StreamStopped: not running (not started yet, stopped, or its
	// function returned).
	StreamStopped StreamState = iota
	// StreamRunning: consuming.
	StreamRunning
	// StreamCrashed: its function failed and its policy did not restart it.
	StreamCrashed
	// StreamRestarting: its function failed; it starts again after a
	// backoff (ErrorPolicyRestart).
	StreamRestarting
)

func (s StreamState) String() string {
	switch s {
	case StreamStopped:
		return "stopped"
	case StreamRunning:
		return "running"
	case StreamCrashed:
		return "crashed"
	case StreamRestarting:
		return "restarting"
	}
	return fmt.Sprintf("StreamState(%d)", int(s))
}

// PanicError is a panic in a stream's function (or decoder, or middleware),
// recovered by the engine and handled as a crash. Stack is where it
// happened.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("kstream: panic: %v", e.Value) }

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// runner runs one stream of an engine on a goroutine of its own.
type runner struct {
	s    Runnable
	name string

	// Set by startRunner under the engine's mu.
	stopLoop    context.CancelFunc // graceful: stop fetching, finish the record
	stopHandler context.CancelFunc // at the deadline: cancel the handler's ctx
	done        chan struct{}

	mu       sync.Mutex
	state    StreamState
	lastErr  error
	closeErr error // the final commit's failure, when the stream last stopped
	restarts int
}

// closeError is how a stream's run reports that its function ended well
// but closing failed (the final commit): the engine's Stop reports it; it is
// not a crash.
type closeError struct{ err error }

func (e *closeError) Error() string { return e.err.Error() }
func (e *closeError) Unwrap() error { return e.err }

func (r *runner) setState(st StreamState, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state = st
	if err != nil {
		r.lastErr = err
	}
}

// startRunner starts r's goroutine. e.mu is held.
func (e *Engine) startRunner(r *runner) {
	if r.done != nil {
		select {
		case <-r.done:
		default:
			// A handler that ignored the last stop's deadline still runs.
			e.log.Error("stream not started: its handler from the last run has not returned", "stream", r.name)
			return
		}
	}
	loopCtx, stopLoop := context.WithCancel(context.Background())
	handlerCtx, stopHandler := context.WithCancel(context.Background())
	r.stopLoop, r.stopHandler = stopLoop, stopHandler
	r.done = make(chan struct{})
	r.mu.Lock()
	r.closeErr = nil
	r.mu.Unlock()
	r.setState(StreamRunning, nil)
	go e.runLoop(r, loopCtx, handlerCtx)
}

// runLoop runs the stream until it stops, applying its error policy to
// each crash.
func (e *Engine) runLoop(r *runner, loopCtx, handlerCtx context.Context) {
	defer close(r.done)
	defer r.stopHandler()
	backoff := minRestartBackoff
	for {
		r.setState(StreamRunning, nil)
		started := time.Now()
		err := r.s.run(loopCtx, handlerCtx)
		if ce, ok := err.(*closeError); ok {
			r.mu.Lock()
			r.closeErr = ce.err
			r.mu.Unlock()
			err = nil
		}
		if err == nil {
			r.setState(StreamStopped, nil)
			return
		}
		policy := r.s.policy()
		e.logCrash(r, err, policy)
		if m := r.s.metricsSet(); m != nil {
			m.crashes.WithLabelValues(r.name).Inc()
		}
		r.setState(StreamCrashed, err)
		if loopCtx.Err() != nil {
			return // stopping anyway: no restart, no engine stop
		}
		switch policy {
		case ErrorPolicyRestart:
			if time.Since(started) > maxRestartBackoff {
				backoff = minRestartBackoff
			}
			r.setState(StreamRestarting, nil)
			r.mu.Lock()
			r.restarts++
			r.mu.Unlock()
			if m := r.s.metricsSet(); m != nil {
				m.restarts.WithLabelValues(r.name).Inc()
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-loopCtx.Done():
				t.Stop()
				r.setState(StreamCrashed, nil)
				return
			}
			backoff = min(2*backoff, maxRestartBackoff)
			e.log.Info("restarting stream", "stream", r.name)
			continue
		case ErrorPolicyStopEngine:
			e.requestStop(nil)
		case ErrorPolicyStopApplication:
			e.requestStop(fmt.Errorf("kstream: stream %q crashed: %w", r.name, err))
		}
		return
	}
}

// logCrash logs a crash once, as kstreams' "CRASHED Stream!!!" does, with
// the stack of a panic.
func (e *Engine) logCrash(r *runner, err error, policy ErrorPolicy) {
	attrs := []any{"stream", r.name, "topics", strings.Join(r.s.topicsForLog(), ","), "err", err, "policy", policy.String()}
	var pe *PanicError
	if errors.As(err, &pe) {
		attrs = append(attrs, "stack", string(pe.Stack))
	}
	e.log.Error("stream crashed", attrs...)
}

// stopRunners stops runners gracefully within ctx: it stops their loops,
// waits, cancels their handlers' contexts at the deadline, and closes the
// streams of any that still run.
func (e *Engine) stopRunners(ctx context.Context, rs []*runner) error {
	var live []*runner
	var errs []error
	for _, r := range rs {
		if r.done == nil {
			continue
		}
		r.stopLoop()
		if r.s.inListener() {
			// Stop was called from this stream's listener (or while one
			// runs): its loop waits in a poll that franz-go holds until the
			// callback returns, so it cannot finish before this Stop does.
			// Close it now (it commits what was processed; there is no
			// record in hand during a callback; Close does not wait for
			// the callback); its goroutine ends when the callback returns.
			// Not forceClose: aborting the client first would fail that
			// commit.
			if err := r.s.closeGracefully(); err != nil {
				e.log.Error("closing a stream stopped from its listener", "stream", r.name, "err", err)
				errs = append(errs, err)
			}
			continue
		}
		live = append(live, r)
	}
	// Wait for all, until the deadline.
	stuck := waitRunners(ctx.Done(), live)
	for _, r := range live {
		if slices.Contains(stuck, r) {
			continue
		}
		r.mu.Lock()
		if r.closeErr != nil {
			errs = append(errs, r.closeErr) // it names the stream
		}
		r.mu.Unlock()
	}
	if len(stuck) == 0 {
		return errors.Join(errs...)
	}
	// At the deadline, cancel every remaining handler's ctx at once and
	// give them a second together.
	for _, r := range stuck {
		r.stopHandler()
	}
	grace := time.NewTimer(time.Second)
	defer grace.Stop()
	stuck = waitRunners(grace.C, stuck)
	for _, r := range stuck {
		// The handler ignores its context: close the stream under it.
		// Its record in hand is not committed.
		if err := r.s.forceClose(); err != nil {
			e.log.Error("closing a stream that did not stop", "stream", r.name, "err", err)
		}
		errs = append(errs, fmt.Errorf("kstream: stream %q did not stop before the deadline; it was closed with its record in hand uncommitted", r.name))
	}
	return errors.Join(errs...)
}

// waitRunners waits for rs to finish until stop fires, and returns those
// that did not.
func waitRunners[C any](stop <-chan C, rs []*runner) []*runner {
	var left []*runner
	fired := false
	for _, r := range rs {
		if !fired {
			select {
			case <-r.done:
				continue
			case <-stop:
				fired = true // a timer's channel fires once: do not wait on it again
			}
		}
		select {
		case <-r.done:
		default:
			left = append(left, r)
		}
	}
	return left
}
