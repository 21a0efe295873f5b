// Client setup: the franz-go client of one Open of a stream.

package kstream

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func openSession(ctx context.Context, cfg *config, name string, in inherited, publish func(*session)) (*session, error) {
	brokers, clientOpts, logger := cfg.connection(in)
	secure, err := cfg.security(in)
	if err != nil {
		return nil, fmt.Errorf("kstream: open stream %q: %w", name, err)
	}
	ss := &session{
		cfg:        cfg,
		name:       name,
		log:        logger.With("stream", name),
		group:      cfg.group != "",
		share:      cfg.shareGroup != "",
		manual:     cfg.manual,
		outOfOrder: cfg.concurrency.mode != concurrencySerial,
		parts:      make(map[topicPartition]*partState),
		scratch:    make(map[string]map[int32]kgo.EpochOffset),
		m:          cfg.metricsOf(in),
		tracing:    cfg.tracingOf(in),
		closed:     make(chan struct{}),
		left:       make(chan struct{}),
	}
	fetchCtx, stop := context.WithCancel(context.Background())
	ss.fetchCtx, ss.fetchDone = fetchCtx, fetchCtx.Done()
	// fetchStopped is set before fetchCtx ends, so that whoever sees
	// fetchDone closed sees it too; the hot path reads it instead of a
	// select on fetchDone (poll.go).
	ss.stopFetching = func() { ss.fetchStopped.Store(true); stop() }
	ss.abortCtx, ss.abort = context.WithCancel(context.Background())
	if ss.group {
		ss.log = ss.log.With("group", cfg.group)
	}
	if ss.share {
		ss.log = ss.log.With("share_group", cfg.shareGroup)
		ss.sh.acks, ss.sh.deliveries = ss.m.shareMetrics(name)
	}
	ss.handle = &streamHandle{name: name, ss: ss}
	publish(ss) // before the client exists: its listeners may run before openSession returns
	if len(cfg.initial) > 0 {
		ss.initialLeft = make(map[topicPartition]int64, len(cfg.initial))
		for _, o := range cfg.initial {
			ss.initialLeft[topicPartition{o.Topic, o.Partition}] = o.Offset
		}
	}

	reset := kgo.NewOffset().AtStart()
	if cfg.reset == Latest {
		reset = kgo.NewOffset().AtEnd()
	}
	ss.ctl.b.bounded = cfg.control.stopAtEnd
	if !ss.group && !cfg.control.startAt.IsZero() {
		// No group, no commits: every partition starts at StartAt's time.
		reset = kgo.NewOffset().AfterMilli(cfg.control.startAt.UnixMilli())
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.WithLogger(newKgoLogger(ss.log)),
		kgo.ConsumeResetOffset(reset),
		// Kafka's Java client and aiokafka wait 500ms for a fetch to fill;
		// franz-go's 5s default delays partitions assigned while a fetch
		// is in flight.
		kgo.FetchMaxWait(DefaultFetchMaxWait),
		// Bounds the memory of a stream reading many partitions
		// (DefaultFetchMaxBytes); the user's ClientOptions may override.
		kgo.FetchMaxBytes(DefaultFetchMaxBytes),
	}
	if cfg.control.stopAtEnd {
		// To see the position pass the markers of transactions
		// (bufferLocked drops them).
		opts = append(opts, kgo.KeepControlRecords())
	}
	// A client ID of its own, so that two clients never share kprom
	// series, broker quotas or log lines (ClientOptions may override it).
	opts = append(opts, kgo.ClientID(newClientID(name)))
	opts = append(opts, ss.m.clientOpts()...)
	opts = append(opts, secure...)
	// Emit produces through the stream's client, partitioned as sends are.
	// (Its records' contexts are looked through: noteHooks is not called.)
	part, _ := newPartitioner()
	opts = append(opts, kgo.RecordPartitioner(part))
	if cfg.exactlyOnce {
		opts = append(opts, txnOpts(cfg)...)
	} else if cfg.readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	if ss.group {
		// Before the user's options: their kgo.Balancers replaces these.
		opts = append(opts, kgo.Balancers(defaultBalancers()...))
	}
	if ss.share {
		// A share member acquires what it fetches: MaxPollRecords bounds
		// that, so that the other members get the rest.
		opts = append(opts, kgo.ShareMaxRecords(int32(min(cfg.maxPoll, 1<<30))))
	}
	// The user's options come first so that the stream's own subscription
	// and group settings, which its guarantees rest on, win.
	opts = append(opts, clientOpts...)
	if cfg.pattern != "" {
		opts = append(opts, kgo.ConsumeRegex(), kgo.ConsumeTopics(anchored(cfg.pattern)))
	} else {
		opts = append(opts, kgo.ConsumeTopics(cfg.topics...))
	}
	if ss.share {
		// Before the member joins: the group starts reading a partition
		// where share.auto.offset.reset says when it first reads it.
		ss.setShareReset(ctx, cfg, append(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.WithLogger(newKgoLogger(ss.log))}, secure...), clientOpts...))
		opts = append(opts, kgo.ShareGroup(cfg.shareGroup))
	}
	if ss.group {
		opts = append(opts,
			kgo.ConsumerGroup(cfg.group),
			kgo.BlockRebalanceOnPoll(),
			kgo.OnPartitionsAssigned(ss.onAssigned),
			kgo.OnPartitionsRevoked(ss.onRevoked),
			kgo.OnPartitionsLost(ss.onLost),
			kgo.OnPartitionsCallbackBlocked(ss.onCallbackBlocked),
			kgo.AdjustFetchOffsetsFn(ss.adjustOffsets),
			kgo.AutoCommitCallback(ss.onAutoCommit),
		)
		if cfg.instanceID != "" {
			opts = append(opts, kgo.InstanceID(cfg.instanceID))
		}
		switch {
		case cfg.manual || cfg.exactlyOnce:
			opts = append(opts, kgo.DisableAutoCommit())
		default:
			opts = append(opts, kgo.AutoCommitMarks())
			if cfg.commitInterval > 0 {
				opts = append(opts, kgo.AutoCommitInterval(cfg.commitInterval))
			}
		}
	}
	// The client's own context: canceling it makes a close that waits for
	// an unresponsive broker give up.
	opts = append(opts, kgo.WithContext(ss.abortCtx))
	var cl *kgo.Client
	if cfg.exactlyOnce {
		var sess *kgo.GroupTransactSession
		if sess, err = kgo.NewGroupTransactSession(opts...); err == nil {
			cl = sess.Client()
			ss.txn = newTxnState(sess, cfg)
		}
	} else {
		cl, err = kgo.NewClient(opts...)
	}
	if err != nil {
		ss.abort()
		return nil, fmt.Errorf("kstream: open stream %q: %w", name, err)
	}
	ss.clp.Store(cl)
	// Pause reads the client under ss.mu: a pause either saw it, or is in
	// ctl.paused by now.
	ss.lockFold()
	paused := partitionsOf(maps.Keys(ss.ctl.paused)) // by a listener, before now
	ss.mu.Unlock()
	if len(paused) > 0 {
		cl.PauseFetchPartitions(paused)
	}
	if err := checkClientOptions(cl, cfg); err != nil {
		ss.closeUnopened()
		return nil, fmt.Errorf("kstream: open stream %q: %w", name, err)
	}
	if cfg.testBeforePing != nil {
		cfg.testBeforePing()
	}
	if err := cl.Ping(ctx); err != nil {
		ss.closeUnopened()
		return nil, fmt.Errorf("kstream: open stream %q: no broker of %v answered: %w", name, brokers, explainConnErr(err, cfg.usesTLS(in), cfg.usesSASL(in)))
	}
	if ss.txn != nil {
		if err := ss.beginTxn(); err != nil {
			ss.closeUnopened()
			return nil, fmt.Errorf("kstream: open stream %q: begin transaction: %w", name, err)
		}
	}
	if ss.ctl.b.bounded && !ss.group {
		if err := ss.captureBounds(ctx); err != nil {
			ss.closeUnopened()
			return nil, fmt.Errorf("kstream: open stream %q: %w", name, err)
		}
	}
	// The timer pushes marks itself, so that records processed before a
	// loop body that takes long (or is stuck) get committed meanwhile;
	// the flag lets record boundaries push without reading the clock.
	ss.pushTimer = time.AfterFunc(markPushInterval, func() {
		ss.pushDue.Store(true)
		if !ss.closing.Load() {
			ss.pushMarks(ss.client())
		}
	})
	if !ss.group && len(ss.initialLeft) > 0 {
		ss.dropUnknownInitialPartitions(ctx)
	}
	ss.startTopicWatch()
	if ss.m != nil && !ss.share { // a share stream has no positions or lag of its own
		ss.m.partitions.add(ss, ss.group && in.engine != nil)
	}
	ss.log.Debug("stream opened", "brokers", brokers)
	return ss, nil
}

// checkClientOptions rejects franz-go options that would take the stream's
// place: a group or regex subscription the stream does not know of would
// consume outside its rebalance gating and commit rules.
func checkClientOptions(cl *kgo.Client, cfg *config) error {
	if g, _ := cl.OptValue(kgo.ConsumerGroup).(string); g != "" && cfg.group == "" {
		return fmt.Errorf("%w: ClientOptions: kgo.ConsumerGroup(%q) is not allowed; use the Group option", ErrInvalidOption, g)
	}
	if g, _ := cl.OptValue(kgo.ShareGroup).(string); g != "" && cfg.shareGroup == "" {
		return fmt.Errorf("%w: ClientOptions: kgo.ShareGroup(%q) is not allowed; use the ShareGroup option", ErrInvalidOption, g)
	}
	if re, _ := cl.OptValue(kgo.ConsumeRegex).(bool); re && cfg.pattern == "" {
		return fmt.Errorf("%w: ClientOptions: kgo.ConsumeRegex is not allowed; use the TopicPattern option", ErrInvalidOption)
	}
	return nil
}

// dropUnknownInitialPartitions warns about, and forgets, initial offsets of
// partitions the topics do not have, for a stream without a group (which
// otherwise would wait for them forever, silently).
func (ss *session) dropUnknownInitialPartitions(ctx context.Context) {
	var topics []string
	for tp := range ss.initialLeft {
		if !slices.Contains(topics, tp.topic) {
			topics = append(topics, tp.topic)
		}
	}
	md, err := kadm.NewClient(ss.client()).Metadata(ctx, topics...)
	if err != nil {
		ss.log.Warn("cannot check the partitions of initial offsets", "err", err)
		return
	}
	ss.lockFold()
	defer ss.mu.Unlock()
	for tp, off := range ss.initialLeft {
		td, ok := md.Topics[tp.topic]
		if ok && td.Err == nil {
			if _, ok := td.Partitions[tp.partition]; ok {
				continue
			}
		}
		ss.log.Warn("initial offset ignored: topic has no such partition", "topic", tp.topic, "partition", tp.partition, "offset", off)
		delete(ss.initialLeft, tp)
	}
}
