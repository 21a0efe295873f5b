package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	kafka "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// The commit policy of every consumer: at least once, each record marked
// (or committed) after it is handled, commits sent at most once a second.
const commitInterval = time.Second

// pollAll is how many records the franz-go baselines poll at once: as many
// as a kstream stream does by default, all the client has buffered
// (PollRecords(ctx, 0) is PollFetches).
const pollAll = 0

// pollRecords is how many records a baseline polls at once where the stream
// polls DefaultMaxPollRecords: a share group member and ExactlyOnce.
const pollRecords = kstream.DefaultMaxPollRecords

// saramaVersion is the Kafka version sarama is told it talks to; it decides
// which request versions sarama sends (sarama does not negotiate them).
// Sarama's default is 2.8; 3.9 is the newest 3.x, and every request sarama
// sends at 3.9 is within what kfake accepts.
var saramaVersion = sarama.V3_9_0_0

var discardLogger = slog.New(slog.DiscardHandler)

type consumer struct {
	name string // as shown in tables
	how  string // one line for the docs
	run  func(ctx context.Context, sp spec, m *meter, t *tally) error
	ref  string // the client its ratios are to; empty: the baseline
}

var consumers = map[string]consumer{
	"kstream-records": {
		name: "kstream Records",
		how:  "Stream[[]byte].Records range loop; default at-least-once mode (marks each record, franz-go autocommit), AutoCommitInterval 1s",
		run:  consumeKstreamRecords,
	},
	"kstream-handle": {
		name: "kstream Handle",
		how:  "Engine with one Stream[[]byte].Handle(handler); same commit mode; Engine.Start to last record (includes the engine's producer client connecting)",
		run:  consumeKstreamHandle,
	},
	"franz-go": {
		name: "franz-go PollRecords",
		how:  "kgo client: BlockRebalanceOnPoll, AutoCommitMarks, AutoCommitInterval 1s; PollRecords(0) (all buffered, as a stream), MarkCommitRecords, AllowRebalance",
		run:  consumeFranz,
	},
	"franz-go-last": {
		name: "franz-go PollRecords, mark last",
		how:  "as franz-go PollRecords, but walking the poll partition by partition (EachPartition) and marking only each partition's last record; with a stream's fetch settings (FetchMaxWait 500ms, FetchMaxBytes 8 MiB)",
		run:  consumeFranzLast,
	},
	"kafka-go": {
		name: "kafka-go Reader",
		how:  "Reader with GroupID, CommitInterval 1s, StartOffset FirstOffset, MaxWait 500ms; FetchMessage + CommitMessages(msg) per record (commits are queued and sent by the interval)",
		run:  consumeKafkaGo,
	},
	"sarama": {
		name: "sarama ConsumerGroup",
		how:  "ConsumerGroup (Version 3.9), Offsets.Initial OffsetOldest, AutoCommit.Interval 1s; ConsumeClaim loop with MarkMessage per record",
		run:  consumeSarama,
	},
	"kcat": {
		name: "kcat (librdkafka) -G",
		how:  "kcat -G (librdkafka's KafkaConsumer), auto.offset.reset earliest, auto commit every 1s, -c N, printing \"partition offset size\" per record (external process: its CPU and peak RSS, no Go heap)",
		run:  consumeKcat(true),
	},
	nogroupBaselineID: {
		name: "franz-go PollRecords, no group (count)",
		how:  "kgo client without a group, from the start; PollRecords(0) (all buffered, as a stream) and count, with a stream's fetch settings: the leanest loop, baseline of the rows without a group",
		run:  consumeFranzCount,
		ref:  nogroupBaselineID,
	},
	"kstream-records-nogroup": {
		name: "kstream Records, no group",
		how:  "Stream[[]byte].Records range loop without Group (no marks, no commits)",
		run:  consumeKstreamRecordsNoGroup,
		ref:  nogroupBaselineID,
	},
	"kstream-handle-nogroup": {
		name: "kstream Handle, no group",
		how:  "Engine with one Stream[[]byte].Handle(handler) without Group",
		run:  consumeKstreamHandleNoGroup,
		ref:  nogroupBaselineID,
	},
	"kcat-nogroup": {
		name: "kcat (librdkafka) -C, no group",
		how:  "kcat -C -o beginning on every partition, -c N, printing \"partition offset size\" per record",
		run:  consumeKcat(false),
		ref:  nogroupBaselineID,
	},
}

// leanFetchOpts are the fetch settings of the lean franz-go loops
// (franz-go-last, franz-go-count): those a stream's client has, so that
// the comparison with kstream is of the per-record work alone. The
// baseline (franz-go) keeps franz-go's defaults. A run's -fetch-max-bytes
// and -fetch-max-partition-bytes apply to them too.
func leanFetchOpts(sp spec) []kgo.Opt {
	return kstreamFetchOpts(sp, kgo.FetchMaxWait(kstream.DefaultFetchMaxWait), kgo.FetchMaxBytes(kstream.DefaultFetchMaxBytes))
}

// kstreamFetchOpts adds the run's fetch sizes (-fetch-max-bytes,
// -fetch-max-partition-bytes), if set, to a kstream consumer's client
// options; the other clients keep their defaults.
func kstreamFetchOpts(sp spec, opts ...kgo.Opt) []kgo.Opt {
	if sp.FetchMaxBytes > 0 {
		opts = append(opts, kgo.FetchMaxBytes(sp.FetchMaxBytes))
	}
	if sp.FetchMaxPartitionBytes > 0 {
		opts = append(opts, kgo.FetchMaxPartitionBytes(sp.FetchMaxPartitionBytes))
	}
	return opts
}

var consumerOrder = []string{"franz-go", "franz-go-last", "kstream-records", "kstream-handle", "kafka-go", "sarama", "kcat",
	nogroupBaselineID, "kstream-records-nogroup", "kstream-handle-nogroup", "kcat-nogroup"}

func consumeKstreamRecords(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	s, err := kstream.NewStream(codec.Bytes(),
		kstream.Brokers(sp.Brokers...),
		kstream.Topics(sp.Topic),
		kstream.Group(sp.Group),
		kstream.Logger(discardLogger),
		kstream.ClientOptions(kstreamFetchOpts(sp, kgo.AutoCommitInterval(commitInterval))...),
	)
	if err != nil {
		return err
	}
	for rec, err := range s.Records(ctx) {
		if err != nil {
			s.Close()
			return err
		}
		if t.add(rec.Partition, rec.Offset, len(rec.Value)) {
			break
		}
	}
	if err := s.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return ctx.Err()
}

func consumeKstreamHandle(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	eng, err := kstream.NewEngine(
		kstream.Brokers(sp.Brokers...),
		kstream.Logger(discardLogger),
		kstream.ClientOptions(kstreamFetchOpts(sp, kgo.AutoCommitInterval(commitInterval))...),
	)
	if err != nil {
		return err
	}
	s, err := kstream.NewStream(codec.Bytes(),
		kstream.Topics(sp.Topic),
		kstream.Group(sp.Group),
		kstream.Name("bench"),
	)
	if err != nil {
		return err
	}
	s.Handle(func(_ context.Context, rec kstream.Record[[]byte]) error {
		t.add(rec.Partition, rec.Offset, len(rec.Value))
		return nil
	})
	if err := eng.Add(s); err != nil {
		return err
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	var werr error
	select {
	case <-t.done:
	case <-ctx.Done():
		werr = ctx.Err()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := eng.Stop(sctx); err != nil && werr == nil {
		werr = fmt.Errorf("stop: %w", err)
	}
	if h, ok := eng.StreamHealth("bench"); ok && h.LastErr != nil && werr == nil {
		werr = h.LastErr
	}
	return werr
}

func consumeFranz(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(sp.Brokers...),
		kgo.ConsumerGroup(sp.Group),
		kgo.ConsumeTopics(sp.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.BlockRebalanceOnPoll(),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(commitInterval),
	)
	if err != nil {
		return err
	}
	defer cl.CloseAllowingRebalance()
	for {
		fs := cl.PollRecords(ctx, pollAll)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(topic string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("fetch %s/%d: %w", topic, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		recs := fs.Records()
		done := false
		for _, r := range recs {
			if t.add(r.Partition, r.Offset, len(r.Value)) {
				done = true
			}
		}
		cl.MarkCommitRecords(recs...)
		cl.AllowRebalance()
		if done {
			return nil
		}
	}
}

// consumeFranzLast is the leanest hand-written franz-go loop: no slice of
// the poll's records, and one mark per partition per poll.
func consumeFranzLast(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	cl, err := kgo.NewClient(append(leanFetchOpts(sp),
		kgo.SeedBrokers(sp.Brokers...),
		kgo.ConsumerGroup(sp.Group),
		kgo.ConsumeTopics(sp.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.BlockRebalanceOnPoll(),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(commitInterval),
	)...)
	if err != nil {
		return err
	}
	defer cl.CloseAllowingRebalance()
	last := make([]*kgo.Record, 0, sp.Partitions)
	for {
		fs := cl.PollRecords(ctx, pollAll)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(topic string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("fetch %s/%d: %w", topic, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		done := false
		last = last[:0]
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, r := range p.Records {
				if t.add(r.Partition, r.Offset, len(r.Value)) {
					done = true
				}
			}
			if n := len(p.Records); n > 0 {
				last = append(last, p.Records[n-1])
			}
		})
		cl.MarkCommitRecords(last...)
		cl.AllowRebalance()
		if done {
			return nil
		}
	}
}

func consumeKafkaGo(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:        sp.Brokers,
		GroupID:        sp.Group,
		Topic:          sp.Topic,
		StartOffset:    kafka.FirstOffset,
		CommitInterval: commitInterval,
		// A fetch with no data waits up to MaxWait (10s by default) and
		// Close waits for it: 500ms, sarama's default, keeps Close short.
		// It changes nothing while data is there (MinBytes is 1).
		MaxWait: 500 * time.Millisecond,
	})
	defer r.Close()
	for {
		msg, err := r.FetchMessage(ctx)
		if err != nil {
			return err
		}
		done := t.add(int32(msg.Partition), msg.Offset, len(msg.Value))
		if err := r.CommitMessages(ctx, msg); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		if done {
			return nil
		}
	}
}

type saramaHandler struct{ t *tally }

func (saramaHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h saramaHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			h.t.add(msg.Partition, msg.Offset, len(msg.Value))
			sess.MarkMessage(msg, "")
		case <-sess.Context().Done():
			return nil
		}
	}
}

func consumeSarama(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	cfg := sarama.NewConfig()
	cfg.Version = saramaVersion
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = true
	cfg.Consumer.Offsets.AutoCommit.Interval = commitInterval
	cfg.Consumer.Return.Errors = true
	cg, err := sarama.NewConsumerGroup(sp.Brokers, sp.Group, cfg)
	if err != nil {
		return err
	}
	defer cg.Close()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		for err := range cg.Errors() {
			select {
			case errc <- err:
			default:
			}
		}
	}()
	consumed := make(chan error, 1)
	go func() {
		for cctx.Err() == nil {
			if err := cg.Consume(cctx, []string{sp.Topic}, saramaHandler{t}); err != nil {
				if errors.Is(err, sarama.ErrClosedConsumerGroup) {
					break
				}
				consumed <- err
				return
			}
		}
		consumed <- nil
	}()
	select {
	case <-t.done:
		cancel()
		<-consumed
		return nil
	case err := <-consumed:
		if err == nil {
			err = ctx.Err()
		}
		return err
	case err := <-errc:
		return err
	}
}
