package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// The report: one row per scenario, written by TestMain to the file named
// by FAULTS_REPORT (and printed with -v), for docs/reliability-faults.md.

type row struct {
	scenario    string
	duration    time.Duration
	produced    int64
	lost        int
	duplicated  int
	maxShutdown time.Duration
	outcome     string
}

var (
	rowsMu sync.Mutex
	rows   []row
)

func addRow(r row) {
	rowsMu.Lock()
	defer rowsMu.Unlock()
	rows = append(rows, r)
}

func TestMain(m *testing.M) {
	code := m.Run()
	rowsMu.Lock()
	report := formatReport(rows)
	rowsMu.Unlock()
	if path := os.Getenv("FAULTS_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "faults: writing FAULTS_REPORT:", err)
			code = 1
		}
	}
	if testing.Verbose() {
		fmt.Print(report)
	}
	os.Exit(code)
}

func formatReport(rs []row) string {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b row) int { return strings.Compare(a.scenario, b.scenario) })
	var b strings.Builder
	b.WriteString("| Scenario | Duration | Records produced | Lost | Duplicated | Max shutdown time | Outcome |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %s | %s |\n", r.scenario, r.duration.Round(10*time.Millisecond),
			r.produced, r.lost, r.duplicated, r.maxShutdown.Round(time.Millisecond), r.outcome)
	}
	return b.String()
}

// scenario is one fault or bad-input run: a cluster, a topic of known
// content, a group, a ledger of what was handled, a commit monitor and a
// guard that checks every commit against the ledger.
type scenario struct {
	t      *testing.T
	name   string
	topic  string
	group  string
	parts  int32
	ctx    context.Context
	began  time.Time
	ledger *kstreamtest.Ledger
	log    *slog.Logger

	mu          sync.Mutex
	c           *kstreamtest.Cluster
	mon         *kstreamtest.CommitMonitor
	maxShutdown time.Duration
	violations  []string
	checked     map[int32]int64 // per partition, commits up to here were checked
	guardStop   chan struct{}
	guardDone   chan struct{}
	outcome     string

	// prior counts the records of earlier incarnations of the topic (it
	// was deleted and created again), for the report.
	prior struct{ produced int64 }

	// delay is how long the loop body of consume takes per record, to
	// keep a fault in the middle of the stream.
	delay time.Duration
}

// newScenario starts a cluster with the scenario's topic of parts
// partitions. opts are added to the cluster's.
func newScenario(t *testing.T, name string, parts int32, opts ...kstreamtest.Option) *scenario {
	t.Helper()
	slug := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		case r >= 'A' && r <= 'Z':
			return r - 'A' + 'a'
		}
		return '.'
	}, strings.TrimPrefix(t.Name(), "Test"))
	sc := &scenario{
		t:       t,
		name:    name,
		topic:   "t-" + slug,
		group:   "g-" + slug,
		parts:   parts,
		began:   time.Now(),
		ledger:  new(kstreamtest.Ledger),
		checked: make(map[int32]int64),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	sc.ctx = ctx
	sc.log = bufferedLogger(t)
	sc.c = kstreamtest.NewCluster(t, append([]kstreamtest.Option{kstreamtest.Topic(sc.topic, parts)}, opts...)...)
	return sc
}

// bufferedLogger returns a logger whose output is shown only if the test
// fails (or FAULTS_LOGS is set), so that a failure comes with the streams' and franz-go's story.
func bufferedLogger(t *testing.T) *slog.Logger {
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("FAULTS_LOGS") != "" {
			t.Logf("stream logs:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	const max = 4 << 20 // keep the last few MiB
	if b.b.Len() > max {
		rest := slices.Clone(b.b.Bytes()[b.b.Len()-max/2:])
		b.b.Reset()
		b.b.WriteString("[... earlier logs dropped ...]\n")
		b.b.Write(rest)
	}
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (sc *scenario) cluster() *kstreamtest.Cluster {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.c
}

// value is the value of the i-th record produce writes: record i is on
// partition i%parts at offset i/parts.
func value(i int) string { return fmt.Sprintf("v%d", i) }

// expectedValue is the value produce wrote at the given partition and offset.
func (sc *scenario) expectedValue(partition int32, offset int64) string {
	return value(int(offset)*int(sc.parts) + int(partition))
}

// produce writes records from .. to-1 through the kit's client: record i
// has key k<i>, value v<i>, and goes to partition i%parts, so that it lands
// at offset i/parts (produce must be called with consecutive ranges).
func (sc *scenario) produce(from, to int) {
	sc.t.Helper()
	if err := sc.cluster().Produce(sc.ctx, sc.records(from, to)...); err != nil {
		sc.t.Fatal(err)
	}
}

// records returns the records produce writes.
func (sc *scenario) records(from, to int) []*kgo.Record {
	recs := make([]*kgo.Record, 0, to-from)
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{
			Topic:     sc.topic,
			Partition: int32(i) % sc.parts,
			Key:       []byte(fmt.Sprintf("k%d", i)),
			Value:     []byte(value(i)),
		})
	}
	return recs
}

// stream returns a String stream of the scenario's topic and group, built
// by kstreamtest (test timings, crashable).
func (sc *scenario) stream(opts ...kstream.Option) *kstream.Stream[string] {
	sc.t.Helper()
	base := []kstream.Option{kstream.Topics(sc.topic), kstream.Group(sc.group), kstream.Logger(sc.log)}
	return kstreamtest.NewStream(sc.t, sc.cluster(), codec.String(), append(base, opts...)...)
}

// monitor starts the commit monitor and the commit guard on the current
// cluster. Calling it again (after a broker restart) moves both to the new
// cluster; the guard keeps what it checked.
func (sc *scenario) monitor() {
	sc.t.Helper()
	c := sc.cluster()
	mon := c.MonitorCommits(sc.t, sc.group)
	sc.mu.Lock()
	old := sc.mon
	sc.mon = mon
	start := sc.guardStop == nil
	var stop, done chan struct{}
	if start {
		stop, done = make(chan struct{}), make(chan struct{})
		sc.guardStop, sc.guardDone = stop, done
	}
	sc.mu.Unlock()
	if old != nil {
		old.Stop()
		if err := old.CheckMonotonic(); err != nil {
			sc.t.Error(err)
		}
	}
	if start {
		go sc.guard(stop, done)
		sc.t.Cleanup(sc.stopGuard)
	}
}

// pauseMonitor stops the commit monitor (before the cluster goes away) after
// checking it; the guard idles until monitor is called again.
func (sc *scenario) pauseMonitor() {
	sc.mu.Lock()
	mon := sc.mon
	sc.mon = nil
	sc.mu.Unlock()
	if mon != nil {
		mon.Stop()
		mon.AssertMonotonic(sc.t)
	}
}

// setCluster makes c the scenario's cluster (after a broker restart).
func (sc *scenario) setCluster(c *kstreamtest.Cluster) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.c = c
}

// newIncarnation starts a new ledger and forgets the commits checked, for
// a topic deleted and created again: its offsets start at 0 again. The
// records of the old incarnation are counted in the report.
func (sc *scenario) newIncarnation(produced int64) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.ledger = new(kstreamtest.Ledger)
	sc.checked = make(map[int32]int64)
	sc.prior.produced += produced
}

func (sc *scenario) led() *kstreamtest.Ledger {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.ledger
}

// guard checks, every few milliseconds, that each committed offset of the
// scenario's topic covers only records the ledger holds: a commit at offset
// n says every record below n was handled. The ledger is written in the
// loop body (or by Track after the handler), before the stream marks the
// record, so a commit can never legitimately run ahead of it.
func (sc *scenario) guard(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		sc.checkCommits()
		select {
		case <-stop:
			sc.checkCommits()
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (sc *scenario) checkCommits() {
	sc.mu.Lock()
	mon := sc.mon
	sc.mu.Unlock()
	if mon == nil {
		return
	}
	seen := mon.Seen()[sc.topic]
	ledger := sc.led()
	for p, off := range seen {
		sc.mu.Lock()
		from := sc.checked[p]
		sc.mu.Unlock()
		for o := from; o < off; o++ {
			if ledger.Times(sc.topic, p, o) == 0 {
				sc.mu.Lock()
				sc.violations = append(sc.violations, fmt.Sprintf("%s/%d committed at %d while offset %d was not handled", sc.topic, p, off, o))
				sc.mu.Unlock()
				break
			}
		}
		sc.mu.Lock()
		if off > sc.checked[p] {
			sc.checked[p] = off
		}
		sc.mu.Unlock()
	}
}

func (sc *scenario) stopGuard() {
	sc.mu.Lock()
	stop, done := sc.guardStop, sc.guardDone
	sc.guardStop = nil
	sc.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// noteShutdown records how long a Close or Stop took.
func (sc *scenario) noteShutdown(d time.Duration) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.maxShutdown = max(sc.maxShutdown, d)
}

// close closes s, timing it, and returns Close's error.
func (sc *scenario) close(s kstreamtest.Closer) error {
	start := time.Now()
	err := s.Close()
	sc.noteShutdown(time.Since(start))
	return err
}

// stop stops eng with a deadline, timing it, and returns Stop's error.
func (sc *scenario) stop(eng *kstream.Engine, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err := eng.Stop(ctx)
	sc.noteShutdown(time.Since(start))
	return err
}

// setOutcome sets the report's outcome column.
func (sc *scenario) setOutcome(format string, args ...any) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.outcome = fmt.Sprintf(format, args...)
}

// finish checks the scenario's invariants and adds its row to the report:
// every produced record handled at least once (and exactly once if
// exactlyOnce), commits never backwards and never past an unhandled
// record.
func (sc *scenario) finish(exactlyOnce bool) {
	t := sc.t
	t.Helper()
	c := sc.cluster()
	produced := c.Produced(t, sc.topic)
	ledger := sc.led()
	ledger.AssertAtLeastOnce(t, produced)
	lost, dups := sc.count(produced)
	if exactlyOnce && dups > 0 {
		ledger.AssertNoDuplicates(t)
	}
	sc.stopGuard()
	sc.mu.Lock()
	mon, violations := sc.mon, slices.Clone(sc.violations)
	sc.mu.Unlock()
	for _, v := range violations {
		t.Errorf("commit ran ahead of the ledger: %s", v)
	}
	if mon != nil {
		mon.AssertMonotonic(t)
	}
	sc.mu.Lock()
	r := row{
		scenario:    sc.name,
		duration:    time.Since(sc.began),
		produced:    produced.Total() + sc.prior.produced,
		lost:        lost,
		duplicated:  dups,
		maxShutdown: sc.maxShutdown,
		outcome:     sc.outcome,
	}
	sc.mu.Unlock()
	if t.Failed() {
		r.outcome = "FAILED: " + r.outcome
	}
	addRow(r)
	t.Logf("%s: produced %d, lost %d, duplicated %d, max shutdown %v, %s", sc.name, r.produced, lost, dups, r.maxShutdown, r.outcome)
}

// finishPartial adds the scenario's row for a run that stops half-way on
// purpose (a known bug's reproduction): it checks the commits, not that
// every record was handled, and reports the unhandled records in the
// outcome rather than as lost.
func (sc *scenario) finishPartial() {
	t := sc.t
	t.Helper()
	produced := sc.cluster().Produced(t, sc.topic)
	_, dups := sc.count(produced)
	sc.stopGuard()
	sc.mu.Lock()
	mon, violations := sc.mon, slices.Clone(sc.violations)
	r := row{scenario: sc.name, duration: time.Since(sc.began), produced: produced.Total() + sc.prior.produced,
		duplicated: dups, maxShutdown: sc.maxShutdown, outcome: sc.outcome}
	sc.mu.Unlock()
	for _, v := range violations {
		t.Errorf("commit ran ahead of the ledger: %s", v)
	}
	if mon != nil {
		mon.AssertMonotonic(t)
	}
	r.outcome += fmt.Sprintf(" (%d of %d records handled; the rest left uncommitted)", sc.led().Count(), produced.Total())
	if t.Failed() {
		r.outcome = "FAILED: " + r.outcome
	}
	addRow(r)
	t.Logf("%s: %s", sc.name, r.outcome)
}

// count returns how many produced records the ledger lacks, and how many
// extra times records were handled.
func (sc *scenario) count(produced kstreamtest.Offsets) (lost, dups int) {
	ledger := sc.led()
	for p, end := range produced[sc.topic] {
		for o := int64(0); o < end; o++ {
			switch n := ledger.Times(sc.topic, p, o); {
			case n == 0:
				lost++
			case n > 1:
				dups += n - 1
			}
		}
	}
	return lost, dups
}

// loop is a Records range running on a goroutine of its own.
type loop struct {
	done chan struct{}

	mu    sync.Mutex
	errs  []error
	fatal *kstream.FetchError
}

// consume ranges over s until the range ends, adding each record to the
// ledger and checking its value; errors are collected, and the range goes
// on after every error but a fatal one (which ends it).
func (sc *scenario) consume(s *kstream.Stream[string]) *loop {
	l := &loop{done: make(chan struct{})}
	ledger := sc.led()
	go func() {
		defer close(l.done)
		for rec, err := range s.Records(sc.ctx) {
			if err != nil {
				l.mu.Lock()
				l.errs = append(l.errs, err)
				var fe *kstream.FetchError
				if errors.As(err, &fe) && fe.Fatal {
					l.fatal = fe
				}
				l.mu.Unlock()
				continue
			}
			if sc.delay > 0 {
				time.Sleep(sc.delay)
			}
			if want := sc.expectedValue(rec.Partition, rec.Offset); rec.Value != want {
				sc.t.Errorf("record %s/%d@%d has value %q, want %q", rec.Topic, rec.Partition, rec.Offset, rec.Value, want)
			}
			ledger.Add(rec.Topic, rec.Partition, rec.Offset)
		}
	}()
	return l
}

// wait waits for the range to end.
func (l *loop) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-l.done:
	case <-time.After(timeout):
		t.Fatalf("the range did not end within %v", timeout)
	}
}

func (l *loop) errors() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

func (l *loop) fatalErr() *kstream.FetchError {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

// waitHandled waits until the ledger holds n distinct records.
func (sc *scenario) waitHandled(n int, timeout time.Duration) {
	sc.t.Helper()
	sc.led().Wait(sc.t, n, timeout)
}

// waitCaughtUp waits until the group committed every record of the topic.
func (sc *scenario) waitCaughtUp(timeout time.Duration) {
	sc.t.Helper()
	sc.cluster().WaitCaughtUp(sc.t, sc.group, timeout, sc.topic)
}
