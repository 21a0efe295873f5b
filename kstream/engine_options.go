// Options of engines and error policies: what an engine does when a
// stream crashes, and how long it takes to stop.

package kstream

import (
	"fmt"
	"time"
)

// OnError sets what an engine does when a stream's function fails or
// panics, overriding ErrorPolicyStop. It applies to streams run by an
// Engine (Handle, HandleBatches and Func); a stream ranged directly returns
// its errors to the caller instead. It is an option of both: given to an
// engine, it is inherited by the streams that do not set their own.
func OnError(p ErrorPolicy) Option {
	return option{name: "OnError", scope: forBoth, fn: func(c *config) error {
		if p < ErrorPolicyStop || p > ErrorPolicyStopApplication {
			return fmt.Errorf("%w: OnError: unknown policy %d", ErrInvalidOption, int(p))
		}
		c.onError, c.onErrorSet = p, true
		return nil
	}}
}

// StopTimeout bounds an engine's graceful stop, overriding
// DefaultStopTimeout (30 s): the stop that Run makes when its context is
// canceled (or a crash stops the engine), and a Stop or Remove whose
// context has no deadline. Within it the streams finish the record in hand,
// commit and leave their groups, and the producer flushes. At the deadline
// the handlers' contexts are canceled; a handler that still has not
// returned a second later has its stream closed under it (commit and leave
// within five seconds more), so Run returns within d plus those allowances
// at worst. Set it below Kubernetes' terminationGracePeriodSeconds (30 s by
// default) minus a few seconds. It is an option of engines; it is the Go
// form of Kafka Streams' close timeout.
func StopTimeout(d time.Duration) Option {
	return option{name: "StopTimeout", scope: forEngines, fn: func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: StopTimeout: must be positive, got %v", ErrInvalidOption, d)
		}
		c.stopTimeout = d
		return nil
	}}
}

// stopTimeoutOr returns the engine's StopTimeout, else DefaultStopTimeout.
func (c *config) stopTimeoutOr() time.Duration {
	if c.stopTimeout > 0 {
		return c.stopTimeout
	}
	return DefaultStopTimeout
}

// CrashLoop sets when an engine's health reports a stream restarting in a
// loop: after restarts restarts (by ErrorPolicyRestart) within the window,
// overriding DefaultCrashLoopRestarts (3) within DefaultCrashLoopWindow (a
// minute). Such a stream is unhealthy (StreamHealth.CrashLoop, and a 503
// from HealthHandler) until fewer restarts than that fall within the
// window; before its restarts-th restart it is not. It is an option of
// engines; Kafka has no such setting.
func CrashLoop(restarts int, within time.Duration) Option {
	return option{name: "CrashLoop", scope: forEngines, fn: func(c *config) error {
		if restarts <= 0 {
			return fmt.Errorf("%w: CrashLoop: restarts must be positive, got %d", ErrInvalidOption, restarts)
		}
		if within <= 0 {
			return fmt.Errorf("%w: CrashLoop: window must be positive, got %v", ErrInvalidOption, within)
		}
		c.crashLoopN, c.crashLoopWindow = restarts, within
		return nil
	}}
}

// crashLoop returns the engine's crash-loop threshold and window.
func (c *config) crashLoop() (n int, window time.Duration) {
	n, window = c.crashLoopN, c.crashLoopWindow
	if n == 0 {
		n = DefaultCrashLoopRestarts
	}
	if window == 0 {
		window = DefaultCrashLoopWindow
	}
	return n, window
}

// crashLoopKeep is how many restart times crash-loop detection needs.
func (c *config) crashLoopKeep() int {
	n, _ := c.crashLoop()
	return n
}

// ErrorPolicy says what an engine does when a stream crashes: its function
// returns an error or panics.
type ErrorPolicy int

const (
	// ErrorPolicyStop logs the crash and stops the stream; the other
	// streams go on. It is the default, as in kstreams.
	ErrorPolicyStop ErrorPolicy = iota
	// ErrorPolicyRestart reopens the stream from its committed offsets
	// after a backoff, so the failed record is delivered again. A crash
	// that no restart can heal, because its cause is in the program or its
	// configuration, stops the stream instead, as ErrorPolicyStop does,
	// and its log says so: an error wrapping ErrInvalidOption
	// (ClientOptions that Open rejects, say), or one of Kafka's
	// UNSUPPORTED_VERSION, UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE,
	// INVALID_GROUP_ID and INCONSISTENT_GROUP_PROTOCOL, from Open, a fatal
	// *FetchError or the function itself. Failed authorizations and
	// authentications are restarted: an operator can fix them on the
	// brokers while the program runs. So is a fatal FetchError for a topic
	// deleted or recreated under the stream: the new run looks the topic
	// up again.
	ErrorPolicyRestart
	// ErrorPolicyStopEngine stops every stream of the engine; Run returns
	// nil.
	ErrorPolicyStopEngine
	// ErrorPolicyStopApplication stops every stream; Run returns an error
	// wrapping the crash, so that main can exit non-zero.
	ErrorPolicyStopApplication
)

func (p ErrorPolicy) String() string {
	switch p {
	case ErrorPolicyStop:
		return "stop"
	case ErrorPolicyRestart:
		return "restart"
	case ErrorPolicyStopEngine:
		return "stop-engine"
	case ErrorPolicyStopApplication:
		return "stop-application"
	}
	return fmt.Sprintf("ErrorPolicy(%d)", int(p))
}
