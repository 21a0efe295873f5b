package kstream

import (
	"errors"
	"fmt"
	"time"
)

// DefaultTxnCommitInterval is how often an ExactlyOnce stream ends its
// transaction when CommitInterval is not given (Kafka Streams' default
// under exactly-once). In the default mode, without CommitInterval,
// franz-go's autocommit interval applies (5 s).
const DefaultTxnCommitInterval = 100 * time.Millisecond

// ExactlyOnce makes the stream consume and produce through one
// transactional client (Kafka transactions, KIP-447) and read
// read_committed: the offsets of the records processed and every record
// emitted for them (Emit) are committed in one transaction, ended at a
// record boundary every CommitInterval (default 100 ms), before a revoke
// completes, and on Close. A transaction that cannot commit is aborted and
// every record since the previous one is delivered again; nothing it
// emitted is ever visible to a read_committed consumer. See
// docs/exactly-once.md. It is an option of streams and needs Group; it
// cannot be combined with ManualCommit.
//
// The transactional ID is stable per member:
// ClientOptions(kgo.TransactionalID(id)) when given, else derived from the
// group, the stream's name and InstanceID when set (so that a restarted
// instance fences its predecessor at once), else random (then a crashed
// member's open transaction holds read_committed readers of its output
// until the transaction timeout, 40 s by default).
func ExactlyOnce() Option {
	return option{name: "ExactlyOnce", scope: forStreams, fn: func(c *config) error {
		c.exactlyOnce = true
		return nil
	}}
}

// CommitInterval sets how often commits end: franz-go's autocommit
// interval in the default mode (5 s unless given), the transaction
// interval under ExactlyOnce (100 ms unless given). It is an option of
// streams, needs Group, and has no effect with ManualCommit (an error).
func CommitInterval(d time.Duration) Option {
	return option{name: "CommitInterval", scope: forStreams, fn: func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: CommitInterval: must be positive, got %v", ErrInvalidOption, d)
		}
		c.commitInterval = d
		return nil
	}}
}

// ReadCommitted makes the stream read with isolation level
// read_committed: records of open transactions wait until they commit,
// and records of aborted transactions are never yielded. ExactlyOnce
// implies it. It is an option of streams.
func ReadCommitted() Option {
	return option{name: "ReadCommitted", scope: forStreams, fn: func(c *config) error {
		c.readCommitted = true
		return nil
	}}
}

// validateTxn checks the options of Emit and ExactlyOnce.
func (c *config) validateTxn() error {
	switch {
	case c.exactlyOnce && c.group == "":
		return fmt.Errorf("%w: ExactlyOnce needs Group: transactions commit a group's offsets", ErrInvalidOption)
	case c.exactlyOnce && c.manual:
		return fmt.Errorf("%w: ExactlyOnce cannot be combined with ManualCommit: transactions end every CommitInterval", ErrInvalidOption)
	case c.isSet("CommitInterval") && c.group == "":
		return fmt.Errorf("%w: CommitInterval needs Group: a stream without a group does not commit", ErrInvalidOption)
	case c.isSet("CommitInterval") && c.manual:
		return fmt.Errorf("%w: CommitInterval has no effect with ManualCommit: only Commit and CommitRecords commit", ErrInvalidOption)
	}
	return nil
}

// errCommitUnderExactlyOnce is returned by Commit and CommitRecords of an
// ExactlyOnce stream, whose commits are its transactions.
var errCommitUnderExactlyOnce = errors.New("kstream: Commit and CommitRecords are not available under ExactlyOnce: offsets are committed in the stream's transactions, every CommitInterval, before a revoke and on Close")
