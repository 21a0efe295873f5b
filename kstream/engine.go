package kstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Errors of the engine, returned as is; compare with errors.Is.
var (
	// ErrEngineNotStarted is returned by Send (and producers) before Start
	// and after Stop has finished.
	ErrEngineNotStarted = errors.New("kstream: engine not started")
	// ErrEngineRunning is returned by Start on a running engine.
	ErrEngineRunning = errors.New("kstream: engine already running")
	// ErrStreamExists is returned by Add for a stream whose name the
	// engine already has.
	ErrStreamExists = errors.New("kstream: engine already has a stream of that name")
	// ErrUnknownStream is returned by Remove for a stream the engine does
	// not have.
	ErrUnknownStream = errors.New("kstream: engine has no such stream")
	// ErrNoFunction is returned by Add for a stream with no Handle,
	// HandleBatches or Func function: the engine would have nothing to run.
	ErrNoFunction = errors.New("kstream: stream has no function (use Handle, HandleBatches or Func)")
)

// DefaultStopTimeout bounds a graceful stop when the context given to Stop
// has no deadline of its own, and the stop that Run makes, unless the
// engine's StopTimeout says otherwise.
const DefaultStopTimeout = 30 * time.Second

// Restart backoff of ErrorPolicyRestart: it starts at the minimum, doubles
// after each crash, and is back to the minimum after a run that lasted
// longer than the maximum.
const (
	minRestartBackoff = 100 * time.Millisecond
	maxRestartBackoff = 10 * time.Second
)

// Engine runs streams and produces records: the Go form of kstreams'
// StreamEngine. Create it with NewEngine, give it streams with Add, and run
// it with Run (or Start and Stop).
//
// Lifecycle: Start runs the OnStartup hooks, connects the producer, starts
// every stream on a goroutine of its own and runs the AfterStartup hooks.
// Stop stops gracefully: it runs the OnStop hooks, stops fetching, lets each
// stream finish the record in hand, commits, leaves the groups, flushes the
// producer last (handlers may still send while finishing) and runs the
// AfterStop hooks; each step is bounded by Stop's context. No goroutine the
// engine started outlives Stop. Run is Start, a wait for its context (or a
// crash that stops the engine), and Stop.
//
// All methods are safe for concurrent use.
type Engine struct {
	cfg  config
	name string
	log  *slog.Logger

	hookMu sync.Mutex
	hooks  [numHooks][]Hook

	mu       sync.Mutex
	state    engineState
	runners  []*runner
	producer *kgo.Client
	stopCh   chan struct{} // closed when a crash asks the engine to stop
	stopErr  error         // the crash that asked, for ErrorPolicyStopApplication
	stopping chan struct{} // closed when Stop begins
	stopped  chan struct{} // closed when Stop has finished

	finishedCh chan struct{} // closed when every stream has finished or stopped (noteFinished)

	sendsClosed bool                        // Stop is closing the producer: sends fail at once
	gone        goneTopics                  // topics the producer must look up again
	inflight    sendCount                   // sends in progress, SendAsync records whose done has not returned
	asyncOps    atomic.Pointer[asyncOpPool] // SendAsync's sendOps, a pool per producer
	watches     asyncWatches                // the contexts of SendAsync records
	// sendable is the producer while sends may use it (activeProducer),
	// else nil; set under mu whenever state, producer or sendsClosed
	// change (setSendableLocked).
	sendable atomic.Pointer[kgo.Client]
}

type engineState int

const (
	engineNew engineState = iota
	engineStarting
	engineRunning
	engineStopping
	engineStopped
)

// Hook is a lifecycle function of an engine. An error from an OnStartup
// hook makes Start fail; errors of the other hooks are logged and returned
// by Start or Stop, joined.
type Hook func(ctx context.Context) error

const (
	hookOnStartup = iota
	hookAfterStartup
	hookOnStop
	hookAfterStop
	numHooks
)

// NewEngine returns an engine. It takes the options that apply to all of
// its streams: Brokers, TLS, SASL, Logger, OnError and Metrics (each used
// by the producer where it applies, and inherited by a stream that does
// not set its own), ClientOptions (applied to every stream and to the
// producer, before a stream's own ClientOptions, which override them), the
// engine's own StopTimeout and CrashLoop, and Name (the engine's title,
// used in logs). An option of streams only (Topics, Group, ResetOffset,
// ...) is an error wrapping ErrInvalidOption that names it, whatever its
// value.
func NewEngine(opts ...Option) (*Engine, error) {
	e := &Engine{inflight: sendCount{idle: make(chan struct{}, 1)}}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.apply(&e.cfg); err != nil {
			return nil, err
		}
	}
	c := &e.cfg
	c.noteDerived()
	if err := c.checkScope(forEngines); err != nil {
		return nil, err
	}
	e.name = c.name
	if e.name == "" {
		e.name = "engine"
	}
	e.log = c.logger
	if e.log == nil {
		e.log = slog.Default()
	}
	e.log = e.log.With("engine", e.name)
	return e, nil
}

// OnStartup registers a hook that Start runs, in registration order, before
// any stream starts. The producer is already connected: the hook may Send.
func (e *Engine) OnStartup(h Hook) { e.addHook(hookOnStartup, h) }

// AfterStartup registers a hook that Start runs once every stream has
// started.
func (e *Engine) AfterStartup(h Hook) { e.addHook(hookAfterStartup, h) }

// OnStop registers a hook that Stop runs before it stops the streams.
func (e *Engine) OnStop(h Hook) { e.addHook(hookOnStop, h) }

// AfterStop registers a hook that Stop runs last, once the streams have
// stopped and the producer is flushed and closed.
func (e *Engine) AfterStop(h Hook) { e.addHook(hookAfterStop, h) }

func (e *Engine) addHook(which int, h Hook) {
	if h == nil {
		return
	}
	e.hookMu.Lock()
	defer e.hookMu.Unlock()
	e.hooks[which] = append(e.hooks[which], h)
}

func (e *Engine) runHooks(ctx context.Context, which int, stopAtError bool) error {
	e.hookMu.Lock()
	hs := slices.Clone(e.hooks[which])
	e.hookMu.Unlock()
	var errs []error
	for i, h := range hs {
		if err := h(ctx); err != nil {
			err = fmt.Errorf("kstream: engine %q: %s hook %d: %w", e.name, hookNames[which], i+1, err)
			if stopAtError {
				return err
			}
			e.log.Error("hook failed", "err", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

var hookNames = [numHooks]string{"OnStartup", "AfterStartup", "OnStop", "AfterStop"}

// Runnable is a stream an engine can run: any *Stream[T] with a function.
// Add and Remove take it so that streams of different record types share
// one engine.
type Runnable interface {
	Name() string

	attach(e *Engine) error
	detach(e *Engine)
	run(loopCtx, handlerCtx context.Context) error
	policy() ErrorPolicy
	topicsForLog() []string
	closeGracefully() error
	forceClose() error
	metricsSet() *metricsSet
	calledFromListener() bool
	missingTopics() []string
	decoderUnavailable() string
	lagSource() (group string, topics []string, pattern *regexp.Regexp)
}

// Add gives the engine a stream. The stream must have a function (Handle,
// HandleBatches or Func) and a name no other stream of the engine has; it
// must not be open, must not belong to another engine, and its function
// must not still be running from an earlier run. A stream added
// to a running engine starts at once. The stream inherits the engine's
// Brokers, Logger, OnError and Metrics unless it set its own, and the
// engine's ClientOptions come before its own.
func (e *Engine) Add(s Runnable) error {
	if s == nil {
		return fmt.Errorf("kstream: Add: nil stream")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.runners {
		if r.name == s.Name() {
			return fmt.Errorf("%w: %q", ErrStreamExists, s.Name())
		}
	}
	if err := s.attach(e); err != nil {
		return err
	}
	r := &runner{s: s, name: s.Name(), state: StreamStopped}
	e.runners = append(e.runners, r)
	if e.state == engineRunning {
		e.startRunner(r)
	}
	return nil
}

// Remove stops a stream gracefully (it finishes the record in hand,
// commits and leaves its group, bounded by ctx) and takes it from the
// engine. The stream can then be added again, to this engine or another,
// once its function has returned. As Stop does, it reports a final commit
// that failed, and a stream that did not stop before the deadline, and it
// does not wait for a stream whose own function or listener calls it.
func (e *Engine) Remove(ctx context.Context, s Runnable) error {
	if s == nil {
		return fmt.Errorf("%w: nil", ErrUnknownStream)
	}
	e.mu.Lock()
	i := slices.IndexFunc(e.runners, func(r *runner) bool { return r.s == s })
	if i < 0 {
		e.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrUnknownStream, s.Name())
	}
	r := e.runners[i]
	e.runners = slices.Delete(e.runners, i, i+1)
	ts := stopTargetsLocked([]*runner{r})
	e.mu.Unlock()
	fromCtx, goroutine := callerRun(ctx)
	ctx, cancel := e.withStopDeadline(ctx)
	defer cancel()
	errs := e.stopRunners(ctx, ts, fromCtx, goroutine)
	forgetStreams(ts)
	releaseHandlerCtx(ts)
	s.detach(e)
	return errors.Join(errs...)
}

// Start starts the engine: OnStartup hooks, producer, streams, AfterStartup
// hooks. ctx bounds connecting the producer and the hooks; the streams run
// until Stop. Streams connect in the background: one that cannot is a crash,
// handled by its error policy.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	if e.state == engineStarting || e.state == engineRunning || e.state == engineStopping {
		e.mu.Unlock()
		return ErrEngineRunning
	}
	prev := e.state
	e.state = engineStarting // Send waits for the producer below
	e.setSendableLocked()
	e.mu.Unlock()
	fail := func(err error) error {
		e.mu.Lock()
		e.state, e.producer = prev, nil
		e.setSendableLocked()
		e.mu.Unlock()
		return err
	}
	brokers, opts, _ := e.cfg.connection(inherited{})
	secure, err := e.cfg.security(inherited{})
	if err != nil {
		return fail(fmt.Errorf("kstream: engine %q: producer: %w", e.name, err))
	}
	part, recCtx := newPartitioner()
	popts := append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.WithLogger(newKgoLogger(e.log)),
		kgo.AllowIdempotentProduceCancellation(),
		kgo.RecordPartitioner(part),
		kgo.ProducerLinger(0), // Send waits for each record: see producer.go
		// As many records as SendAsync keeps sendOps for
		// (async_ops.go), instead of franz-go's 50 000: beyond it
		// SendAsync allocated sendOps anew.
		kgo.MaxBufferedRecords(DefaultMaxBufferedRecords),
		kgo.ClientID(newClientID(e.name + "-producer")),
	}, e.cfg.metrics.clientOpts()...)
	popts = append(popts, secure...)
	popts = append(popts, opts...)
	producer, err := kgo.NewClient(popts...)
	if err != nil {
		return fail(fmt.Errorf("kstream: engine %q: producer: %w", e.name, err))
	}
	recCtx.noteHooks(producer)
	if err := producer.Ping(ctx); err != nil {
		producer.Close()
		return fail(fmt.Errorf("kstream: engine %q: no broker of %v answered: %w", e.name, brokers, explainConnErr(err, e.cfg.usesTLS(inherited{}), e.cfg.usesSASL(inherited{}))))
	}
	e.asyncOps.Store(new(asyncOpPool)) // the late promises of an earlier producer keep theirs
	e.mu.Lock()
	e.producer, e.sendsClosed = producer, false
	e.setSendableLocked()
	e.stopCh = make(chan struct{})
	e.stopping = make(chan struct{})
	e.stopped = make(chan struct{})
	e.finishedCh = make(chan struct{})
	e.stopErr = nil
	e.mu.Unlock()

	if err := e.runHooks(ctx, hookOnStartup, true); err != nil {
		// The hooks may have sent: their records fail with the
		// producer's close, as at Stop (a drain that times out is
		// logged; the hook's error is Start's).
		e.closeSends()
		_ = e.closeProducer(producer)
		return fail(err)
	}

	e.mu.Lock()
	e.state = engineRunning
	e.setSendableLocked()
	registerEngine(e)
	for _, r := range e.runners {
		e.startRunner(r)
	}
	e.mu.Unlock()
	e.log.Info("engine started")
	return e.runHooks(ctx, hookAfterStartup, false)
}

// closeSends makes every send from here on fail at once, so that the
// producer can be flushed and closed under no new record.
func (e *Engine) closeSends() {
	e.mu.Lock()
	e.sendsClosed = true
	e.setSendableLocked()
	e.mu.Unlock()
}

// closeProducer closes producer, which fails what it still buffers, and
// waits for the sends in progress and the done functions of SendAsync
// records (franz-go calls the failed records' promises on a goroutine of
// its own), so that every send has returned, and every done function too,
// when it does; then it stops the context watches. It reports a wait that
// timed out, which it logs.
func (e *Engine) closeProducer(producer *kgo.Client) error {
	producer.Close()
	defer e.stopWatches()
	if !e.inflight.wait(sendDrainTimeout) {
		e.log.Error("sends or SendAsync done functions still running after the producer closed", "waited", sendDrainTimeout)
		return fmt.Errorf("kstream: engine %q: sends or SendAsync done functions still running %v after the producer closed", e.name, sendDrainTimeout)
	}
	return nil
}

// Stop stops the engine gracefully; see Engine for the steps. Without a
// deadline on ctx, DefaultStopTimeout bounds it. When the deadline passes
// with a handler still running, its context is canceled; if it still does
// not return within a second, its stream is closed under it: what it
// processed is committed (within five seconds more), the record in hand is
// not, and Stop reports the stream. Such a stream is in state
// StreamStopping until its function returns; a Start meanwhile starts it
// again once it has. Stop also reports each stream whose final commit
// failed (its processed records will be delivered again); neither is a
// crash. Stop on an engine that is not running returns nil.
//
// Stop (or Remove) called from a stream's own function (a Handle or
// HandleBatches handler, a middleware, a Func function) does not wait for
// that stream, which cannot stop before the call returns: the stream stops
// fetching, and once the function returns it finishes as in any stop (the
// record in hand is processed if the handler returned nil), commits and
// leaves its group. Stop meanwhile stops the rest and returns; the producer
// is closed, so the function's sends after Stop fail with
// ErrEngineNotStarted. The call is recognised by its ctx, when it is the
// handler's ctx or derives from it (always pass that one), and, for a stream
// without PartitionConcurrency or KeyConcurrency, by its goroutine. Stop
// called from a stream's rebalance listener closes that stream without
// waiting for its leave, which finishes when the callback returns. Called
// from either while another Stop is at work, Stop returns nil at once: the
// Stop at work waits for the caller. Called from any other goroutine, Stop
// waits for every stream to leave its group, or for the deadline (and for
// a Stop at work to finish).
func (e *Engine) Stop(ctx context.Context) error {
	e.mu.Lock()
	switch e.state {
	case engineRunning:
	case engineStopping:
		// Another Stop is at work: wait for it, unless it waits for the
		// caller, a stream's function or listener.
		stopped := e.stopped
		fromStream := e.calledFromStreamLocked(ctx)
		e.mu.Unlock()
		if fromStream {
			return nil
		}
		select {
		case <-stopped:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("kstream: engine %q: waiting for a stop in progress: %w", e.name, ctx.Err())
		}
	default:
		e.mu.Unlock()
		return nil
	}
	e.state = engineStopping
	e.setSendableLocked()
	ts := stopTargetsLocked(e.runners)
	producer := e.producer
	stopped := e.stopped
	close(e.stopping)
	e.mu.Unlock()
	defer close(stopped)

	fromCtx, goroutine := callerRun(ctx)
	ctx, cancel := e.withStopDeadline(ctx)
	defer cancel()
	var errs []error
	if err := e.runHooks(ctx, hookOnStop, false); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, e.stopRunners(ctx, ts, fromCtx, goroutine)...)
	// The streams have stopped.
	e.closeSends()
	// Flush only what is buffered: with nothing to flush, an expired
	// deadline is no error.
	if producer.BufferedProduceRecords() > 0 {
		if err := producer.Flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("kstream: engine %q: flush producer: %w", e.name, err))
		}
	}
	if err := e.closeProducer(producer); err != nil {
		errs = append(errs, err)
	}
	unregisterEngine(e)
	forgetStreams(ts)
	releaseHandlerCtx(ts)
	e.cfg.metrics.forgetEngine(e.name)
	e.mu.Lock()
	e.state = engineStopped
	e.producer = nil
	e.setSendableLocked()
	e.mu.Unlock()
	e.log.Info("engine stopped")

	hookCtx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		hookCtx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
	}
	if err := e.runHooks(hookCtx, hookAfterStop, false); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// calledFromStreamLocked reports whether the caller, with ctx, is the
// function or a listener of one of the engine's streams. e.mu is held.
func (e *Engine) calledFromStreamLocked(ctx context.Context) bool {
	fromCtx, goroutine := callerRun(ctx)
	for _, r := range e.runners {
		if rn := r.cur; rn != nil && rn.calledBy(fromCtx, goroutine) {
			return true
		}
		if r.s.calledFromListener() {
			return true
		}
	}
	return false
}

// Run starts the engine, waits until ctx is done, a crash with
// ErrorPolicyStopEngine or ErrorPolicyStopApplication asks it to stop, or
// a bounded stream (StopAtEnd) has finished and every other stream has
// finished or stopped too, and stops it gracefully within the engine's
// StopTimeout (DefaultStopTimeout unless set). It returns nil after ctx is
// canceled, after every stream finished and after an ErrorPolicyStopEngine
// crash; after an ErrorPolicyStopApplication crash it returns an error
// wrapping the stream's.
// Errors of Start and of the graceful stop are returned too.
func (e *Engine) Run(ctx context.Context) error {
	startErr := e.Start(ctx)
	e.mu.Lock()
	running := e.state == engineRunning
	stopCh, stopping, finished := e.stopCh, e.stopping, e.finishedCh
	e.mu.Unlock()
	if startErr != nil && !running {
		return startErr
	}
	if startErr == nil {
		select {
		case <-ctx.Done():
		case <-stopCh:
		case <-stopping: // someone called Stop
		case <-finished: // every stream finished (StopAtEnd) or stopped
		}
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), e.cfg.stopTimeoutOr())
	defer cancel()
	err := e.Stop(stopCtx)
	e.mu.Lock()
	crash := e.stopErr
	e.mu.Unlock()
	return errors.Join(startErr, crash, err)
}

// requestStop stops every stream and wakes Run, after a crash whose policy
// stops the engine. cause is returned by Run (nil for ErrorPolicyStopEngine).
func (e *Engine) requestStop(cause error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	select {
	case <-e.stopCh:
		return
	default:
	}
	e.stopErr = cause
	close(e.stopCh)
	// Stop the whole engine, also when it was started with Start rather
	// than Run (Run waits for this stop instead of making its own).
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.stopTimeoutOr())
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			e.log.Error("stopping the engine after a crash", "err", err)
		}
	}()
}

// withStopDeadline bounds ctx by the engine's StopTimeout if it has no
// deadline of its own.
func (e *Engine) withStopDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, e.cfg.stopTimeoutOr())
}
