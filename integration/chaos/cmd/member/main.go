// Command member is one member of a consumer group for the chaos suite
// (package chaos): a process of its own, so that the suite can kill it with
// SIGKILL the way production kills a pod.
//
// It consumes one topic in one group with a kstream stream and appends one
// line per processed record, "partition offset\n", to the -out file. The line
// is written (one write(2) per record, no user-space buffer) before the loop
// body returns, so a record counts as processed exactly when it is in the
// file: a SIGKILL loses nothing that was written, and a record that was
// marked processed (and so may be committed) is always in the file.
//
// SIGTERM or SIGINT, or the end of standard input (the suite died), stop it
// gracefully: the loop ends at the next record boundary and the stream
// commits and leaves the group. It exits 0 after a clean stop and 1 if the
// stream or its close failed.
//
// On standard output it reports events, one per line, for the suite to
// follow: "ASSIGNED <partitions>", "REVOKED <partitions>", "LOST
// <partitions>", and finally "STOPPED <duration>" (from the signal to the
// end of the close).
//
// Modes (-mode):
//
//	records  a Records loop with Use, default (at-least-once) commits
//	manual   a Records loop with ManualCommit and ManualCommitRebalanceListener,
//	         committing every -commit-every records and, for the records
//	         finished since, every half second
//	engine   an Engine running a Handle stream (default commits), stopped
//	         by Run when the signal cancels its context
//	franz    no SDK: the same member on franz-go alone, as a control
//	share    a Records loop of a share group stream (ShareGroup, -group
//	         naming the share group): each record the body finishes is
//	         accepted; a poison record (offset % -poison-every == 7) is
//	         written to the -rejected file and rejected with Ack(AckReject)
//	         instead
//	share-franz  the share mode on franz-go alone, as a control: PollRecords,
//	         Record.Ack per record, Close on the signal
//	emit     a Records loop that, for each record, writes the line and emits
//	         "partition offset member" to the -emit-to topic (kstream.Emit,
//	         default at-least-once mode)
//	eos      the emit member under kstream.ExactlyOnce(), its transactional
//	         ID random (a killed member's transaction ends at the
//	         -txn-timeout)
//	eos-static  eos with kstream.InstanceID(-instance-id): the transactional
//	         ID is derived from it, so that a member started again with the
//	         same id fences its dead predecessor's transaction at once
//
// In the emit modes the file lists every processing (an aborted
// transaction's records are processed again); the output topic is what
// counts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

func main() {
	var (
		brokers     = flag.String("brokers", os.Getenv("KAFKA_BROKERS"), "comma-separated seed brokers")
		topic       = flag.String("topic", "chaos", "topic to consume")
		group       = flag.String("group", "chaos", "consumer group")
		mode        = flag.String("mode", "records", "records, manual or engine")
		out         = flag.String("out", "", "file to append processed records to (required)")
		delay       = flag.Duration("delay", time.Millisecond, "work per record (a sleep)")
		commitEvery = flag.Int("commit-every", 50, "manual mode: commit after this many records")
		session     = flag.Duration("session-timeout", 3*time.Second, "group session timeout")
		heartbeat   = flag.Duration("heartbeat", 300*time.Millisecond, "group heartbeat interval")
		rebalance   = flag.Duration("rebalance-timeout", 10*time.Second, "group rebalance timeout")
		autocommit  = flag.Duration("autocommit", time.Second, "interval of automatic commits of processed records")
		stopTimeout = flag.Duration("stop-timeout", 20*time.Second, "engine mode: graceful stop deadline")
		clientID    = flag.String("client-id", "member", "Kafka client ID, shown by the group coordinator")
		verbose     = flag.Bool("v", false, "log at debug level (franz-go's logs included)")
		rejected    = flag.String("rejected", "", "share mode: file to append rejected (poison) records to")
		poisonEvery = flag.Int64("poison-every", 50, "share mode: a record whose offset % this is 7 is poison")
		emitTo      = flag.String("emit-to", "", "emit modes: the output topic")
		memberID    = flag.Int("member-id", 0, "emit modes: the member's number, written in each output")
		instanceID  = flag.String("instance-id", "", "eos-static mode: the member's InstanceID")
		txnTimeout  = flag.Duration("txn-timeout", 0, "eos modes: kgo.TransactionTimeout (franz-go's default, 40s, if 0)")
	)
	flag.Parse()
	if *out == "" || *brokers == "" {
		fmt.Fprintln(os.Stderr, "member: -out and -brokers (or KAFKA_BROKERS) are required")
		os.Exit(2)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("pid", os.Getpid())

	f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		log.Error("open output", "err", err)
		os.Exit(2)
	}
	defer f.Close()

	ctx, stopped := signalContext()
	m := &member{
		out:   f,
		delay: *delay,
		log:   log,
		events: func(kind string, parts map[string][]int32) {
			emit("%s %s", kind, formatParts(parts))
		},
	}
	opts := []kstream.Option{
		kstream.Brokers(strings.Split(*brokers, ",")...),
		kstream.Logger(log),
		kstream.ClientOptions(
			kgo.ClientID(*clientID),
			kgo.SessionTimeout(*session),
			kgo.HeartbeatInterval(*heartbeat),
			kgo.RebalanceTimeout(*rebalance),
			kgo.AutoCommitInterval(*autocommit),
			kgo.FetchMaxWait(250*time.Millisecond),
			kgo.MetadataMinAge(100*time.Millisecond),
		),
	}
	streamOpts := []kstream.Option{kstream.Topics(*topic), kstream.Group(*group), kstream.Listener(m)}

	var runErr error
	switch *mode {
	case "records":
		runErr = m.runRecords(ctx, append(opts, streamOpts...), false, 0)
	case "manual":
		streamOpts = append(streamOpts, kstream.ManualCommit(), kstream.Listener(kstream.ManualCommitRebalanceListener{}))
		runErr = m.runRecords(ctx, append(opts, streamOpts...), true, *commitEvery)
	case "engine":
		runErr = m.runEngine(ctx, opts, streamOpts, *stopTimeout)
	case "emit", "eos", "eos-static":
		if *emitTo == "" {
			log.Error("the emit modes need -emit-to")
			os.Exit(2)
		}
		if *mode != "emit" {
			streamOpts = append(streamOpts, kstream.ExactlyOnce())
			if *txnTimeout > 0 {
				opts = append(opts, kstream.ClientOptions(kgo.TransactionTimeout(*txnTimeout)))
			}
		}
		if *mode == "eos-static" {
			if *instanceID == "" {
				log.Error("mode eos-static needs -instance-id")
				os.Exit(2)
			}
			streamOpts = append(streamOpts, kstream.InstanceID(*instanceID))
		}
		runErr = m.runEmit(ctx, append(opts, streamOpts...), *emitTo, *memberID)
	case "franz":
		runErr = m.runFranz(ctx, strings.Split(*brokers, ","), *topic, *group, []kgo.Opt{
			kgo.ClientID(*clientID),
			kgo.SessionTimeout(*session),
			kgo.HeartbeatInterval(*heartbeat),
			kgo.RebalanceTimeout(*rebalance),
			kgo.AutoCommitInterval(*autocommit),
			kgo.FetchMaxWait(250 * time.Millisecond),
			kgo.MetadataMinAge(100 * time.Millisecond),
		})
	case "share", "share-franz":
		rf, err := os.OpenFile(*rejected, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			log.Error("open rejected file", "err", err)
			os.Exit(2)
		}
		defer rf.Close()
		if *mode == "share-franz" {
			runErr = m.runShareFranz(ctx, strings.Split(*brokers, ","), *topic, *group, rf, *poisonEvery, *clientID)
			break
		}
		runErr = m.runShare(ctx, append(opts, kstream.Topics(*topic), kstream.ShareGroup(*group), kstream.MaxPollRecords(20)), rf, *poisonEvery)
	default:
		log.Error("unknown mode", "mode", *mode)
		os.Exit(2)
	}
	took := time.Duration(0)
	if t := stopped(); !t.IsZero() {
		took = time.Since(t)
	}
	emit("STOPPED %s", took)
	if runErr != nil {
		log.Error("member failed", "err", runErr)
		os.Exit(1)
	}
}

// member processes records: it writes each to out, then works for delay.
type member struct {
	log    *slog.Logger
	out    *os.File
	delay  time.Duration
	events func(kind string, parts map[string][]int32)
	line   []byte
}

// process records that the record was processed, before the loop body
// returns: the line is in the file (the kernel's page cache) when write(2)
// returns, so a SIGKILL after it does not lose it.
func (m *member) process(partition int32, offset int64) error {
	m.line = strconv.AppendInt(m.line[:0], int64(partition), 10)
	m.line = append(m.line, ' ')
	m.line = strconv.AppendInt(m.line, offset, 10)
	m.line = append(m.line, '\n')
	if _, err := m.out.Write(m.line); err != nil {
		return fmt.Errorf("write processed record: %w", err)
	}
	if m.delay > 0 {
		time.Sleep(m.delay)
	}
	return nil
}

func (m *member) runRecords(ctx context.Context, opts []kstream.Option, manual bool, commitEvery int) error {
	s, err := kstream.NewStream(codec.Bytes(), opts...)
	if err != nil {
		return err
	}
	// Use closes the stream when the loop ends: a graceful leave commits
	// (default mode; the listener commits in manual mode) and leaves the
	// group.
	return s.Use(ctx, func(records iter.Seq2[kstream.Record[[]byte], error]) error {
		var c *committer
		if manual {
			c = startCommitter(ctx, s, m.log)
			defer c.stop()
		}
		n := 0
		for rec, err := range records {
			if err != nil {
				var fe *kstream.FetchError
				if errors.As(err, &fe) && !fe.Fatal {
					continue
				}
				return err
			}
			if err := m.process(rec.Partition, rec.Offset); err != nil {
				return err
			}
			if !manual {
				continue
			}
			c.done(rec)
			if n++; n%commitEvery == 0 {
				// Commit covers the record in hand, which is already in
				// the file.
				if err := s.Commit(ctx); err != nil && ctx.Err() == nil {
					m.log.Warn("commit failed", "err", err)
				}
			}
		}
		return nil
	})
}

// runEmit is the consume-transform-produce member: for each record it
// writes the line to the file and emits "partition offset member" to the
// output topic, tied to the record.
func (m *member) runEmit(ctx context.Context, opts []kstream.Option, to string, id int) error {
	s, err := kstream.NewStream(codec.Bytes(), opts...)
	if err != nil {
		return err
	}
	var val []byte
	return s.Use(ctx, func(records iter.Seq2[kstream.Record[[]byte], error]) error {
		for rec, err := range records {
			if err != nil {
				var fe *kstream.FetchError
				var ee *kstream.EmitError
				switch {
				case errors.As(err, &fe) && !fe.Fatal:
					continue
				case errors.As(err, &ee):
					// The source record comes again.
					m.log.Warn("emit failed", "err", err)
					continue
				}
				return err
			}
			if err := m.process(rec.Partition, rec.Offset); err != nil {
				return err
			}
			val = strconv.AppendInt(val[:0], int64(rec.Partition), 10)
			val = append(val, ' ')
			val = strconv.AppendInt(val, rec.Offset, 10)
			val = append(val, ' ')
			val = strconv.AppendInt(val, int64(id), 10)
			key := strconv.AppendInt(nil, int64(rec.Partition), 10)
			if err := s.Emit(ctx, to, slices.Clone(val), kstream.WithKey(key)); err != nil {
				if ctx.Err() != nil {
					// Stopping: leave the record unfinished (it is
					// delivered again); it has no output.
					return nil
				}
				return err
			}
		}
		return nil
	})
}

// committer commits, every half second, the records the loop has finished,
// so that a manual-commit member that goes idle still commits its last
// records. It uses CommitRecords with the records written to the file
// rather than Commit, which from another goroutine would also commit a
// record the loop body has not written yet.
type committer struct {
	mu   sync.Mutex
	last map[int32]kstream.Record[[]byte]
	quit chan struct{}
	wg   sync.WaitGroup
}

func startCommitter(ctx context.Context, s *kstream.Stream[[]byte], log *slog.Logger) *committer {
	c := &committer{last: make(map[int32]kstream.Record[[]byte]), quit: make(chan struct{})}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-c.quit:
				return
			case <-tick.C:
			}
			c.mu.Lock()
			recs := make([]kstream.Record[[]byte], 0, len(c.last))
			for _, r := range c.last {
				recs = append(recs, r)
			}
			clear(c.last)
			c.mu.Unlock()
			if len(recs) == 0 {
				continue
			}
			if err := s.CommitRecords(ctx, recs...); err != nil && ctx.Err() == nil {
				log.Warn("periodic commit failed", "err", err)
			}
		}
	}()
	return c
}

func (c *committer) done(rec kstream.Record[[]byte]) {
	c.mu.Lock()
	c.last[rec.Partition] = rec
	c.mu.Unlock()
}

func (c *committer) stop() {
	close(c.quit)
	c.wg.Wait()
}

func (m *member) runEngine(ctx context.Context, opts, streamOpts []kstream.Option, stopTimeout time.Duration) error {
	eng, err := kstream.NewEngine(append(opts, kstream.OnError(kstream.ErrorPolicyStopApplication))...)
	if err != nil {
		return err
	}
	s, err := kstream.NewStream(codec.Bytes(), streamOpts...)
	if err != nil {
		return err
	}
	var mu sync.Mutex // one handler at a time anyway; keeps m.line safe if that changes
	s.Handle(func(_ context.Context, rec kstream.Record[[]byte]) error {
		mu.Lock()
		defer mu.Unlock()
		return m.process(rec.Partition, rec.Offset)
	})
	if err := eng.Add(s); err != nil {
		return err
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	return eng.Stop(stopCtx)
}

// runFranz is the control: the same member written on franz-go alone, with
// the at-least-once pattern franz-go documents (BlockRebalanceOnPoll,
// AutoCommitMarks, mark after processing, commit marks on revoke). It tells
// the SDK's behaviour apart from the client's and the broker's.
func (m *member) runFranz(ctx context.Context, brokers []string, topic, group string, timings []kgo.Opt) error {
	var cl *kgo.Client
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.BlockRebalanceOnPoll(),
		kgo.AutoCommitMarks(),
		kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelInfo, nil)),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, p map[string][]int32) { m.events("ASSIGNED", p) }),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, p map[string][]int32) {
			if err := cl.CommitMarkedOffsets(ctx); err != nil {
				m.log.Error("commit before revoke", "err", err)
			}
			m.events("REVOKED", p)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, p map[string][]int32) { m.events("LOST", p) }),
	}, timings...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := cl.CommitMarkedOffsets(cctx); err != nil {
			m.log.Error("final commit", "err", err)
		}
		cl.CloseAllowingRebalance()
	}()
	for ctx.Err() == nil {
		fs := cl.PollRecords(ctx, 500)
		fs.EachError(func(t string, p int32, err error) {
			if ctx.Err() == nil {
				m.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		var perr error
		fs.EachRecord(func(r *kgo.Record) {
			if perr != nil || ctx.Err() != nil {
				return
			}
			if perr = m.process(r.Partition, r.Offset); perr == nil {
				cl.MarkCommitRecords(r)
			}
		})
		if perr != nil {
			return perr
		}
		cl.AllowRebalance()
	}
	return nil
}

// The listener reports partition changes on standard output.

func (m *member) OnAssigned(_ context.Context, _ kstream.AnyStream, p map[string][]int32) {
	m.events("ASSIGNED", p)
}

func (m *member) OnRevoked(_ context.Context, _ kstream.AnyStream, p map[string][]int32) {
	m.events("REVOKED", p)
}

func (m *member) OnLost(_ context.Context, _ kstream.AnyStream, p map[string][]int32) {
	m.events("LOST", p)
}

var emitMu sync.Mutex

func emit(format string, args ...any) {
	emitMu.Lock()
	defer emitMu.Unlock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
}

func formatParts(parts map[string][]int32) string {
	var ps []int
	for _, list := range parts {
		for _, p := range list {
			ps = append(ps, int(p))
		}
	}
	sort.Ints(ps)
	strs := make([]string, len(ps))
	for i, p := range ps {
		strs[i] = strconv.Itoa(p)
	}
	return strings.Join(strs, ",")
}

// signalContext returns a context canceled by SIGTERM, SIGINT or the end of
// standard input, and a function that tells when that happened.
func signalContext() (context.Context, func() time.Time) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var at time.Time
	stop := func() {
		mu.Lock()
		if at.IsZero() {
			at = time.Now()
		}
		mu.Unlock()
		cancel()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-sig
		stop()
	}()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	return ctx, func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return at
	}
}

// runShare is the share mode: a Records loop of a share group stream. A
// poison record is written to rejected (before it is rejected, so that a
// rejection is always in the file) and rejected ahead of loop control;
// every other record is written to out and accepted as the body finishes.
func (m *member) runShare(ctx context.Context, opts []kstream.Option, rejected *os.File, poisonEvery int64) error {
	s, err := kstream.NewStream(codec.Bytes(), opts...)
	if err != nil {
		return err
	}
	return s.Use(ctx, func(records iter.Seq2[kstream.Record[[]byte], error]) error {
		for rec, err := range records {
			if err != nil {
				var fe *kstream.FetchError
				if errors.As(err, &fe) && !fe.Fatal {
					continue
				}
				return err
			}
			if rec.Offset%poisonEvery == 7 {
				line := fmt.Sprintf("%d %d\n", rec.Partition, rec.Offset)
				if _, err := rejected.WriteString(line); err != nil {
					return err
				}
				if err := s.Ack(rec, kstream.AckReject); err != nil {
					return err
				}
				continue
			}
			if err := m.process(rec.Partition, rec.Offset); err != nil {
				return err
			}
		}
		return nil
	})
}

// runShareFranz is the control of the share mode: the same member on
// franz-go alone. The group's share.auto.offset.reset is left to the
// kstream members (the scenario starts one first).
func (m *member) runShareFranz(ctx context.Context, brokers []string, topic, group string, rejected *os.File, poisonEvery int64, clientID string) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ClientID(clientID),
		kgo.ShareGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ShareMaxRecords(20),
		kgo.FetchMaxWait(250*time.Millisecond),
		kgo.MetadataMinAge(100*time.Millisecond),
	)
	if err != nil {
		return err
	}
	defer cl.Close() // releases what was not acknowledged, and leaves
	for ctx.Err() == nil {
		fs := cl.PollRecords(ctx, 20)
		var perr error
		fs.EachRecord(func(r *kgo.Record) {
			if perr != nil || ctx.Err() != nil {
				return
			}
			if r.Offset%poisonEvery == 7 {
				if _, perr = fmt.Fprintf(rejected, "%d %d\n", r.Partition, r.Offset); perr == nil {
					r.Ack(kgo.AckReject)
				}
				return
			}
			if perr = m.process(r.Partition, r.Offset); perr == nil {
				r.Ack(kgo.AckAccept)
			}
		})
		if perr != nil {
			return perr
		}
	}
	return nil
}
