package kstream

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/plugin/kprom"
)

// Metrics registers the SDK's metrics, and franz-go's (kprom, with a
// client_id label), with reg. Given to an engine, it applies to the engine's
// producer and to every stream of the engine. Many streams and engines may
// share one registry; stream names label the series, so they should be
// unique per registry. See docs/metrics.md for the list.
//
// Per-partition gauges (committed, position, highwater, lag, position lag)
// are computed when the registry is scraped. For a stream run by an engine,
// with a group, committed and lag are read from the group on the brokers
// (at most every 2 s per group, a scrape waiting at most 3 s), so they
// cover every partition of its topics and stay, growing, while the stream
// is crashed or stopped, until the engine removes it or stops; the engine
// also reports kstreams_stream_up per stream, 1 while it runs and 0 after a
// crash. The others (all five for a stream ranged directly) come from what
// the stream already knows, the high watermark of its last fetch and its
// commits, cost nothing per record and make no broker round trip, and exist
// while the partition is assigned: revoked and lost partitions and closed
// streams leave no series behind.
func Metrics(reg prometheus.Registerer) Option {
	return optionFunc(func(c *config) error {
		if reg == nil {
			return fmt.Errorf("%w: Metrics: nil registerer", ErrInvalidOption)
		}
		m, err := metricsFor(reg)
		if err != nil {
			return fmt.Errorf("%w: Metrics: %v", ErrInvalidOption, err)
		}
		c.metrics = m
		return nil
	})
}

// metricsSet is the SDK's metrics on one registry, shared by every stream
// and engine that uses it.
type metricsSet struct {
	reg prometheus.Registerer

	processed      *prometheus.CounterVec // stream, topic
	decodeErrors   *prometheus.CounterVec // stream, topic
	commits        *prometheus.CounterVec // stream
	commitFailures *prometheus.CounterVec // stream
	rebalances     *prometheus.CounterVec // stream, kind
	crashes        *prometheus.CounterVec // stream
	restarts       *prometheus.CounterVec // stream
	handlerSeconds *prometheus.HistogramVec
	sent           *prometheus.CounterVec // engine, topic
	sendErrors     *prometheus.CounterVec // engine, topic
	emitted        *prometheus.CounterVec // stream, topic
	emitErrors     *prometheus.CounterVec // stream, topic
	emitSeconds    *prometheus.HistogramVec
	txnCommitted   *prometheus.CounterVec // stream
	txnAborted     *prometheus.CounterVec // stream
	shareAcks      *prometheus.CounterVec // stream, status (share_open.go)
	deliveryCount  *prometheus.HistogramVec

	partitions *partitionCollector
}

var (
	registriesMu sync.Mutex
	registries   = map[prometheus.Registerer]*metricsSet{}
	clientSeq    atomic.Int64
)

func metricsFor(reg prometheus.Registerer) (*metricsSet, error) {
	registriesMu.Lock()
	defer registriesMu.Unlock()
	if m := registries[reg]; m != nil {
		return m, nil
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kstreams", Name: name, Help: help}, labels)
	}
	m := &metricsSet{
		reg:            reg,
		processed:      counter("records_processed_total", "Records whose loop body or handler finished (marked processed).", "stream", "topic"),
		decodeErrors:   counter("decode_errors_total", "Records whose value the decoder rejected.", "stream", "topic"),
		commits:        counter("commits_total", "Offset commits that succeeded, automatic and explicit.", "stream"),
		commitFailures: counter("commit_failures_total", "Offset commits that failed.", "stream"),
		rebalances:     counter("rebalances_total", "Partition changes of a stream's group member, by kind: assigned, revoked, lost.", "stream", "kind"),
		crashes:        counter("crashes_total", "Crashes of a stream run by an engine.", "stream"),
		restarts:       counter("restarts_total", "Restarts of a stream by ErrorPolicyRestart.", "stream"),
		handlerSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "kstreams", Name: "handler_duration_seconds",
			Help:    "Time a Handle stream's handler (with its middleware) took per record.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"stream"}),
		sent:       counter("records_sent_total", "Records an engine sent successfully.", "engine", "topic"),
		sendErrors: counter("send_errors_total", "Records an engine failed to send.", "engine", "topic"),
		emitted:    counter("emits_acknowledged_total", "Records emitted (Emit) that the broker acknowledged.", "stream", "topic"),
		emitErrors: counter("emit_failures_total", "Records emitted (Emit) that failed for good; their source records are delivered again.", "stream", "topic"),
		emitSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "kstreams", Name: "emit_latency_seconds",
			Help:    "Time from Emit to the broker's acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"stream"}),
		txnCommitted: counter("transactions_committed_total", "Transactions of ExactlyOnce streams that committed.", "stream"),
		txnAborted:   counter("transactions_aborted_total", "Transactions of ExactlyOnce streams that aborted; their records are delivered again.", "stream"),
		partitions:   newPartitionCollector(),
	}
	m.partitions.m = m
	m.shareAcks, m.deliveryCount = newShareMetrics()
	for _, c := range []prometheus.Collector{m.processed, m.decodeErrors, m.commits, m.commitFailures, m.rebalances,
		m.crashes, m.restarts, m.handlerSeconds, m.sent, m.sendErrors, m.emitted, m.emitErrors, m.emitSeconds,
		m.txnCommitted, m.txnAborted, m.partitions, m.shareAcks, m.deliveryCount} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register SDK metrics: %w", err)
		}
	}
	registries[reg] = m
	return m, nil
}

// newClientID returns a client ID no other client of the process has:
// "kstreams-<name>-<n>", name being the stream's (or "<engine>-producer").
func newClientID(name string) string {
	return fmt.Sprintf("kstreams-%s-%d", name, clientSeq.Add(1))
}

// clientOpts returns the options that give a franz-go client kprom metrics
// on the registry, labelled by its client ID.
func (m *metricsSet) clientOpts() []kgo.Opt {
	if m == nil {
		return nil
	}
	return []kgo.Opt{
		kgo.WithHooks(kprom.NewMetrics("kstreams", kprom.Subsystem("kgo"), kprom.Registerer(m.reg), kprom.WithClientLabel())),
	}
}

// forgetStream deletes the counters of a stream, when its engine removes it
// or stops.
func (m *metricsSet) forgetStream(name string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"stream": name}
	for _, v := range []*prometheus.CounterVec{m.processed, m.decodeErrors, m.commits, m.commitFailures, m.rebalances, m.crashes, m.restarts,
		m.emitted, m.emitErrors, m.txnCommitted, m.txnAborted, m.shareAcks} {
		v.DeletePartialMatch(l)
	}
	m.handlerSeconds.DeletePartialMatch(l)
	m.emitSeconds.DeletePartialMatch(l)
	m.deliveryCount.DeletePartialMatch(l)
}

func (m *metricsSet) forgetEngine(name string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"engine": name}
	m.sent.DeletePartialMatch(l)
	m.sendErrors.DeletePartialMatch(l)
}

// partitionCollector emits the per-partition gauges of every open session
// on its registry, read at scrape time.
type partitionCollector struct {
	m *metricsSet

	mu sync.Mutex
	// sessions are the open sessions; true for those of a stream run by
	// an engine with a group, whose committed offsets and lag come from
	// the group instead (collectEngines).
	sessions map[*session]bool
	lags     groupLags

	committed, position, highwater, lag, positionLag, up *prometheus.Desc
}

func newPartitionCollector() *partitionCollector {
	labels := []string{"stream", "group", "topic", "partition"}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("kstreams_"+name, help, labels, nil)
	}
	return &partitionCollector{
		sessions:    map[*session]bool{},
		lags:        groupLags{readings: map[groupLagKey]*groupLagReading{}},
		up:          prometheus.NewDesc("kstreams_stream_up", "1 while the engine's stream is running, 0 while it is crashed, restarting, stopping or stopped.", []string{"stream"}, nil),
		committed:   desc("committed_offset", "Offset committed for the partition by its group (the next record to process after a restart)."),
		position:    desc("position", "Offset after the last record the stream yielded from the partition."),
		highwater:   desc("highwater", "High watermark of the partition as of the stream's last fetch."),
		lag:         desc("lag", "Records not yet committed: highwater minus committed."),
		positionLag: desc("position_lag", "Records not yet yielded: highwater minus position."),
	}
}

// add makes ss's partitions reported; fromGroup says that its committed
// offsets and lag are reported from its group by collectEngines.
func (pc *partitionCollector) add(ss *session, fromGroup bool) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.sessions[ss] = fromGroup
}

func (pc *partitionCollector) remove(ss *session) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	delete(pc.sessions, ss)
}

func (pc *partitionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pc.committed, pc.position, pc.highwater, pc.lag, pc.positionLag, pc.up} {
		ch <- d
	}
}

func (pc *partitionCollector) Collect(ch chan<- prometheus.Metric) {
	pc.collectEngines(ch)
	pc.mu.Lock()
	sessions := make([]*session, 0, len(pc.sessions))
	fromGroup := make(map[*session]bool, len(pc.sessions))
	for ss, g := range pc.sessions {
		sessions = append(sessions, ss)
		fromGroup[ss] = g
	}
	pc.mu.Unlock()
	for _, ss := range sessions {
		for _, p := range ss.partitionStats() {
			lv := []string{ss.name, ss.cfg.group, p.topic, strconv.Itoa(int(p.partition))}
			gauge := func(d *prometheus.Desc, v int64) {
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), lv...)
			}
			gauge(pc.highwater, p.highwater)
			gauge(pc.position, p.position)
			gauge(pc.positionLag, max(p.highwater-p.position, 0))
			if p.committed >= 0 && !fromGroup[ss] {
				gauge(pc.committed, p.committed)
				gauge(pc.lag, max(p.highwater-p.committed, 0))
			}
		}
	}
}

// partitionStat is one partition's figures at scrape time; committed is -1
// when the group has no commit for it.
type partitionStat struct {
	topic     string
	partition int32
	committed int64
	position  int64
	highwater int64
}

// partitionStats reads the figures of the partitions this member owns. The
// committed offsets come from the client's own record of its commits
// (automatic and explicit) and of the offsets it started from.
func (ss *session) partitionStats() []partitionStat {
	var known map[string]map[int32]kgo.EpochOffset
	if ss.group && !ss.closing.Load() {
		known = ss.client().CommittedOffsets()
	}
	ss.lockFold()
	defer ss.mu.Unlock()
	out := make([]partitionStat, 0, len(ss.parts))
	for tp, ps := range ss.parts {
		st := partitionStat{topic: tp.topic, partition: tp.partition, committed: -1, position: ps.yielded, highwater: ps.highwater}
		if ss.group {
			if ps.committedKnown {
				st.committed = ps.committed
			}
			if eo, ok := known[tp.topic][tp.partition]; ok && eo.Offset >= 0 && eo.Offset > st.committed {
				st.committed = eo.Offset
			}
		}
		if st.position == 0 && st.committed > 0 {
			st.position = st.committed // nothing yielded yet: it starts there
		}
		out = append(out, st)
	}
	return out
}

// noteDecodeError counts a record the decoder rejected.
func (ss *session) noteDecodeError(topic string) {
	if ss.m != nil {
		ss.m.decodeErrors.WithLabelValues(ss.name, topic).Inc()
	}
}

// noteCommit counts a commit and its outcome.
func (ss *session) noteCommit(err error) {
	if ss.m == nil {
		return
	}
	if err != nil {
		ss.m.commitFailures.WithLabelValues(ss.name).Inc()
	} else {
		ss.m.commits.WithLabelValues(ss.name).Inc()
	}
}

// onAutoCommit is franz-go's callback after each automatic commit.
func (ss *session) onAutoCommit(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
	if err == nil {
		err = commitResponseErr(resp)
	}
	if err != nil {
		ss.log.Warn("automatic commit failed; it is retried with the next one", "err", err)
	}
	ss.noteCommit(err)
}

// noteEmit counts an emitted record's outcome and its latency.
func (ss *session) noteEmit(topic string, start int64, err error) {
	if ss.m == nil {
		return
	}
	d := time.Duration(time.Now().UnixNano() - start)
	if err != nil {
		ss.m.emitErrors.WithLabelValues(ss.name, topic).Inc()
		return
	}
	ss.m.emitted.WithLabelValues(ss.name, topic).Inc()
	ss.m.emitSeconds.WithLabelValues(ss.name).Observe(d.Seconds())
}

// noteTxn counts the end of a transaction that held records: committed
// or aborted.
func (ss *session) noteTxn(committed, hadContent bool, err error) {
	if ss.m == nil || (!hadContent && err == nil) {
		return
	}
	if committed {
		ss.m.txnCommitted.WithLabelValues(ss.name).Inc()
		ss.m.commits.WithLabelValues(ss.name).Inc()
		return
	}
	ss.m.txnAborted.WithLabelValues(ss.name).Inc()
}
