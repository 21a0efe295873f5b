package kstream

import (
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Option configures a Stream (NewStream) and, where it makes sense, an
// Engine (NewEngine): Brokers, ClientOptions and Logger given to an engine
// are inherited by its streams.
type Option interface {
	apply(*config) error
}

type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }

// OffsetReset says where a stream starts in a partition for which its group
// has no committed offset, or whose committed offset no longer exists. It is
// Kafka's auto.offset.reset (kstreams' auto_offset_reset).
type OffsetReset int

const (
	// Earliest starts at the oldest record still in the partition, so that
	// nothing produced before the group's first start is missed. It is the
	// default.
	Earliest OffsetReset = iota
	// Latest starts after the newest record: only records produced after
	// the stream joined are read.
	Latest
)

func (r OffsetReset) String() string {
	switch r {
	case Earliest:
		return "earliest"
	case Latest:
		return "latest"
	}
	return fmt.Sprintf("OffsetReset(%d)", int(r))
}

// DefaultMaxPollRecords is the number of records a stream polls at once
// unless MaxPollRecords says otherwise; it is Kafka's max.poll.records default.
const DefaultMaxPollRecords = 500

// DefaultFetchMaxWait is how long a fetch waits for records to fill it,
// overriding franz-go's 5s default (ClientOptions(kgo.FetchMaxWait(d))
// overrides it again).
const DefaultFetchMaxWait = 500 * time.Millisecond

// DefaultCloseTimeout bounds the final commit Close makes.
const DefaultCloseTimeout = 30 * time.Second

type config struct {
	// testBeforePing, set by in-package tests only, runs in openSession
	// between starting the client and pinging the brokers.
	testBeforePing func()

	brokers     []string
	topics      []string
	pattern     string
	patternRe   *regexp.Regexp
	group       string
	name        string
	initial     []TopicPartitionOffset
	manual      bool
	listeners   []RebalanceListener
	reset       OffsetReset
	maxPoll     int
	clientOpts  []kgo.Opt
	logger      *slog.Logger
	onError     ErrorPolicy
	onErrorSet  bool
	metrics     *metricsSet
	concurrency concurrency
}

// Brokers sets the seed brokers ("host:port") to connect to. Without it a
// stream uses its engine's brokers, else the comma-separated list in the
// KAFKA_BROKERS environment variable, else localhost:9092.
func Brokers(addrs ...string) Option {
	return optionFunc(func(c *config) error {
		if len(addrs) == 0 {
			return fmt.Errorf("%w: Brokers: no address given", ErrInvalidOption)
		}
		for _, a := range addrs {
			if strings.TrimSpace(a) == "" {
				return fmt.Errorf("%w: Brokers: empty address in %q", ErrInvalidOption, addrs)
			}
		}
		c.brokers = append([]string(nil), addrs...)
		return nil
	})
}

// Topics sets the topics a stream consumes. Repeating the option adds
// topics. It cannot be combined with TopicPattern.
func Topics(topics ...string) Option {
	return optionFunc(func(c *config) error {
		if len(topics) == 0 {
			return fmt.Errorf("%w: Topics: no topic given", ErrInvalidOption)
		}
		for _, t := range topics {
			if t == "" {
				return fmt.Errorf("%w: Topics: empty topic name in %q", ErrInvalidOption, topics)
			}
		}
		c.topics = append(c.topics, topics...)
		return nil
	})
}

// TopicPattern subscribes to every topic whose whole name matches the
// regular expression (Go's regexp syntax), including topics created later:
// they are picked up at the next metadata refresh, which franz-go makes every
// 5 minutes by default (ClientOptions(kgo.MetadataMaxAge(d)) shortens it).
// It cannot be combined with Topics.
func TopicPattern(pattern string) Option {
	return optionFunc(func(c *config) error {
		re, err := regexp.Compile(anchored(pattern))
		if err != nil {
			return fmt.Errorf("%w: TopicPattern %q: %v", ErrInvalidOption, pattern, err)
		}
		if c.pattern != "" {
			return fmt.Errorf("%w: TopicPattern given twice (%q and %q)", ErrInvalidOption, c.pattern, pattern)
		}
		c.pattern, c.patternRe = pattern, re
		return nil
	})
}

// anchored makes a pattern match whole topic names, as franz-go's regex
// consumption does.
func anchored(p string) string {
	if !strings.HasPrefix(p, "^") {
		p = "^" + p
	}
	if !strings.HasSuffix(p, "$") {
		p += "$"
	}
	return p
}

// Group sets the consumer group (Kafka's group.id). Members of a group share
// the partitions of the stream's topics and commit their progress to it.
// Without a group, a stream reads every partition, commits nothing, and
// starts from the ResetOffset position each time it opens.
func Group(id string) Option {
	return optionFunc(func(c *config) error {
		if id == "" {
			return fmt.Errorf("%w: Group: empty group id", ErrInvalidOption)
		}
		c.group = id
		return nil
	})
}

// Name sets the stream's name, used in logs, metrics and by the engine to
// tell streams apart. Without it a stream gets a unique generated name.
func Name(name string) Option {
	return optionFunc(func(c *config) error {
		if name == "" {
			return fmt.Errorf("%w: Name: empty name", ErrInvalidOption)
		}
		c.name = name
		return nil
	})
}

// InitialOffsets sets where to start in the given partitions, overriding the
// group's committed offsets, as kstreams' initial_offsets does. It is for
// applications that keep their own offsets (in their database, say).
//
// The offsets are applied once per Open, when each named partition is first
// assigned to this member. So, as with kstreams, they apply again after every
// restart: load them from where your application stores its progress rather
// than hard-coding them. A named partition that is not in this member's first
// assignment is logged as a warning and ignored for the rest of this Open. An
// offset past the end of the partition falls back to ResetOffset, without a
// warning. Each topic must be one of the stream's topics (or match its
// pattern).
func InitialOffsets(offsets ...TopicPartitionOffset) Option {
	return optionFunc(func(c *config) error {
		for _, o := range offsets {
			switch {
			case o.Topic == "":
				return fmt.Errorf("%w: InitialOffsets: offset %d for partition %d has no topic", ErrInvalidOption, o.Offset, o.Partition)
			case o.Partition < 0:
				return fmt.Errorf("%w: InitialOffsets: topic %q has negative partition %d", ErrInvalidOption, o.Topic, o.Partition)
			case o.Offset < 0:
				return fmt.Errorf("%w: InitialOffsets: topic %q partition %d has negative offset %d", ErrInvalidOption, o.Topic, o.Partition, o.Offset)
			}
		}
		c.initial = append(c.initial, offsets...)
		return nil
	})
}

// ManualCommit turns off automatic commits (kstreams' enable_auto_commit=False):
// nothing is committed unless the code calls Commit or CommitRecords, not
// even on Close or before a revoke. Pair it with ManualCommitRebalanceListener
// to commit before partitions move to another member.
//
// Without ManualCommit, a stream commits at least once: each record is
// marked processed when the loop body finishes with it, and marked records
// are committed periodically, before a revoke and on Close.
func ManualCommit() Option {
	return optionFunc(func(c *config) error {
		c.manual = true
		return nil
	})
}

// Listener adds a RebalanceListener. Repeating the option adds listeners;
// they are called in the order given. Initial offsets and metrics cleanup are
// built in, so choosing a listener never loses them.
func Listener(l RebalanceListener) Option {
	return optionFunc(func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: Listener: nil listener", ErrInvalidOption)
		}
		c.listeners = append(c.listeners, l)
		return nil
	})
}

// ResetOffset sets where to start when the group has no committed offset for
// a partition, or the committed offset is out of range (Kafka's
// auto.offset.reset), overriding the default Earliest.
func ResetOffset(r OffsetReset) Option {
	return optionFunc(func(c *config) error {
		if r != Earliest && r != Latest {
			return fmt.Errorf("%w: ResetOffset: unknown reset %d (use Earliest or Latest)", ErrInvalidOption, int(r))
		}
		c.reset = r
		return nil
	})
}

// MaxPollRecords sets how many records a stream takes from the client at
// once, overriding DefaultMaxPollRecords (Kafka's max.poll.records). Polled
// records that the loop has not reached are never committed; they bound how
// much is fetched ahead of processing.
func MaxPollRecords(n int) Option {
	return optionFunc(func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%w: MaxPollRecords: must be positive, got %d", ErrInvalidOption, n)
		}
		c.maxPoll = n
		return nil
	})
}

// ClientOptions passes franz-go options through to the stream's client, the
// way kstreams passes aiokafka keyword arguments through: session timeout,
// fetch sizes, TLS, SASL, rack, metadata refresh and so on. See franz-go's
// pkg/kgo/config.go. Repeating the option adds options.
//
// The stream sets these itself, after the options given here, so they
// cannot be overridden: ConsumerGroup (use Group), ConsumeTopics and
// ConsumeRegex (use Topics and TopicPattern), the OnPartitions callbacks
// (use Listener), AdjustFetchOffsetsFn (use InitialOffsets),
// BlockRebalanceOnPoll, AutoCommitMarks and DisableAutoCommit (use
// ManualCommit), AutoCommitCallback (failed automatic commits are logged and
// counted). kgo.ConsumerGroup on a stream without Group, and
// kgo.ConsumeRegex on a stream without TopicPattern, make Open fail with
// ErrInvalidOption. Everything else, SeedBrokers and ConsumeResetOffset
// included, overrides what the stream would set.
func ClientOptions(opts ...kgo.Opt) Option {
	return optionFunc(func(c *config) error {
		c.clientOpts = append(c.clientOpts, opts...)
		return nil
	})
}

// Logger sets the logger, overriding slog.Default(). franz-go's own logs go
// to it too, its info level mapped to slog's debug level.
func Logger(l *slog.Logger) Option {
	return optionFunc(func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: Logger: nil logger", ErrInvalidOption)
		}
		c.logger = l
		return nil
	})
}

// OnError sets what an engine does when a stream's function fails or
// panics, overriding ErrorPolicyStop. It applies to streams run by an
// Engine (Handle and Func); a stream ranged directly returns its errors to
// the caller instead.
func OnError(p ErrorPolicy) Option {
	return optionFunc(func(c *config) error {
		if p < ErrorPolicyStop || p > ErrorPolicyStopApplication {
			return fmt.Errorf("%w: OnError: unknown policy %d", ErrInvalidOption, int(p))
		}
		c.onError, c.onErrorSet = p, true
		return nil
	})
}

// ErrorPolicy says what an engine does when a stream crashes: its function
// returns an error or panics.
type ErrorPolicy int

const (
	// ErrorPolicyStop logs the crash and stops the stream; the other
	// streams go on. It is the default, as in kstreams.
	ErrorPolicyStop ErrorPolicy = iota
	// ErrorPolicyRestart reopens the stream from its committed offsets
	// after a backoff, so the failed record is delivered again.
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

// inherited is what a stream takes from its engine for the options it does
// not set itself.
type inherited struct {
	brokers    []string
	clientOpts []kgo.Opt
	logger     *slog.Logger
	onError    ErrorPolicy
	metrics    *metricsSet
}

// metricsOf returns the metrics a stream reports to: its own, else its
// engine's, else none.
func (c *config) metricsOf(in inherited) *metricsSet {
	if c.metrics != nil {
		return c.metrics
	}
	return in.metrics
}

// connection resolves a stream's brokers, client options and logger: its
// own, else its engine's, else the defaults.
func (c *config) connection(in inherited) (brokers []string, opts []kgo.Opt, log *slog.Logger) {
	brokers = resolveBrokers(c.brokers, in.brokers)
	opts = append(append([]kgo.Opt(nil), in.clientOpts...), c.clientOpts...)
	log = c.logger
	if log == nil {
		log = in.logger
	}
	if log == nil {
		log = slog.Default()
	}
	return brokers, opts, log
}

// resolveBrokers picks the brokers for a stream that has none of its own.
func resolveBrokers(own, inherited []string) []string {
	if len(own) > 0 {
		return own
	}
	if len(inherited) > 0 {
		return inherited
	}
	if env := os.Getenv("KAFKA_BROKERS"); strings.TrimSpace(env) != "" {
		var out []string
		for _, a := range strings.Split(env, ",") {
			if a = strings.TrimSpace(a); a != "" {
				out = append(out, a)
			}
		}
		return out
	}
	return []string{"localhost:9092"}
}

// validate checks the combinations that single options cannot.
func (c *config) validate() error {
	switch {
	case len(c.topics) == 0 && c.pattern == "":
		return fmt.Errorf("%w: no Topics or TopicPattern given", ErrInvalidOption)
	case len(c.topics) > 0 && c.pattern != "":
		return fmt.Errorf("%w: Topics %q and TopicPattern %q cannot be combined", ErrInvalidOption, c.topics, c.pattern)
	}
	seen := make(map[topicPartition]bool, len(c.initial))
	for _, o := range c.initial {
		if !c.subscribes(o.Topic) {
			return fmt.Errorf("%w: InitialOffsets: topic %q is not one of the stream's topics", ErrInvalidOption, o.Topic)
		}
		tp := topicPartition{o.Topic, o.Partition}
		if seen[tp] {
			return fmt.Errorf("%w: InitialOffsets: topic %q partition %d given twice", ErrInvalidOption, o.Topic, o.Partition)
		}
		seen[tp] = true
	}
	if c.maxPoll == 0 {
		c.maxPoll = DefaultMaxPollRecords
	}
	return nil
}

func (c *config) subscribes(topic string) bool {
	if c.patternRe != nil {
		return c.patternRe.MatchString(topic)
	}
	for _, t := range c.topics {
		if t == topic {
			return true
		}
	}
	return false
}

// topicPartition identifies a partition.
type topicPartition struct {
	topic     string
	partition int32
}
