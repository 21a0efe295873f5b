package codec

import (
	"errors"
	"fmt"
)

// ErrUnavailable is wrapped by the error of a decoder (or encoder) that
// cannot do its work now for a reason that is not the record's: the same
// bytes may decode later. A schema-registry codec wraps it when the registry
// cannot be reached, answers with a server error (5xx), or does not answer
// in time.
//
// A stream never yields a decode error that wraps ErrUnavailable as a
// *kstream.DecodeError: that would let a loop that goes on after decode
// errors skip records that are good. It keeps the record, retries decoding
// it with backoff, logs each failure and reports it in health, and goes on
// when the decoder succeeds (or the stream is closed or its context ends).
// A producer's Send returns the encoder's error as it is; the caller may
// retry.
//
// Every other error from Decode describes the record: the stream yields it
// as a *kstream.DecodeError and goes on with the next record if the loop
// does. Test for ErrUnavailable with errors.Is; wrap it with [Unavailable].
var ErrUnavailable = errors.New("codec: unavailable, retry later")

// Unavailable returns an error that wraps both [ErrUnavailable] and cause,
// for decoders of your own: return it when a dependency the decoder needs
// (a registry, a key service) cannot be reached, so that a stream retries
// the record instead of yielding it as bad. Unavailable(nil) is nil.
func Unavailable(cause error) error {
	if cause == nil {
		return nil
	}
	if errors.Is(cause, ErrUnavailable) {
		return cause
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, cause)
}
