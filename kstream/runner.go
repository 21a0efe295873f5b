package kstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
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
	// StreamStopping: a stop (Stop, Remove, a crash that stops the engine)
	// was asked for and its function has not returned yet. After a stop
	// whose deadline passed, the stream is closed (it consumes nothing and
	// holds no partition) but its function, which ignores its context,
	// still runs: LastErr says so. A Start meanwhile starts the stream
	// again as soon as the function returns.
	StreamStopping
	// StreamFinished: a bounded stream (StopAtEnd) reached its end and its
	// function returned; it has committed and closed. A finished stream
	// counts as healthy, and Engine.Run returns once every stream of the
	// engine has finished or stopped.
	StreamFinished
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
	case StreamStopping:
		return "stopping"
	case StreamFinished:
		return "finished"
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

// runner runs one stream of an engine, each start on a goroutine of its
// own.
type runner struct {
	s    Runnable
	name string

	// Guarded by the engine's mu.
	cur          *run // the last start, nil before the first
	startPending bool // Start came while cur's function still ran

	mu       sync.Mutex
	state    StreamState
	lastErr  error
	closeErr error // the final commit's failure, when the stream last stopped
	restarts int
	// restartTimes are the times of the last restarts, for crash-loop
	// detection (see CrashLoop).
	restartTimes []time.Time
}

// run is one start of a runner: its goroutine and how to stop it.
type run struct {
	stopLoop    context.CancelFunc // graceful: stop fetching, finish the record
	stopHandler context.CancelFunc // at the deadline: cancel the handler's ctx
	done        chan struct{}      // closed when the goroutine has ended
	goroutine   atomic.Uint64      // the ID of the goroutine, which runs the function (see callerRun)

	// Guarded by the runner's mu.
	stopping bool // a stop was asked for: the state is no longer running
	finished bool // the function has returned: the state is final
	forced   bool // closed under a function that ignored the stop's deadline
	forget   bool // forget the stream's metrics when the function returns
}

// runKey is the key of the *run in the context of a stream's function and
// handlers, so that Stop and Remove can tell a call from them.
type runKey struct{}

// callerRun returns what tells the run whose function (handler, Func
// function, middleware) calls Stop or Remove: the run ctx comes from, if
// any, and the calling goroutine, which is the run's own for a Handle
// function without PartitionConcurrency or KeyConcurrency, a HandleBatches
// function and a Func function. Handlers running on the lanes of a
// concurrent stream are told by ctx alone.
func callerRun(ctx context.Context) (fromCtx *run, goroutine uint64) {
	fromCtx, _ = ctx.Value(runKey{}).(*run)
	return fromCtx, goroutineID()
}

// calledBy reports whether the caller told by callerRun is rn's function.
func (rn *run) calledBy(fromCtx *run, goroutine uint64) bool {
	return rn == fromCtx || (goroutine != 0 && rn.goroutine.Load() == goroutine)
}

// closeError is how a stream's run reports that its function ended well
// but closing failed (the final commit): the engine's Stop reports it; it is
// not a crash.
type closeError struct {
	err      error
	finished bool // the stream had reached its end (StopAtEnd)
}

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

// startRunner starts r on a goroutine of its own. If r's function from the
// last start has not returned yet (it ignored a stop's deadline), r starts
// as soon as it returns, if the engine still runs then. e.mu is held.
func (e *Engine) startRunner(r *runner) {
	if rn := r.cur; rn != nil {
		select {
		case <-rn.done:
		default:
			r.startPending = true
			e.log.Warn("stream starts once its function returns: it ignored the deadline of the last stop and still runs", "stream", r.name)
			return
		}
	}
	r.startPending = false
	loopCtx, stopLoop := context.WithCancel(context.Background())
	rn := &run{stopLoop: stopLoop, done: make(chan struct{})}
	handlerCtx, stopHandler := context.WithCancel(context.WithValue(context.Background(), runKey{}, rn))
	rn.stopHandler = stopHandler
	r.cur = rn
	r.mu.Lock()
	r.closeErr = nil
	r.state = StreamRunning
	r.mu.Unlock()
	go e.runLoop(r, rn, loopCtx, handlerCtx)
}

// startPending starts r again if Start asked for it while rn, r's last
// start, still ran. rn's goroutine calls it as it ends.
func (e *Engine) startPending(r *runner, rn *run) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r.cur != rn || !r.startPending {
		return
	}
	r.startPending = false
	if e.state == engineRunning && slices.Contains(e.runners, r) {
		e.log.Info("starting stream whose function from the last run has returned", "stream", r.name)
		e.startRunner(r)
	}
}

// setRunning marks r running, unless a stop of rn was asked for.
func (r *runner) setRunning(rn *run) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !rn.stopping {
		r.state = StreamRunning
	}
}

// finish records rn's final state, and forgets the stream's metrics if a
// stop that did not wait for it asked for that.
func (r *runner) finish(rn *run, st StreamState, err error, m *metricsSet) {
	r.mu.Lock()
	rn.finished = true
	r.state = st
	if err != nil {
		r.lastErr = err
	}
	forget := rn.forget
	r.mu.Unlock()
	if forget {
		m.forgetStream(r.name)
	}
}

// runLoop runs the stream until it stops, applying its error policy to
// each crash.
func (e *Engine) runLoop(r *runner, rn *run, loopCtx, handlerCtx context.Context) {
	rn.goroutine.Store(goroutineID())
	// What the stream inherited from the engine when it started: Remove
	// may detach it while its function still runs.
	policy, metrics := r.s.policy(), r.s.metricsSet()
	defer func() {
		close(rn.done)
		e.startPending(r, rn)
	}()
	// The handler's ctx is not canceled when the function returns: a
	// record the handler sent with SendAsync under it is still being
	// written, and Stop flushes it. Stop (and Remove) cancel it once the
	// function has returned (releaseHandlerCtx).
	backoff := minRestartBackoff
	for {
		r.setRunning(rn)
		started := time.Now()
		err := r.s.run(loopCtx, handlerCtx)
		finished := err == errStreamFinished
		if ce, ok := err.(*closeError); ok {
			r.mu.Lock()
			r.closeErr = ce.err
			r.mu.Unlock()
			err, finished = nil, ce.finished
		}
		if finished {
			r.finish(rn, StreamFinished, nil, metrics)
			e.noteFinished()
			return
		}
		if err == nil {
			r.finish(rn, StreamStopped, nil, metrics)
			e.noteFinished()
			return
		}
		permanent := isPermanent(err)
		e.logCrash(r, err, policy, permanent)
		if metrics != nil {
			metrics.crashes.WithLabelValues(r.name).Inc()
		}
		if loopCtx.Err() != nil {
			r.finish(rn, StreamCrashed, err, metrics)
			return // stopping anyway: no restart, no engine stop
		}
		switch {
		case policy == ErrorPolicyRestart && !permanent:
			r.setState(StreamCrashed, err)
			if time.Since(started) > maxRestartBackoff {
				backoff = minRestartBackoff
			}
			r.setState(StreamRestarting, nil)
			r.mu.Lock()
			r.restarts++
			r.noteRestartLocked(time.Now(), e.cfg.crashLoopKeep())
			r.mu.Unlock()
			if metrics != nil {
				metrics.restarts.WithLabelValues(r.name).Inc()
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-loopCtx.Done():
				t.Stop()
				r.finish(rn, StreamCrashed, nil, metrics)
				return
			}
			backoff = min(2*backoff, maxRestartBackoff)
			e.log.Info("restarting stream", "stream", r.name)
			continue
		case policy == ErrorPolicyStopEngine:
			r.finish(rn, StreamCrashed, err, metrics)
			e.requestStop(nil)
		case policy == ErrorPolicyStopApplication:
			r.finish(rn, StreamCrashed, err, metrics)
			e.requestStop(fmt.Errorf("kstream: stream %q crashed: %w", r.name, err))
		default:
			r.finish(rn, StreamCrashed, err, metrics)
		}
		return
	}
}

// errStreamFinished is how a stream's run reports that its function ended
// because the stream reached its end (StopAtEnd).
var errStreamFinished = errors.New("kstream: stream finished")

// noteFinished makes Run return once a stream has finished and every
// stream of the running engine has finished or stopped (its function
// returned): a backfill job is one engine with bounded streams. A crashed
// or restarting stream keeps Run waiting, as it would without bounded
// streams.
func (e *Engine) noteFinished() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != engineRunning || e.finishedCh == nil {
		return
	}
	finished := false
	for _, r := range e.runners {
		r.mu.Lock()
		st, done := r.state, r.cur != nil && r.cur.finished
		r.mu.Unlock()
		switch {
		case st == StreamFinished:
			finished = true
		case st == StreamStopped && done:
		default:
			return
		}
	}
	if !finished {
		return
	}
	select {
	case <-e.finishedCh:
	default:
		e.log.Info("every stream has finished or stopped")
		close(e.finishedCh)
	}
}

// logCrash logs a crash once, as kstreams' "CRASHED Stream!!!" does, with
// the stack of a panic. A crash that restarting cannot heal says so when
// the policy would have restarted the stream.
func (e *Engine) logCrash(r *runner, err error, policy ErrorPolicy, permanent bool) {
	attrs := []any{"stream", r.name, "topics", strings.Join(r.s.topicsForLog(), ","), "err", err, "policy", policy.String()}
	if permanent && policy == ErrorPolicyRestart {
		attrs = append(attrs, "restart", "no: restarting cannot heal this error")
	}
	var pe *PanicError
	if errors.As(err, &pe) {
		attrs = append(attrs, "stack", string(pe.Stack))
	}
	e.log.Error("stream crashed", attrs...)
}

// isPermanent reports whether err is a crash that restarting the stream
// cannot heal, because its cause is in the program or its configuration,
// so that ErrorPolicyRestart does not restart it: an invalid option
// (ErrInvalidOption, which Open returns for ClientOptions that bypass the
// stream), a protocol version, SASL mechanism or group protocol the brokers
// do not support, an invalid group ID, and a fatal *FetchError for any of
// those. Failed authorizations and authentications are restarted, with
// backoff: an operator can grant the ACL or create the user on the brokers
// while the program runs, and the stream then carries on by itself. A fatal
// FetchError for a topic deleted or created again under the stream
// (UNKNOWN_TOPIC_ID, INCONSISTENT_TOPIC_ID) is restarted too: a restart
// looks the topic up again.
func isPermanent(err error) bool {
	if errors.Is(err, ErrInvalidOption) {
		return true
	}
	for _, ke := range permanentKafkaErrors {
		if errors.Is(err, ke) {
			return true
		}
	}
	return false
}

// permanentKafkaErrors are the broker errors isPermanent treats as
// permanent.
var permanentKafkaErrors = []error{
	kerr.UnsupportedVersion, kerr.UnsupportedSaslMechanism, kerr.IllegalSaslState,
	kerr.InvalidGroupID, kerr.InconsistentGroupProtocol,
}

// stopTarget is a runner to stop and the start of it to stop, read under
// the engine's mu.
type stopTarget struct {
	r  *runner
	rn *run
}

// releaseHandlerCtx cancels the handler contexts of ts once their
// functions have returned: after Stop has flushed the producer, so that
// SendAsync records sent under a handler's ctx are written, not failed
// with context.Canceled; for Remove, once the function returned.
func releaseHandlerCtx(ts []stopTarget) {
	for _, t := range ts {
		if t.rn == nil {
			continue
		}
		select {
		case <-t.rn.done:
			t.rn.stopHandler()
		default:
			go func() { // a function that outlived its stop, or the caller's own
				<-t.rn.done
				t.rn.stopHandler()
			}()
		}
	}
}

// stopTargetsLocked returns what stopping rs stops. e.mu is held.
func stopTargetsLocked(rs []*runner) []stopTarget {
	ts := make([]stopTarget, 0, len(rs))
	for _, r := range rs {
		r.startPending = false
		ts = append(ts, stopTarget{r, r.cur}) // rn is nil if r never started
	}
	return ts
}

// stopRunners stops runners gracefully within ctx: it stops their loops,
// waits, cancels their handlers' contexts at the deadline, and closes the
// streams of any that still run: those commit what they processed, and
// leave their groups, within forcedCloseTimeout more.
//
// It does not wait for a runner whose function (or handler, or
// middleware) is the caller, told by callerRun: that stream stops when the
// function returns, which it cannot do before this call does. Nor for a
// runner whose listener is the caller: its stream is closed at once, and
// leaves its group when the callback returns. Nor, again, for a runner
// whose function outlived the deadline of an earlier stop: it is reported.
func (e *Engine) stopRunners(ctx context.Context, ts []stopTarget, fromCtx *run, goroutine uint64) (errs []error) {
	var live []stopTarget
	for _, t := range ts {
		r, rn := t.r, t.rn
		if rn == nil {
			continue
		}
		r.mu.Lock()
		rn.stopping = true
		if !rn.finished {
			r.state = StreamStopping
		}
		forced := rn.forced
		r.mu.Unlock()
		rn.stopLoop()
		select {
		case <-rn.done:
			continue
		default:
		}
		switch {
		case r.s.calledFromListener():
			// Stop was called from this stream's listener: its loop
			// waits in a poll that franz-go holds until the callback
			// returns, so it cannot finish before this Stop does. Close
			// it now (it commits what was processed; there is no record
			// in hand during a callback; Close from a listener does not
			// wait for the leave); its goroutine ends when the callback
			// returns. Not forceClose: aborting the client first would
			// fail that commit.
			if err := r.s.closeGracefully(); err != nil {
				e.log.Error("closing a stream stopped from its listener", "stream", r.name, "err", err)
				errs = append(errs, err)
			}
		case rn.calledBy(fromCtx, goroutine):
			e.log.Debug("stop called from the stream's own function: the stream stops when it returns", "stream", r.name)
		case forced:
			errs = append(errs, fmt.Errorf("kstream: stream %q: its function still runs, past the deadline of an earlier stop; its stream is closed", r.name))
		default:
			live = append(live, t)
		}
	}
	// Wait for all, until the deadline.
	stuck := waitRunners(ctx.Done(), live)
	for _, t := range live {
		if slices.Contains(stuck, t) {
			continue
		}
		t.r.mu.Lock()
		if t.r.closeErr != nil {
			errs = append(errs, t.r.closeErr) // it names the stream
		}
		t.r.mu.Unlock()
	}
	if len(stuck) == 0 {
		return errs
	}
	// At the deadline, cancel every remaining handler's ctx at once and
	// give them a second together.
	for _, t := range stuck {
		t.rn.stopHandler()
	}
	grace := time.NewTimer(time.Second)
	defer grace.Stop()
	stuck = waitRunners(grace.C, stuck)
	for _, t := range stuck {
		// The function ignores its context: close the stream under it.
		// What it processed is committed; its record in hand is not.
		err := fmt.Errorf("kstream: stream %q did not stop before the deadline; it was closed with its record in hand uncommitted, and its function, which ignores its context, still runs", t.r.name)
		t.r.mu.Lock()
		t.rn.forced = true
		if !t.rn.finished {
			t.r.lastErr = err
		}
		t.r.mu.Unlock()
		if cerr := t.r.s.forceClose(); cerr != nil {
			e.log.Error("closing a stream that did not stop", "stream", t.r.name, "err", cerr)
			err = fmt.Errorf("%w; closing it: %w", err, cerr)
		}
		errs = append(errs, err)
	}
	return errs
}

// forgetStreams forgets the metrics of the streams ts stopped, or, for one
// whose function still runs (it called the stop, or ignored its
// deadline), when that function returns.
func forgetStreams(ts []stopTarget) {
	for _, t := range ts {
		now := true
		if t.rn != nil {
			t.r.mu.Lock()
			now = t.rn.finished
			if !now {
				t.rn.forget = true
			}
			t.r.mu.Unlock()
		}
		if now {
			t.r.s.metricsSet().forgetStream(t.r.name)
		}
	}
}

// waitRunners waits for ts to finish until stop fires, and returns those
// that did not.
func waitRunners[C any](stop <-chan C, ts []stopTarget) []stopTarget {
	var left []stopTarget
	fired := false
	for _, t := range ts {
		if !fired {
			select {
			case <-t.rn.done:
				continue
			case <-stop:
				fired = true // a timer's channel fires once: do not wait on it again
			}
		}
		select {
		case <-t.rn.done:
		default:
			left = append(left, t)
		}
	}
	return left
}
