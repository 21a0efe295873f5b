package kstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// session is one Open of a stream: a franz-go client, the records polled but
// not yet yielded, and what the stream knows of each partition. It is not
// generic; Stream[T] adds decoding on top.
//
// Rebalances are gated with BlockRebalanceOnPoll, so franz-go runs the
// assigned, revoked and lost callbacks only while the iterator allows it:
// when it polls with an empty buffer, at the end of a range, or at a record
// boundary after franz-go asked for a rebalance (OnPartitionsCallbackBlocked),
// in which case the unyielded buffer is rewound with SetOffsets first. So a
// callback never runs while the loop body holds a record, and a revoke waits
// for at most the record in hand, not for the whole polled batch.
type session struct {
	cfg    *config
	name   string
	log    *slog.Logger
	cl     *kgo.Client
	group  bool
	manual bool
	handle *streamHandle
	m      *metricsSet // nil without the Metrics option

	closing          atomic.Bool
	rebalancePending atomic.Bool
	fetchCtx         context.Context // canceled by stopFetching
	fetchDone        <-chan struct{} // fetchCtx.Done()
	stopFetching     context.CancelFunc
	abortCtx         context.Context // the client's context; canceled by abort
	abort            context.CancelFunc
	inListener       atomic.Int32 // listener callbacks running (on franz-go's goroutine)

	closeOnce sync.Once
	closed    chan struct{}
	closeErr  error
	pushDue   atomic.Bool // set by pushTimer: marks waited markPushInterval
	pushTimer *time.Timer

	commitMu sync.Mutex // serializes commits so that they stay monotonic
	pushMu   sync.Mutex // serializes pushes of marks; guards scratch
	scratch  map[string]map[int32]kgo.EpochOffset

	mu           sync.Mutex
	buf          []*kgo.Record // polled, not yet yielded: buf[pos:]
	pos          int
	errs         []*FetchError // errors from the last poll, not yet yielded
	fatal        *FetchError
	parts        map[topicPartition]*partState
	lastTP       topicPartition
	last         *partState // cache of parts[lastTP]; nil after any removal
	inflight     []*kgo.Record
	ranging      bool
	dirty        bool // some partition has processed > pushed
	initialLeft  map[topicPartition]int64
	assignedOnce bool
	drain        func() // waits for a dispatcher's records in flight
}

func openSession(ctx context.Context, cfg *config, name string, in inherited, publish func(*session)) (*session, error) {
	brokers, clientOpts, logger := cfg.connection(in)
	ss := &session{
		cfg:     cfg,
		name:    name,
		log:     logger.With("stream", name),
		group:   cfg.group != "",
		manual:  cfg.manual,
		parts:   make(map[topicPartition]*partState),
		scratch: make(map[string]map[int32]kgo.EpochOffset),
		m:       cfg.metricsOf(in),
		closed:  make(chan struct{}),
	}
	ss.fetchCtx, ss.stopFetching = context.WithCancel(context.Background())
	ss.fetchDone = ss.fetchCtx.Done()
	ss.abortCtx, ss.abort = context.WithCancel(context.Background())
	if ss.group {
		ss.log = ss.log.With("group", cfg.group)
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
	opts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.WithLogger(newKgoLogger(ss.log)),
		kgo.ConsumeResetOffset(reset),
		// Kafka's Java client and aiokafka wait 500ms for a fetch to fill;
		// franz-go's 5s default delays partitions assigned while a fetch
		// is in flight.
		kgo.FetchMaxWait(DefaultFetchMaxWait),
	}
	opts = append(opts, ss.m.clientOpts(name)...)
	// The user's options come first so that the stream's own subscription
	// and group settings, which its guarantees rest on, win.
	opts = append(opts, clientOpts...)
	if cfg.pattern != "" {
		opts = append(opts, kgo.ConsumeRegex(), kgo.ConsumeTopics(anchored(cfg.pattern)))
	} else {
		opts = append(opts, kgo.ConsumeTopics(cfg.topics...))
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
		if cfg.manual {
			opts = append(opts, kgo.DisableAutoCommit())
		} else {
			opts = append(opts, kgo.AutoCommitMarks())
		}
	}
	// The client's own context: canceling it makes a close that waits for
	// an unresponsive broker give up.
	opts = append(opts, kgo.WithContext(ss.abortCtx))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		ss.abort()
		return nil, fmt.Errorf("kstream: open stream %q: %w", name, err)
	}
	ss.cl = cl
	if err := checkClientOptions(cl, cfg); err != nil {
		ss.closeUnopened()
		return nil, fmt.Errorf("kstream: open stream %q: %w", name, err)
	}
	if cfg.testBeforePing != nil {
		cfg.testBeforePing()
	}
	if err := cl.Ping(ctx); err != nil {
		ss.closeUnopened()
		return nil, fmt.Errorf("kstream: open stream %q: no broker of %v answered: %w", name, brokers, err)
	}
	// The timer pushes marks itself, so that records processed before a
	// loop body that takes long (or is stuck) get committed meanwhile;
	// the flag lets record boundaries push without reading the clock.
	ss.pushTimer = time.AfterFunc(markPushInterval, func() {
		ss.pushDue.Store(true)
		if !ss.closing.Load() {
			ss.pushMarks(ss.cl)
		}
	})
	if !ss.group && len(ss.initialLeft) > 0 {
		ss.dropUnknownInitialPartitions(ctx)
	}
	if ss.m != nil {
		ss.m.partitions.add(ss)
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
	if re, _ := cl.OptValue(kgo.ConsumeRegex).(bool); re && cfg.pattern == "" {
		return fmt.Errorf("%w: ClientOptions: kgo.ConsumeRegex is not allowed; use the TopicPattern option", ErrInvalidOption)
	}
	return nil
}

// partLocked returns the state of r's partition, creating it for a stream
// without a group (which owns every partition it fetches). ss.mu is held.
func (ss *session) partLocked(topic string, partition int32) *partState {
	if ss.last != nil && ss.lastTP.partition == partition && ss.lastTP.topic == topic {
		return ss.last
	}
	tp := topicPartition{topic, partition}
	ps := ss.parts[tp]
	if ps == nil && !ss.group {
		ps = ss.newPartState(topic)
		ss.parts[tp] = ps
	}
	if ps != nil {
		ss.last, ss.lastTP = ps, tp
	}
	return ps
}

// popStatus says why pop returned no record.
type popStatus int

const (
	popRecord  popStatus = iota // a record (or an error) to yield
	popEnd                      // ctx done, or the stream is closing: end quietly
	popTimeout                  // the deadline passed with nothing buffered
	popYield                    // a rebalance waits and the caller holds records
)

// step finishes prev (marks it processed unless the stream is closing),
// then takes the next record and records it as yielded and in flight. It is
// the fused fast path of Records.
func (ss *session) step(ctx context.Context, done <-chan struct{}, prev *kgo.Record) (*kgo.Record, *FetchError, popStatus) {
	push := false
	ss.mu.Lock()
	if prev != nil {
		ss.inflight = ss.inflight[:0]
		if !ss.closing.Load() {
			ss.markLocked(prev)
			push = ss.dirty && ss.pushDue.Load()
		}
	}
	r, fe, st := ss.popLocked(ctx, done, time.Time{}, true)
	if r != nil {
		// popLocked just looked r's partition up, so this hits the cache.
		ss.last.noteYield(r)
		ss.inflight = append(ss.inflight, r)
	}
	ss.mu.Unlock()
	if push {
		ss.pushMarks(ss.cl)
	}
	return r, fe, st
}

// popLocked takes the next polled record or error, polling when none is
// buffered. With a zero deadline it waits as long as ctx allows. allow says
// whether the caller holds no records, so that a waiting rebalance may run;
// if it may not, popLocked returns popYield instead. ss.mu is held, and
// released while polling.
func (ss *session) popLocked(ctx context.Context, done <-chan struct{}, deadline time.Time, allow bool) (*kgo.Record, *FetchError, popStatus) {
	for {
		if ss.closing.Load() {
			return nil, nil, popEnd
		}
		// Two one-case selects cost a fraction of one two-case select,
		// and this runs for every record.
		select {
		case <-done:
			return nil, nil, popEnd
		default:
		}
		select {
		case <-ss.fetchDone:
			return nil, nil, popEnd
		default:
		}
		if ss.rebalancePending.Load() {
			if !allow {
				return nil, nil, popYield
			}
			ss.rebalancePending.Store(false)
			ss.mu.Unlock()
			ss.yieldToRebalance()
			ss.mu.Lock()
			continue
		}
		if len(ss.errs) > 0 {
			fe := ss.errs[0]
			ss.errs = ss.errs[1:]
			return nil, fe, popRecord
		}
		if ss.fatal != nil {
			return nil, ss.fatal, popRecord
		}
		for ss.pos < len(ss.buf) {
			r := ss.buf[ss.pos]
			ss.buf[ss.pos] = nil
			ss.pos++
			if ps := ss.partLocked(r.Topic, r.Partition); ps != nil && ps.owned {
				return r, nil, popRecord
			}
			// Gating makes this unreachable; a record of a partition
			// this member does not own must never be yielded.
			ss.log.Warn("dropping polled record of a partition not owned", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset)
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return nil, nil, popTimeout
		}
		ss.mu.Unlock()
		st := ss.poll(ctx, deadline, allow)
		ss.mu.Lock()
		if st != popRecord {
			return nil, nil, st
		}
	}
}

// poll fetches the next records into the buffer. ss.mu is not held.
func (ss *session) poll(ctx context.Context, deadline time.Time, allow bool) popStatus {
	ss.pushMarks(ss.cl)
	if ss.group && allow {
		ss.cl.AllowRebalance()
	}
	var pctx context.Context
	var cancel context.CancelFunc
	if deadline.IsZero() {
		pctx, cancel = context.WithCancel(ctx)
	} else {
		pctx, cancel = context.WithDeadline(ctx, deadline)
	}
	defer cancel()
	defer context.AfterFunc(ss.fetchCtx, cancel)()
	fs := ss.cl.PollRecords(pctx, ss.cfg.maxPoll)
	if ss.group && ss.closing.Load() {
		// Close may have allowed rebalances before this poll returned and
		// blocked them again; leaving the group waits for that.
		ss.cl.AllowRebalance()
	}

	var seeks map[string]map[int32]kgo.EpochOffset
	ss.mu.Lock()
	status := popRecord
	fs.EachError(func(topic string, partition int32, err error) {
		if ctx.Err() != nil || ss.fetchCtx.Err() != nil {
			status = popEnd
			return
		}
		if pctx.Err() != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
			if status == popRecord {
				status = popTimeout
			}
			return
		}
		switch classifyFetchError(err) {
		case errEnd:
			status = popEnd
		case errRetried:
			ss.log.Warn("fetch error, retrying", "topic", topic, "partition", partition, "err", err)
		case errNonFatal:
			if topic == "" {
				partition = -1 // a group-level error, not a partition's
			}
			ss.log.Warn("fetch error", "topic", topic, "partition", partition, "err", err)
			ss.errs = append(ss.errs, &FetchError{Topic: topic, Partition: partition, Err: err})
		case errFatal:
			if topic == "" {
				partition = -1
			}
			ss.log.Error("fatal fetch error, stream stops", "topic", topic, "partition", partition, "err", err)
			if ss.fatal == nil {
				ss.fatal = &FetchError{Topic: topic, Partition: partition, Err: err, Fatal: true}
			}
		}
	})
	ss.buf = ss.buf[:0]
	ss.pos = 0
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		ps := ss.partLocked(p.Topic, p.Partition)
		if ps == nil {
			return
		}
		if p.HighWatermark > ps.highwater {
			ps.highwater = p.HighWatermark
		}
		if !ss.group && ss.initialLeft != nil {
			tp := topicPartition{p.Topic, p.Partition}
			if off, ok := ss.initialLeft[tp]; ok {
				delete(ss.initialLeft, tp)
				if seeks == nil {
					seeks = make(map[string]map[int32]kgo.EpochOffset)
				}
				if seeks[p.Topic] == nil {
					seeks[p.Topic] = make(map[int32]kgo.EpochOffset)
				}
				seeks[p.Topic][p.Partition] = kgo.EpochOffset{Epoch: -1, Offset: off}
				ss.log.Info("initial offset applied", "topic", p.Topic, "partition", p.Partition, "offset", off)
				return // these records precede the initial offset's effect
			}
		}
		ss.buf = append(ss.buf, p.Records...)
	})
	if status == popTimeout && len(ss.buf) > 0 {
		status = popRecord
	}
	ss.mu.Unlock()
	if seeks != nil {
		ss.cl.SetOffsets(seeks)
	}
	return status
}

// yielding records rs as yielded and in flight, dropping any whose
// partition this member no longer owns. It returns how many it kept at the
// front of rs.
func (ss *session) yielding(rs []*kgo.Record) int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	n := 0
	for _, r := range rs {
		ps := ss.partLocked(r.Topic, r.Partition)
		if ps == nil || !ps.owned {
			continue
		}
		ps.noteYield(r)
		rs[n] = r
		n++
	}
	ss.inflight = append(ss.inflight[:0], rs[:n]...)
	return n
}

// processed marks rs processed, unless the stream is closing, and clears
// the records in flight.
func (ss *session) processed(rs []*kgo.Record) {
	ss.mu.Lock()
	ss.inflight = ss.inflight[:0]
	if ss.closing.Load() {
		ss.mu.Unlock()
		return
	}
	for _, r := range rs {
		ss.markLocked(r)
	}
	push := ss.dirty && ss.pushDue.Load()
	ss.mu.Unlock()
	if push {
		ss.pushMarks(ss.cl)
	}
}

// yieldToRebalance lets a waiting rebalance run: unyielded records are
// given back (their partitions rewound to the first of them), marks are
// pushed so that the revoke commits them, and franz-go may go on.
func (ss *session) yieldToRebalance() {
	if ss.closing.Load() {
		ss.cl.AllowRebalance() // Close leaves the group; let it
		return
	}
	ss.mu.Lock()
	drain := ss.drain
	ss.mu.Unlock()
	if drain != nil {
		// Records in flight finish, and are marked, before a revoke, and
		// before the rewind is computed: counted as unprocessed, they
		// would be rewound to and handled again.
		drain()
	}
	ss.mu.Lock()
	rewind := ss.takeBufferLocked()
	ss.mu.Unlock()
	if len(rewind) > 0 {
		ss.cl.SetOffsets(rewind)
	}
	ss.pushMarks(ss.cl)
	ss.cl.AllowRebalance()
}

// takeBufferLocked empties the buffer and returns, per partition, where to
// rewind: its first unyielded record, or the first yielded record that was
// not processed if there is one. franz-go treats a rewound offset as the
// partition's committable position, so the rewind must never pass a record
// that was not processed.
func (ss *session) takeBufferLocked() map[string]map[int32]kgo.EpochOffset {
	var rewind map[string]map[int32]kgo.EpochOffset
	for _, r := range ss.buf[ss.pos:] {
		if rewind == nil {
			rewind = make(map[string]map[int32]kgo.EpochOffset)
		}
		m := rewind[r.Topic]
		if m == nil {
			m = make(map[int32]kgo.EpochOffset)
			rewind[r.Topic] = m
		}
		if _, ok := m[r.Partition]; ok {
			continue
		}
		eo := kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
		if ps := ss.parts[topicPartition{r.Topic, r.Partition}]; ps != nil {
			if low, ok := ps.lowestUnprocessed(); ok && low < eo.Offset {
				eo = kgo.EpochOffset{Epoch: -1, Offset: low}
			}
		}
		m[r.Partition] = eo
	}
	clear(ss.buf)
	ss.buf = ss.buf[:0]
	ss.pos = 0
	return rewind
}

// beginRange marks the session as being ranged over.
func (ss *session) beginRange() {
	ss.mu.Lock()
	ss.ranging = true
	ss.mu.Unlock()
}

// endRange is called when a range ends for any reason (end, break, return,
// panic). The record in flight stays unmarked.
func (ss *session) endRange() {
	ss.mu.Lock()
	ss.ranging = false
	for _, r := range ss.inflight {
		if ps := ss.parts[topicPartition{r.Topic, r.Partition}]; ps != nil && r.Offset+1 > ps.processed {
			if !ps.hasAbandoned || r.Offset < ps.abandoned {
				ps.abandoned, ps.hasAbandoned = r.Offset, true
			}
		}
	}
	ss.inflight = ss.inflight[:0]
	empty := ss.pos >= len(ss.buf)
	ss.mu.Unlock()
	if ss.closing.Load() {
		if ss.group {
			ss.cl.AllowRebalance() // Close leaves the group; let it
		}
		return
	}
	ss.pushMarks(ss.cl)
	if !ss.group {
		return
	}
	if ss.rebalancePending.Swap(false) {
		ss.yieldToRebalance()
	} else if empty {
		ss.cl.AllowRebalance()
	}
}

// close commits what was processed (default mode), leaves the group and
// closes the client. Records polled but not processed, and the record in
// flight, are not committed.
// close closes the session once; a concurrent or later call waits for the
// first to finish and returns nil.
func (ss *session) close(timeout time.Duration) error {
	did := false
	ss.closeOnce.Do(func() {
		did = true
		ss.closeErr = ss.doClose(timeout)
		close(ss.closed)
	})
	<-ss.closed
	if did {
		return ss.closeErr
	}
	return nil
}

func (ss *session) doClose(timeout time.Duration) error {
	ss.closing.Store(true)
	ss.stopFetching()
	ss.pushTimer.Stop()
	// One deadline for the final commit and for leaving the group.
	ctx, stop := ss.closeDeadline(timeout)
	defer stop()
	var err error
	if ss.group && !ss.manual {
		ss.pushMarks(ss.cl)
		if cerr := ss.cl.CommitMarkedOffsets(ctx); cerr != nil {
			err = fmt.Errorf("kstream: stream %q: commit on close: %w", ss.name, cerr)
		}
	}
	if !ss.closeClient(ctx) {
		return err
	}
	// A timer push that started before Stop holds pushMu until it is done.
	ss.pushMu.Lock()
	ss.pushMu.Unlock() //nolint:staticcheck // waiting, not guarding
	if ss.m != nil {
		ss.m.partitions.remove(ss)
	}
	ss.log.Debug("stream closed")
	return err
}

// closeDeadline returns a context that ends after timeout and, when it
// does, cancels the client's own context, so that requests to an
// unresponsive broker, and commits queued behind them (franz-go's commit
// lock does not watch our context), give up. stop releases it without
// aborting: returning is no reason to abort.
func (ss *session) closeDeadline(timeout time.Duration) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithTimeout(ss.abortCtx, timeout)
	stopAbort := context.AfterFunc(ctx, ss.abort)
	return ctx, func() {
		stopAbort()
		cancel()
	}
}

// closeClient leaves the group and closes the client, waiting until ctx
// (from closeDeadline) ends at most. Called from a listener (or while one
// runs) it does not wait, and reports false: leaving the group waits for
// the callback to return, so waiting here could deadlock; the client
// finishes closing, on the goroutine started here, as soon as the callback
// returns.
func (ss *session) closeClient(ctx context.Context) (waited bool) {
	closed := make(chan struct{})
	go func() {
		ss.cl.CloseAllowingRebalance()
		close(closed)
	}()
	if ss.inListener.Load() > 0 {
		ss.log.Debug("closing from a listener callback; the client closes when it returns")
		return false
	}
	select {
	case <-closed:
	case <-ctx.Done():
		ss.log.Warn("leaving the group did not finish before the close deadline; closing without it")
		<-closed // the deadline aborted the client: it gives up at once; nothing outlives Close
	}
	ss.abort()
	return true
}

// closeUnopened closes the client of a session that failed to open: the
// group may have been joined already, and a listener may be running.
func (ss *session) closeUnopened() {
	ss.stopFetching()
	ctx, stop := ss.closeDeadline(DefaultCloseTimeout)
	defer stop()
	ss.closeClient(ctx)
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
	md, err := kadm.NewClient(ss.cl).Metadata(ctx, topics...)
	if err != nil {
		ss.log.Warn("cannot check the partitions of initial offsets", "err", err)
		return
	}
	ss.mu.Lock()
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

// unpopLocked puts records taken by popLocked but not yielded back at the
// front of the buffer, so that the next range yields them.
func (ss *session) unpopLocked(rs []*kgo.Record) {
	if len(rs) == 0 {
		return
	}
	rest := ss.buf[ss.pos:]
	buf := make([]*kgo.Record, 0, len(rs)+len(rest))
	buf = append(append(buf, rs...), rest...)
	ss.buf, ss.pos = buf, 0
}

// assignment returns the partitions this member owns.
func (ss *session) assignment() map[string][]int32 {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := make(map[string][]int32)
	for tp, ps := range ss.parts {
		if ps.owned {
			out[tp.topic] = append(out[tp.topic], tp.partition)
		}
	}
	for _, ps := range out {
		slices.Sort(ps)
	}
	return out
}
