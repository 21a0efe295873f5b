package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// The transform scenarios consume the pre-produced topic and, for each
// record, write one record (the same value) to an output topic of the run's
// own, on the partition of the source record, as a consume-transform-
// produce job does. Every client uses one group and one client, and is
// measured from just before its client is created to the end of its last
// commit (default mode: every output acknowledged and its source committed;
// exactly-once: the last transaction committed) and its close.
const (
	scenarioTransform    = "transform"
	scenarioTransformEOS = "transform-eos"
)

// txnCommitInterval is how often the exactly-once clients end their
// transaction: kstream's default under ExactlyOnce, and the hand-written
// loop's.
const txnCommitInterval = 100 * time.Millisecond

type transformer struct {
	name string
	how  string
	run  func(ctx context.Context, sp spec, m *meter, t *tally) error
}

var transformers = map[string]map[string]transformer{
	scenarioTransform: {
		"franz-go": {
			name: "franz-go produce, mark on ack",
			how:  "kgo client: BlockRebalanceOnPoll, AutoCommitMarks, AutoCommitInterval 1s; PollRecords(0) (all buffered, as a stream), Produce(output) per record with a promise that marks its source record (MarkCommitRecords) once acknowledged, AllowRebalance; Flush and CommitMarkedOffsets at the end",
			run:  transformFranz,
		},
		"kstream-emit": {
			name: "kstream Records+Emit",
			how:  "Stream[[]byte].Records range loop, Emit(ctx, out, value, ToPartition(p)) per record; default at-least-once mode, CommitInterval 1s; the loop's ctx canceled after the last record, Close",
			run:  transformKstreamEmit,
		},
		"kstream-send": {
			name: "kstream Records+Engine.Send",
			how:  "the same loop with Engine.Send(ctx, out, value, ToPartition(p)) per record: one round trip each",
			run:  transformKstreamSend,
		},
	},
	scenarioTransformEOS: {
		"franz-go": {
			name: "franz-go GroupTransactSession",
			how:  "kgo.GroupTransactSession (read_committed, BlockRebalanceOnPoll): PollRecords(500), Produce(output) per record, End(TryCommit) and Begin once 100 ms have passed since Begin, AllowRebalance; End(TryCommit) at the end",
			run:  transformFranzTxn,
		},
		"kstream-eos": {
			name: "kstream ExactlyOnce Records+Emit",
			how:  "Stream[[]byte] with ExactlyOnce() (CommitInterval 100 ms, its default): Records range loop, Emit(ctx, out, value, ToPartition(p)) per record; the loop's ctx canceled after the last record, Close",
			run:  transformKstreamEOS,
		},
	},
}

var transformOrder = map[string][]string{
	scenarioTransform:    {"franz-go", "kstream-emit", "kstream-send"},
	scenarioTransformEOS: {"franz-go", "kstream-eos"},
}

func isTransform(scenario string) bool {
	return scenario == scenarioTransform || scenario == scenarioTransformEOS
}

// runTransform runs one transform client in the child: the tally checks
// the input records (each once, in order, per partition) and its own meter
// is a dummy, since the run ends at the last commit, not the last record.
func runTransform(ctx context.Context, sp spec, m *meter) (Result, error) {
	c, ok := transformers[sp.Scenario][sp.Client]
	if !ok {
		return Result{}, fmt.Errorf("unknown client %q in %q", sp.Client, sp.Scenario)
	}
	t := newTally(sp.Partitions, int64(sp.Records), newMeter())
	err := c.run(ctx, sp, m, t)
	res := Result{Records: t.total.Load()}
	if err == nil {
		err = t.check(sp)
	}
	for i := range t.parts {
		res.Bytes += t.parts[i].bytes
	}
	return res, err
}

// seen counts a record in t and notes the first on m; it reports whether
// it was the last.
func seen(t *tally, m *meter, r *kgo.Record) bool {
	m.First()
	return t.add(r.Partition, r.Offset, len(r.Value))
}

func transformFranz(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	var failed atomic.Pointer[error]
	cl, err := kgo.NewClient(append(franzProduceOpts(sp),
		kgo.SeedBrokers(sp.Brokers...),
		kgo.ConsumerGroup(sp.Group),
		kgo.ConsumeTopics(sp.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.BlockRebalanceOnPoll(),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(commitInterval),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	// Output goes to its source's partition number, so the acks of one
	// source partition come in offset order and marking each on its ack
	// never passes a record whose output is not acknowledged.
	for done := false; !done; {
		fs := cl.PollRecords(ctx, pollAll)
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fetchErr(fs); err != nil {
			return err
		}
		fs.EachRecord(func(r *kgo.Record) {
			if seen(t, m, r) {
				done = true
			}
			cl.Produce(ctx, &kgo.Record{Topic: sp.OutTopic, Partition: r.Partition, Value: r.Value}, func(_ *kgo.Record, err error) {
				if err != nil {
					keepFirst(&failed, err)
					return
				}
				cl.MarkCommitRecords(r)
			})
		})
		cl.AllowRebalance()
		if e := failed.Load(); e != nil {
			return *e
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	if e := failed.Load(); e != nil {
		return *e
	}
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		return err
	}
	cl.Close()
	m.Stop()
	return nil
}

func fetchErr(fs kgo.Fetches) error {
	var ferr error
	fs.EachError(func(topic string, p int32, err error) {
		if ferr == nil {
			ferr = fmt.Errorf("fetch %s/%d: %w", topic, p, err)
		}
	})
	return ferr
}

func transformFranzTxn(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	sess, err := kgo.NewGroupTransactSession(append(franzProduceOpts(sp),
		kgo.SeedBrokers(sp.Brokers...),
		kgo.ConsumerGroup(sp.Group),
		kgo.ConsumeTopics(sp.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.BlockRebalanceOnPoll(),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.TransactionalID(uniqueName("txn")),
	)...)
	if err != nil {
		return err
	}
	defer sess.Close()
	var failed atomic.Pointer[error]
	acked := func(_ *kgo.Record, err error) {
		if err != nil {
			keepFirst(&failed, err)
		}
	}
	end := func() error {
		committed, err := sess.End(ctx, kgo.TryCommit)
		if err != nil {
			return err
		}
		if !committed {
			return errors.New("transaction aborted")
		}
		if e := failed.Load(); e != nil {
			return *e
		}
		return nil
	}
	if err := sess.Begin(); err != nil {
		return err
	}
	began := time.Now()
	for done := false; !done; {
		fs := sess.PollRecords(ctx, pollRecords)
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fetchErr(fs); err != nil {
			return err
		}
		fs.EachRecord(func(r *kgo.Record) {
			if seen(t, m, r) {
				done = true
			}
			sess.Produce(ctx, &kgo.Record{Topic: sp.OutTopic, Partition: r.Partition, Value: r.Value}, acked)
		})
		if !done && time.Since(began) >= txnCommitInterval {
			if err := end(); err != nil {
				return err
			}
			if err := sess.Begin(); err != nil {
				return err
			}
			began = time.Now()
		}
		sess.AllowRebalance()
	}
	if err := end(); err != nil {
		return err
	}
	sess.Close()
	m.Stop()
	return nil
}

// kstreamTransform is the kstream loop of every kstream client: write
// each record with out, cancel the loop after the last, and Close.
func kstreamTransform(ctx context.Context, m *meter, t *tally, s *kstream.Stream[[]byte], out func(ctx context.Context, rec kstream.Record[[]byte]) error) error {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var runErr error
	for rec, err := range s.Records(lctx) {
		if err != nil {
			runErr = err
			break
		}
		m.First()
		last := t.add(rec.Partition, rec.Offset, len(rec.Value))
		if err := out(lctx, rec); err != nil {
			runErr = err
			break
		}
		if last {
			cancel() // a normal end: Close commits
		}
	}
	if err := s.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("close: %w", err)
	}
	if runErr == nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		m.Stop()
	}
	return runErr
}

func transformKstreamEmit(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	s, err := kstream.NewStream(codec.Bytes(),
		kstream.Brokers(sp.Brokers...),
		kstream.Topics(sp.Topic),
		kstream.Group(sp.Group),
		kstream.Logger(discardLogger),
		kstream.CommitInterval(commitInterval),
		kstream.ClientOptions(franzProduceOpts(sp)...),
	)
	if err != nil {
		return err
	}
	return kstreamTransform(ctx, m, t, s, func(ctx context.Context, rec kstream.Record[[]byte]) error {
		return s.Emit(ctx, sp.OutTopic, rec.Value, kstream.ToPartition(rec.Partition))
	})
}

func transformKstreamSend(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	eng, stop, err := newEngine(ctx, sp)
	if err != nil {
		return err
	}
	defer stop()
	s, err := kstream.NewStream(codec.Bytes(),
		kstream.Brokers(sp.Brokers...),
		kstream.Topics(sp.Topic),
		kstream.Group(sp.Group),
		kstream.Logger(discardLogger),
		kstream.CommitInterval(commitInterval),
	)
	if err != nil {
		return err
	}
	return kstreamTransform(ctx, m, t, s, func(ctx context.Context, rec kstream.Record[[]byte]) error {
		_, err := eng.Send(ctx, sp.OutTopic, rec.Value, kstream.ToPartition(rec.Partition))
		return err
	})
}

func transformKstreamEOS(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	s, err := kstream.NewStream(codec.Bytes(),
		kstream.Brokers(sp.Brokers...),
		kstream.Topics(sp.Topic),
		kstream.Group(sp.Group),
		kstream.Logger(discardLogger),
		kstream.ExactlyOnce(),
		kstream.ClientOptions(franzProduceOpts(sp)...),
	)
	if err != nil {
		return err
	}
	return kstreamTransform(ctx, m, t, s, func(ctx context.Context, rec kstream.Record[[]byte]) error {
		return s.Emit(ctx, sp.OutTopic, rec.Value, kstream.ToPartition(rec.Partition))
	})
}

// checkOutput checks, in the parent, that a transform run wrote one output
// per input: the output topic holds n records (read_committed under
// exactly-once, where transaction markers take offsets too).
func (a *admin) checkOutput(ctx context.Context, topic string, partitions int, n int64, readCommitted bool) error {
	ends, err := a.endOffsets(ctx, topic, partitions)
	if err != nil {
		return fmt.Errorf("end offsets of the output: %w", err)
	}
	left := map[int32]int64{}
	for p, e := range ends {
		if e > 0 {
			left[int32(p)] = e
		}
	}
	opts := []kgo.Opt{kgo.SeedBrokers(a.brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords()}
	if readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var got int64
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading the output: %d of %d records, %d partitions not read to the end: %w", got, n, len(left), err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset+1 >= left[r.Partition] {
				delete(left, r.Partition)
			}
			if !r.Attrs.IsControl() {
				got++
			}
		})
	}
	if got != n {
		return fmt.Errorf("the output holds %d records, want %d (one per input)", got, n)
	}
	return nil
}
