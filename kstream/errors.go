package kstream

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Errors returned when the caller used a stream in a way it does not allow.
// Each is returned, or yielded, as is; compare with errors.Is.
var (
	// ErrClosed is yielded once by ranging a stream after Close, and
	// returned by Commit and CommitRecords on a closed stream. Open starts a
	// closed stream again.
	ErrClosed = errors.New("kstream: stream closed")

	// ErrNotOpen is returned by Commit and CommitRecords on a stream that
	// was never opened.
	ErrNotOpen = errors.New("kstream: stream not open")

	// ErrAlreadyOpen is returned by Open on a stream that is open.
	ErrAlreadyOpen = errors.New("kstream: stream already open")

	// ErrConcurrentRange is yielded once by a range over a stream that
	// another range is already iterating. A stream has one position, so two
	// loops over it would each see an arbitrary half of the records.
	ErrConcurrentRange = errors.New("kstream: stream is already being ranged over")

	// ErrNoGroup is returned by Commit and CommitRecords on a stream
	// without a Group: such a stream reads every partition and has nowhere
	// to commit to.
	ErrNoGroup = errors.New("kstream: stream has no consumer group, so there is nothing to commit to")

	// ErrInvalidOption is wrapped by every error returned or yielded for
	// an option that is bad, or would have no effect, or a combination of
	// options that cannot work: by NewStream and NewEngine, by Open (for
	// ClientOptions that would bypass the stream), by Records, Batches and
	// Use (for PartitionConcurrency and KeyConcurrency, which apply to
	// Handle functions run by an engine, and a bad batch size) and by
	// Engine.Add (for HandleBatches with a bad size), and by every send of
	// a Producer made with a nil engine, an empty topic or a nil encoder.
	// The message names the option. A stream run by an engine that crashes with it is not
	// restarted: see ErrorPolicyRestart.
	ErrInvalidOption = errors.New("kstream: invalid option")
)

// DecodeError is yielded, with the record's metadata, key, headers and Raw
// but a zero Value, for a record whose value the decoder rejected. It
// describes that one record: if the loop body continues, the record counts as
// handled (its offset may be committed) and the stream goes on with the next.
// To stop instead, return or break; the record then stays uncommitted.
type DecodeError struct {
	Topic     string
	Partition int32
	Offset    int64
	Record    *kgo.Record // the record as fetched, with its raw value
	Err       error       // the decoder's error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("kstream: decode record topic %q partition %d offset %d: %v", e.Topic, e.Partition, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// FetchError is yielded for an error fetching from a partition, or from the
// group as a whole (then Topic is empty and Partition is -1). Errors that
// franz-go retries by itself are logged, not yielded.
//
// A FetchError that is not Fatal (data loss detected and skipped over, for
// instance) describes one event: if the body continues, so does the stream. A
// Fatal one (authorization failure, unsupported version, topic recreated
// under the stream) is the last value the range yields; ranging again yields
// it again.
type FetchError struct {
	Topic     string
	Partition int32
	Err       error
	Fatal     bool
}

func (e *FetchError) Error() string {
	kind := "fetch"
	if e.Fatal {
		kind = "fatal fetch"
	}
	if e.Topic == "" {
		return fmt.Sprintf("kstream: %s error: %v", kind, e.Err)
	}
	return fmt.Sprintf("kstream: %s error topic %q partition %d: %v", kind, e.Topic, e.Partition, e.Err)
}

func (e *FetchError) Unwrap() error { return e.Err }

// fetchErrorKind says what the iterator does with an error from a poll.
type fetchErrorKind int

const (
	errEnd      fetchErrorKind = iota // the client closed or ctx ended: stop quietly
	errRetried                        // franz-go retries it: log only
	errNonFatal                       // yield, go on
	errFatal                          // yield, stop
)

func classifyFetchError(err error) fetchErrorKind {
	switch {
	case errors.Is(err, kgo.ErrClientClosed):
		return errEnd
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		switch ke {
		case kerr.TopicAuthorizationFailed, kerr.GroupAuthorizationFailed,
			kerr.ClusterAuthorizationFailed, kerr.SaslAuthenticationFailed,
			kerr.UnsupportedSaslMechanism, kerr.UnsupportedVersion,
			kerr.UnknownTopicID, kerr.InconsistentTopicID,
			kerr.InvalidGroupID, kerr.InconsistentGroupProtocol:
			return errFatal
		}
		if ke.Retriable {
			return errRetried
		}
	}
	var gs *kgo.ErrGroupSession
	if errors.As(err, &gs) {
		// franz-go rejoins by itself unless the cause was fatal (above).
		return errRetried
	}
	if kgo.IsRetryableBrokerErr(err) {
		return errRetried
	}
	return errNonFatal
}

// errRecord is the Record yielded with a *FetchError or *EmitError: the
// partition it is about and, for an *EmitError, the source record's
// offset (-1 otherwise).
func errRecord[T any](err error) Record[T] {
	switch e := err.(type) {
	case *FetchError:
		return Record[T]{Topic: e.Topic, Partition: e.Partition, Offset: -1}
	case *EmitError:
		return Record[T]{Topic: e.Topic, Partition: e.Partition, Offset: e.Offset}
	}
	return Record[T]{Offset: -1}
}

// isFatal reports whether err, yielded by popLocked, ends the stream.
func isFatal(err error) bool {
	fe, ok := err.(*FetchError)
	return ok && fe.Fatal
}
