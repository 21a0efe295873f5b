package kstream

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
)

// Option configures a Stream (NewStream) or an Engine (NewEngine). Each
// option has a scope, given in its documentation:
//
//   - options of streams: Topics, TopicPattern, Group, InitialOffsets,
//     ManualCommit, Listener, ResetOffset, MaxPollRecords, InstanceID,
//     PartitionConcurrency, KeyConcurrency, StartAt, StopAtEnd, ExactlyOnce,
//     CommitInterval and ReadCommitted;
//   - options of engines: StopTimeout and CrashLoop;
//   - options of both: Brokers, TLS, SASL, ClientOptions, Logger, OnError,
//     Metrics and Name. Given to an engine, all but Name are inherited by
//     its streams (see NewEngine); Name names the engine.
//
// An option given where it has no effect is an error wrapping
// ErrInvalidOption that names it, whatever its value: NewEngine rejects
// ResetOffset(Earliest) as it rejects ResetOffset(Latest). So are the
// combinations that would make an option ineffective (Listener or
// ManualCommit without Group, for instance); see NewStream.
type Option interface {
	apply(*config) error
}

// optionScope says where an option has an effect.
type optionScope uint8

const (
	forStreams optionScope = 1 << iota
	forEngines
	forBoth = forStreams | forEngines
)

// option is an Option that records, when applied, that it was given, so
// that NewStream and NewEngine check what was set rather than guess it
// from values.
type option struct {
	name  string
	scope optionScope
	fn    func(*config) error
}

func (o option) apply(c *config) error {
	if err := o.fn(c); err != nil {
		return err
	}
	c.noteSet(o.name, o.scope)
	return nil
}

// optionFunc is an Option that does not record itself; the options made
// with it are recognised from their values by noteDerived.
type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }

// setOption is an option that was given, in the order given.
type setOption struct {
	name  string
	scope optionScope
}

// noteSet records that the option name was given.
func (c *config) noteSet(name string, scope optionScope) {
	if !c.isSet(name) {
		c.set = append(c.set, setOption{name, scope})
	}
}

// isSet reports whether the option name was given.
func (c *config) isSet(name string) bool {
	for _, o := range c.set {
		if o.name == name {
			return true
		}
	}
	return false
}

// noteDerived records the options made with optionFunc, which do not
// record themselves; each of them leaves a value no default has.
func (c *config) noteDerived() {
	switch c.concurrency.mode {
	case concurrencyPartition:
		c.noteSet("PartitionConcurrency", forStreams)
	case concurrencyKey:
		c.noteSet("KeyConcurrency", forStreams)
	}
	if c.metrics != nil {
		c.noteSet("Metrics", forBoth)
	}
}

// checkScope rejects the first option given that has no effect on what
// is being made: a stream (forStreams, by NewStream) or an engine.
func (c *config) checkScope(what optionScope) error {
	for _, o := range c.set {
		if o.scope&what != 0 {
			continue
		}
		if what == forEngines {
			return fmt.Errorf("%w: NewEngine: %s is an option of streams, not of engines", ErrInvalidOption, o.name)
		}
		return fmt.Errorf("%w: NewStream: %s is an option of engines, not of streams", ErrInvalidOption, o.name)
	}
	return nil
}

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

// DefaultMaxPollRecords is the number of records a share stream (ShareGroup)
// or an ExactlyOnce stream takes from its client at once unless
// MaxPollRecords says otherwise; it is Kafka's max.poll.records default. It
// also sizes a concurrent stream's queues (PartitionConcurrency,
// KeyConcurrency). Other
// streams take all their client has buffered (see MaxPollRecords).
const DefaultMaxPollRecords = 500

// DefaultFetchMaxWait is how long a fetch waits for records to fill it,
// overriding franz-go's 5s default (ClientOptions(kgo.FetchMaxWait(d))
// overrides it again).
const DefaultFetchMaxWait = 500 * time.Millisecond

// DefaultFetchMaxBytes bounds the bytes one fetch response may carry,
// overriding franz-go's 50 MiB default (ClientOptions(kgo.FetchMaxBytes(n))
// overrides it again). A stream's client holds up to about two responses
// per broker it fetches from (one the loop works through, the next fetched
// meanwhile), so this bounds its memory: reading 1M records of 100 B over
// 48 partitions, a stream peaked at 83–88 MiB of RSS with it, against 218
// MiB for franz-go with its default and 173–180 MiB for kcat (librdkafka),
// and read faster (see docs/performance.md). Each partition still gets at most franz-go's 1 MiB
// per fetch (kgo.FetchMaxPartitionBytes, Kafka's max.partition.fetch.bytes),
// so a fetch of up to 8 partitions is not limited by it.
const DefaultFetchMaxBytes = 8 << 20

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
	shareGroup  string // ShareGroup (share.go)
	name        string
	initial     []TopicPartitionOffset
	manual      bool
	listeners   []RebalanceListener
	reset       OffsetReset
	maxPoll     int
	maxPollSet  bool // MaxPollRecords was given
	clientOpts  []kgo.Opt
	logger      *slog.Logger
	onError     ErrorPolicy
	onErrorSet  bool
	metrics     *metricsSet
	concurrency concurrency

	tls             *tls.Config    // TLS
	sasl            sasl.Mechanism // SASL
	instanceID      string         // InstanceID
	stopTimeout     time.Duration  // StopTimeout; 0: DefaultStopTimeout
	crashLoopN      int            // CrashLoop; 0: DefaultCrashLoopRestarts
	crashLoopWindow time.Duration  // CrashLoop; 0: DefaultCrashLoopWindow
	tracing         *tracing       // Tracing

	set []setOption // the options given, in order

	control controlConfig // StartAt, StopAtEnd (control_options.go)

	exactlyOnce    bool          // ExactlyOnce (txn_options.go)
	commitInterval time.Duration // CommitInterval; 0: the mode's default
	readCommitted  bool          // ReadCommitted
}

// Brokers sets the seed brokers ("host:port") to connect to. Without it a
// stream uses its engine's brokers, else the comma-separated list in the
// KAFKA_BROKERS environment variable, else localhost:9092.
func Brokers(addrs ...string) Option {
	return option{name: "Brokers", scope: forBoth, fn: func(c *config) error {
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
	}}
}

// Topics sets the topics a stream consumes. Repeating the option adds
// topics. It cannot be combined with TopicPattern.
func Topics(topics ...string) Option {
	return option{name: "Topics", scope: forStreams, fn: func(c *config) error {
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
	}}
}

// TopicPattern subscribes to every topic whose whole name matches the
// regular expression (Go's regexp syntax), including topics created later:
// they are picked up at the next metadata refresh, which franz-go makes every
// 5 minutes by default (ClientOptions(kgo.MetadataMaxAge(d)) shortens it).
// It cannot be combined with Topics.
func TopicPattern(pattern string) Option {
	return option{name: "TopicPattern", scope: forStreams, fn: func(c *config) error {
		re, err := regexp.Compile(anchored(pattern))
		if err != nil {
			return fmt.Errorf("%w: TopicPattern %q: %v", ErrInvalidOption, pattern, err)
		}
		if c.pattern != "" {
			return fmt.Errorf("%w: TopicPattern given twice (%q and %q)", ErrInvalidOption, c.pattern, pattern)
		}
		c.pattern, c.patternRe = pattern, re
		return nil
	}}
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
	return option{name: "Group", scope: forStreams, fn: func(c *config) error {
		if id == "" {
			return fmt.Errorf("%w: Group: empty group id", ErrInvalidOption)
		}
		c.group = id
		return nil
	}}
}

// Name sets the stream's name, used in logs, metrics and by the engine to
// tell streams apart. Without it a stream gets a unique generated name.
func Name(name string) Option {
	return option{name: "Name", scope: forBoth, fn: func(c *config) error {
		if name == "" {
			return fmt.Errorf("%w: Name: empty name", ErrInvalidOption)
		}
		c.name = name
		return nil
	}}
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
	return option{name: "InitialOffsets", scope: forStreams, fn: func(c *config) error {
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
	}}
}

// ManualCommit turns off automatic commits (kstreams' enable_auto_commit=False):
// nothing is committed unless the code calls Commit or CommitRecords, not
// even on Close or before a revoke. Pair it with ManualCommitRebalanceListener
// to commit before partitions move to another member. It is an option of
// streams, and needs Group: without a group there is nothing to commit to.
//
// Without ManualCommit, a stream commits at least once: each record is
// marked processed when the loop body finishes with it, and marked records
// are committed periodically, before a revoke and on Close.
func ManualCommit() Option {
	return option{name: "ManualCommit", scope: forStreams, fn: func(c *config) error {
		c.manual = true
		return nil
	}}
}

// Listener adds a RebalanceListener. Repeating the option adds listeners;
// they are called in the order given. Initial offsets and metrics cleanup are
// built in, so choosing a listener never loses them. It is an option of
// streams, and needs Group: only a group member has rebalances.
func Listener(l RebalanceListener) Option {
	return option{name: "Listener", scope: forStreams, fn: func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: Listener: nil listener", ErrInvalidOption)
		}
		c.listeners = append(c.listeners, l)
		return nil
	}}
}

// InstanceID makes the stream a static member of its group (KIP-345,
// Kafka's group.instance.id), with id as its instance ID; without it the
// stream is a dynamic member with a new identity each time it opens.
//
// A dynamic member that dies without leaving its group (a crash, a killed
// pod) keeps its partitions until its session times out (45 s by default,
// kgo.SessionTimeout), and the group cannot finish a rebalance meanwhile, so
// a replacement waits that long. A static member that opens again with
// the same id takes its place at once, with the same partitions and no
// rebalance. In exchange, a static member does not leave its group when it
// closes: its partitions wait for it (and are not consumed) until it comes
// back or its session times out, so raise the session timeout to cover a
// restart. Each member of a group needs an id of its own that stays the
// same across its restarts: a Kubernetes StatefulSet's pod name, say. Two
// live members with one id fence each other. It is an option of streams,
// and needs Group.
func InstanceID(id string) Option {
	return option{name: "InstanceID", scope: forStreams, fn: func(c *config) error {
		if strings.TrimSpace(id) == "" {
			return fmt.Errorf("%w: InstanceID: empty id", ErrInvalidOption)
		}
		c.instanceID = id
		return nil
	}}
}

// ResetOffset sets where to start when the group has no committed offset for
// a partition, or the committed offset is out of range (Kafka's
// auto.offset.reset), overriding the default Earliest. It is an option of
// streams: NewEngine rejects it, also as ResetOffset(Earliest).
func ResetOffset(r OffsetReset) Option {
	return option{name: "ResetOffset", scope: forStreams, fn: func(c *config) error {
		if r != Earliest && r != Latest {
			return fmt.Errorf("%w: ResetOffset: unknown reset %d (use Earliest or Latest)", ErrInvalidOption, int(r))
		}
		c.reset = r
		return nil
	}}
}

// MaxPollRecords bounds how many records a stream takes from its client at
// once (Kafka's max.poll.records). Without it a stream takes all the client
// has buffered, a fetch response per broker, so that franz-go fetches the
// next response while the loop works through this one (franz-go fetches
// again from a broker only once its last response was taken whole); a share
// stream and an ExactlyOnce stream take DefaultMaxPollRecords. With a bound,
// the client holds one response per broker instead of about two, and the
// loop waits for each fetch once it reaches the end of a response. Polled
// records that the loop has not reached are never committed.
func MaxPollRecords(n int) Option {
	return option{name: "MaxPollRecords", scope: forStreams, fn: func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%w: MaxPollRecords: must be positive, got %d", ErrInvalidOption, n)
		}
		c.maxPoll = n
		return nil
	}}
}

// ClientOptions passes franz-go options through to the stream's client, the
// way kstreams passes aiokafka keyword arguments through: session timeout,
// fetch sizes, rack, metadata refresh and so on (TLS and SASL have options
// of their own). See franz-go's
// pkg/kgo/config.go. Repeating the option adds options.
//
// The stream sets these itself, after the options given here, so they
// cannot be overridden: ConsumerGroup (use Group), ConsumeTopics and
// ConsumeRegex (use Topics and TopicPattern), the OnPartitions callbacks
// (use Listener), AdjustFetchOffsetsFn (use InitialOffsets),
// BlockRebalanceOnPoll, AutoCommitMarks and DisableAutoCommit (use
// ManualCommit), AutoCommitCallback (failed automatic commits are logged and
// counted), and WithContext (the client's own context, which Close cancels
// at its deadline so that a hung broker cannot hold it). The OnPartitions
// callbacks include OnPartitionsCallbackBlocked. kgo.ConsumerGroup on a stream without Group, and
// kgo.ConsumeRegex on a stream without TopicPattern, make Open fail with
// ErrInvalidOption. Everything else, SeedBrokers and ConsumeResetOffset
// included, overrides what the stream would set.
//
// A group stream offers the balancers cooperative-sticky, range, roundrobin
// and kafkajs's RoundRobinAssigner, in that order, so that a group of
// streams runs cooperatively and members of other clients on their defaults
// can join it (docs/interop.md); kgo.Balancers here replaces that list.
// kgo.ServerSideBalancer opts into the consumer group protocol of KIP-848
// (docs/rebalance.md).
func ClientOptions(opts ...kgo.Opt) Option {
	return option{name: "ClientOptions", scope: forBoth, fn: func(c *config) error {
		c.clientOpts = append(c.clientOpts, opts...)
		return nil
	}}
}

// Logger sets the logger, overriding slog.Default(). franz-go's own logs go
// to it too, its info level mapped to slog's debug level.
func Logger(l *slog.Logger) Option {
	return option{name: "Logger", scope: forBoth, fn: func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: Logger: nil logger", ErrInvalidOption)
		}
		c.logger = l
		return nil
	}}
}

// inherited is what a stream takes from its engine for the options it does
// not set itself.
type inherited struct {
	engine     *Engine // the engine running the stream, nil for one ranged directly
	tls        *tls.Config
	sasl       sasl.Mechanism
	brokers    []string
	clientOpts []kgo.Opt
	logger     *slog.Logger
	onError    ErrorPolicy
	metrics    *metricsSet
	tracing    *tracing
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
	if err := c.validateShare(); err != nil {
		return err
	}
	switch {
	case len(c.topics) == 0 && c.pattern == "":
		return fmt.Errorf("%w: no Topics or TopicPattern given", ErrInvalidOption)
	case len(c.topics) > 0 && c.pattern != "":
		return fmt.Errorf("%w: Topics %q and TopicPattern %q cannot be combined", ErrInvalidOption, c.topics, c.pattern)
	case c.group == "" && c.isSet("Listener"):
		return fmt.Errorf("%w: Listener needs Group: a stream without a group has no rebalances to report", ErrInvalidOption)
	case c.group == "" && c.isSet("InstanceID"):
		return fmt.Errorf("%w: InstanceID needs Group: only a group member has a membership to keep", ErrInvalidOption)
	case c.group == "" && c.isSet("ManualCommit"):
		return fmt.Errorf("%w: ManualCommit needs Group: a stream without a group has nowhere to commit to", ErrInvalidOption)
	}
	if err := c.validateControl(); err != nil {
		return err
	}
	if err := c.validateTxn(); err != nil {
		return err
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
	} else {
		c.maxPollSet = true
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
