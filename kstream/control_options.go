package kstream

import (
	"fmt"
	"time"
)

// controlConfig holds the options of control_options.go.
type controlConfig struct {
	startAt   time.Time
	stopAtEnd bool
}

// StartAt makes each partition for which the stream's group has no
// committed offset (every partition, for a stream without a group) start
// at its first record with a timestamp at or after t, as Kafka's
// ListOffsets by time finds it; where no record is at or after t, the
// partition starts at its end. It replaces ResetOffset's choice for such
// partitions; a partition with a committed offset resumes from it, and
// InitialOffsets takes precedence for the partitions it names. A committed
// offset that no longer exists still falls back to ResetOffset.
//
// With StopAtEnd, StartAt(t) reads the records from t to the moment the
// stream was opened (or its partitions assigned), then ends: a replay of a
// time range. Use a new group (or none) for a replay, so that no committed
// offset takes precedence. Scope: streams.
func StartAt(t time.Time) Option {
	return option{name: "StartAt", scope: forStreams, fn: func(c *config) error {
		if t.IsZero() {
			return fmt.Errorf("%w: StartAt: zero time", ErrInvalidOption)
		}
		c.control.startAt = t
		return nil
	}}
}

// StopAtEnd makes the stream bounded: its iterators end, without an error,
// once every partition the stream reads has been consumed up to its end
// offset, captured when the stream is opened (without a group: the end
// offsets are known when Open returns) or when the partition is assigned
// to this member (with a group). The end offset is the high watermark, or
// the last stable offset when the stream reads with
// kgo.FetchIsolationLevel(kgo.ReadCommitted()). A partition that is empty
// from where the stream starts is done at once; records produced after the
// end was captured are not yielded. A member assigned no partition ends at
// once.
//
// A partition is consumed up to its end when the body has finished with
// its last record before the end (the record is processed, as for a
// commit), so the iterator ends after the last body returns, and ranging
// the stream again ends at once. Seeking back makes a partition
// unfinished again. A Handle, HandleBatches or Func stream run by an
// engine that reaches its end finishes: its state becomes StreamFinished,
// which counts as healthy, and Engine.Run returns nil once every stream of
// the engine has finished or stopped.
//
// StopAtEnd needs the partitions to be known: with TopicPattern it needs a
// Group (the group's assignment says which partitions are read). Scope:
// streams.
func StopAtEnd() Option {
	return option{name: "StopAtEnd", scope: forStreams, fn: func(c *config) error {
		c.control.stopAtEnd = true
		return nil
	}}
}

// validateControl checks the combinations of the options of
// control_options.go with the others.
func (c *config) validateControl() error {
	if c.control.stopAtEnd && c.pattern != "" && c.group == "" {
		return fmt.Errorf("%w: StopAtEnd with TopicPattern %q needs Group: without a group the partitions a pattern reads are not known when the stream opens, so its end cannot be defined", ErrInvalidOption, c.pattern)
	}
	return nil
}
