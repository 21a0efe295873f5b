// Rebalance-listeners runs two members of one consumer group in one process,
// so that partitions move between them, and prints what their rebalance
// listeners are told. With manual commits and
// kstream.ManualCommitRebalanceListener, no record is processed twice.
//
// It is the Go counterpart of "Rebalance Listener" on the kstreams Streams
// page and its three listeners:
//
//   - MetricsRebalanceListener: kstreams' default listener, which drops the
//     metrics of revoked partitions. Every kstream stream does this whatever
//     its listeners. The custom listener below embeds it, the Go form of
//     "inherit from MetricsRebalanceListener", and calls it from its own
//     methods as a Python subclass calls super().
//   - ManualCommitRebalanceListener: with manual commits
//     (kstream.ManualCommit()), it commits the records a member has taken
//     before its partitions are revoked, so that the next owner does not get
//     them again. It also does what MetricsRebalanceListener does.
//   - A custom listener: member, a type implementing kstream.RebalanceListener
//     (OnAssigned, OnRevoked, OnLost), prints every change and, on a revoke,
//     the offsets the group has committed for the revoked partitions.
//
// Listeners run in the order given, so the custom one, given second, sees
// the commit ManualCommitRebalanceListener made.
//
// The loop bodies here never commit: the listener's commits before each
// revoke are the only ones. Without it, a member would hand its partitions
// over with nothing committed and the next owner would process them again
// from the start.
//
// The program:
//
//  1. starts member a, which gets all four partitions and processes the
//     first 200 records;
//  2. starts member b: the group rebalances (cooperatively: a keeps two
//     partitions and gives up two), a commits before the revoke, and b
//     starts each partition it gets at the offset a committed; then 200
//     more records are shared between them;
//  3. stops b: it commits before its partitions are revoked, a gets them
//     back and starts them where b stopped, and processes 40 more records;
//  4. stops a, and prints how often each record was processed and the
//     committed offsets, which are the ends of the partitions.
//
// With KAFKA_BROKERS unset it starts an in-process Kafka cluster:
//
//	go run ./examples/rebalance-listeners
//
// With KAFKA_BROKERS set it uses that cluster, with a topic and group named
// for this run, which it deletes at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

const partitions = 4

func main() {
	verbose := flag.Bool("v", false, "show the SDK's info logs")
	flag.Parse()
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "rebalance-listeners:", err)
		os.Exit(1)
	}
}

// demo is what the members share: the cluster, the output and the ledger of
// processed records.
type demo struct {
	brokers      []string
	topic, group string
	cl           *kgo.Client
	adm          *kadm.Client
	out          *printer

	mu       sync.Mutex
	produced int
	seen     map[[2]int64]int // times each (partition, offset) was processed
	dups     int
}

func run(w io.Writer) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	topic, group := "events", "rebalance-demo"
	external := strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != ""
	if external {
		suffix := fmt.Sprintf("-%d", time.Now().UnixNano())
		topic, group = topic+suffix, group+suffix
	}
	brokers, stop, err := kstreamtest.StartCluster(kstreamtest.Topic(topic, partitions))
	if err != nil {
		return err
	}
	defer stop()
	cl, err := kstreamtest.NewClient(brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return err
	}
	defer cl.Close()
	d := &demo{
		brokers: brokers, topic: topic, group: group,
		cl: cl, adm: kadm.NewClient(cl), out: &printer{w: w},
		seen: map[[2]int64]int{},
	}
	if external {
		defer d.adm.DeleteTopics(context.WithoutCancel(ctx), topic)
		defer d.adm.DeleteGroups(context.WithoutCancel(ctx), group)
	}

	if err := d.produce(ctx, 200); err != nil {
		return err
	}
	a, err := d.start(ctx, "a")
	if err != nil {
		return err
	}
	defer a.stop()
	if err := d.waitProcessed(ctx, 200); err != nil {
		return err
	}
	d.out.printf("a processed 200 records; b joins the group\n")

	b, err := d.start(ctx, "b")
	if err != nil {
		return err
	}
	defer b.stop()
	if err := waitFor(ctx, "a and b to share the partitions", func() bool {
		return a.owned() > 0 && b.owned() > 0 && a.owned()+b.owned() == partitions
	}); err != nil {
		return err
	}
	if err := d.produce(ctx, 200); err != nil {
		return err
	}
	if err := d.waitProcessed(ctx, 400); err != nil {
		return err
	}
	d.out.printf("400 records processed: a processed %d, b %d; b leaves the group\n", a.count(), b.count())
	if err := b.stop(); err != nil {
		return err
	}

	if err := d.produce(ctx, 40); err != nil {
		return err
	}
	if err := d.waitProcessed(ctx, 440); err != nil {
		return err
	}
	d.out.printf("440 records processed; a leaves the group\n")
	if err := a.stop(); err != nil {
		return err
	}

	d.mu.Lock()
	distinct, dups := len(d.seen), d.dups
	d.mu.Unlock()
	d.out.printf("processed %d distinct records, %d of them more than once\n", distinct, dups)
	if dups != 0 || distinct != d.produced {
		return fmt.Errorf("%d records processed twice, %d of %d processed", dups, distinct, d.produced)
	}
	return d.printCommitted(ctx)
}

// member is one member of the group: a stream ranged on a goroutine of its
// own, and the stream's custom rebalance listener.
type member struct {
	// MetricsRebalanceListener drops the metrics of revoked and lost
	// partitions; member's methods call it as a subclass calls super().
	kstream.MetricsRebalanceListener

	name   string
	d      *demo
	s      *kstream.Stream[string]
	cancel context.CancelFunc
	done   chan error

	mu        sync.Mutex
	own       map[int32]bool
	fresh     map[int32]bool // assigned, no record processed yet
	processed int
	stopped   bool
}

// start opens a member and ranges over its records until stop.
func (d *demo) start(ctx context.Context, name string) (*member, error) {
	m := &member{name: name, d: d, done: make(chan error, 1), own: map[int32]bool{}, fresh: map[int32]bool{}}
	s, err := kstream.NewStream(codec.String(),
		kstream.Brokers(d.brokers...),
		kstream.Topics(d.topic),
		kstream.Group(d.group),
		kstream.Name(name),
		kstream.ManualCommit(),
		kstream.Listener(kstream.ManualCommitRebalanceListener{}),
		kstream.Listener(m),
		// Heartbeat often, so that members learn of a rebalance quickly.
		kstream.ClientOptions(kgo.HeartbeatInterval(100*time.Millisecond), kgo.FetchMaxWait(200*time.Millisecond)),
	)
	if err != nil {
		return nil, err
	}
	m.s = s
	if err := s.Open(ctx); err != nil {
		return nil, err
	}
	loopCtx, cancel := context.WithCancel(ctx)
	m.cancel = cancel
	go func() {
		for rec, err := range s.Records(loopCtx) {
			if err != nil {
				m.done <- err
				return
			}
			m.handle(rec)
		}
		m.done <- nil
	}()
	return m, nil
}

// handle processes a record: it notes it in the ledger, and reports the
// first record of each newly assigned partition.
func (m *member) handle(rec kstream.Record[string]) {
	m.mu.Lock()
	m.processed++
	first := m.fresh[rec.Partition]
	delete(m.fresh, rec.Partition)
	m.mu.Unlock()
	if first {
		m.d.out.printf("%s: first record of %s/%d: offset %d\n", m.name, rec.Topic, rec.Partition, rec.Offset)
	}
	time.Sleep(500 * time.Microsecond) // the work
	m.d.note(rec.Partition, rec.Offset)
}

// stop ends the member's loop at a record boundary, so that the record in
// hand is finished, then closes the stream: the partitions are revoked, and
// ManualCommitRebalanceListener commits everything processed.
func (m *member) stop() error {
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return nil
	}
	m.stopped = true
	m.mu.Unlock()
	m.cancel()
	err := <-m.done
	if cerr := m.s.Close(); err == nil {
		err = cerr
	}
	return err
}

// OnAssigned prints the partitions assigned.
func (m *member) OnAssigned(ctx context.Context, s kstream.AnyStream, assigned map[string][]int32) {
	m.mu.Lock()
	for _, p := range assigned[m.d.topic] {
		m.own[p], m.fresh[p] = true, true
	}
	m.mu.Unlock()
	m.d.out.printf("%s: assigned %s\n", s.Name(), formatPartitions(assigned))
	m.MetricsRebalanceListener.OnAssigned(ctx, s, assigned)
}

// OnRevoked prints the partitions revoked and what the group has committed
// for them: the ManualCommitRebalanceListener before this one has just
// committed.
func (m *member) OnRevoked(ctx context.Context, s kstream.AnyStream, revoked map[string][]int32) {
	m.mu.Lock()
	for _, p := range revoked[m.d.topic] {
		delete(m.own, p)
		delete(m.fresh, p)
	}
	m.mu.Unlock()
	m.d.out.printf("%s: revoked %s; committed: %s\n", s.Name(), formatPartitions(revoked), m.d.committed(ctx, revoked[m.d.topic]))
	m.MetricsRebalanceListener.OnRevoked(ctx, s, revoked)
}

// OnLost prints the partitions lost. Nothing can be committed for them: the
// group may have given them to another member already.
func (m *member) OnLost(ctx context.Context, s kstream.AnyStream, lost map[string][]int32) {
	m.mu.Lock()
	for _, p := range lost[m.d.topic] {
		delete(m.own, p)
		delete(m.fresh, p)
	}
	m.mu.Unlock()
	m.d.out.printf("%s: lost %s\n", s.Name(), formatPartitions(lost))
	m.MetricsRebalanceListener.OnLost(ctx, s, lost)
}

func (m *member) owned() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.own)
}

func (m *member) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.processed
}

// note records that a member processed (partition, offset).
func (d *demo) note(p int32, off int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := [2]int64{int64(p), off}
	d.seen[k]++
	if d.seen[k] == 2 {
		d.dups++
	}
}

func (d *demo) waitProcessed(ctx context.Context, n int) error {
	return waitFor(ctx, fmt.Sprintf("%d records to be processed", n), func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.seen) >= n
	})
}

// produce writes n records, spread evenly over the partitions.
func (d *demo) produce(ctx context.Context, n int) error {
	d.mu.Lock()
	from := d.produced
	d.mu.Unlock()
	recs := make([]*kgo.Record, 0, n)
	for i := from; i < from+n; i++ {
		recs = append(recs, &kgo.Record{Topic: d.topic, Partition: int32(i % partitions), Value: fmt.Appendf(nil, "event %d", i)})
	}
	if err := d.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	d.mu.Lock()
	d.produced += n
	d.mu.Unlock()
	return nil
}

// committed formats the group's committed offsets of the given partitions.
func (d *demo) committed(ctx context.Context, ps []int32) string {
	resp, err := d.adm.FetchOffsets(ctx, d.group)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return "(" + err.Error() + ")"
	}
	var parts []string
	for _, p := range slices.Sorted(slices.Values(ps)) {
		o, ok := resp.Lookup(d.topic, p)
		if !ok {
			parts = append(parts, fmt.Sprintf("%s/%d=none", d.topic, p))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s/%d=%d", d.topic, p, o.At))
	}
	return strings.Join(parts, " ")
}

// printCommitted prints the group's committed offsets next to the ends of
// the partitions, and fails if they differ.
func (d *demo) printCommitted(ctx context.Context) error {
	resp, err := d.adm.FetchOffsets(ctx, d.group)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("fetch committed offsets: %w", err)
	}
	ends, err := d.adm.ListEndOffsets(ctx, d.topic)
	if err != nil {
		return err
	}
	committed := resp.Offsets()[d.topic]
	for _, p := range slices.Sorted(maps.Keys(committed)) {
		end, _ := ends.Lookup(d.topic, p)
		d.out.printf("committed %s/%d: %d (end %d)\n", d.topic, p, committed[p].At, end.Offset)
		if committed[p].At != end.Offset {
			return fmt.Errorf("partition %d: committed %d, end %d", p, committed[p].At, end.Offset)
		}
	}
	if len(committed) != partitions {
		return fmt.Errorf("committed offsets for %d of %d partitions", len(committed), partitions)
	}
	return nil
}

// formatPartitions formats partitions by topic as "topic [0 1]".
func formatPartitions(m map[string][]int32) string {
	var out []string
	for _, t := range slices.Sorted(maps.Keys(m)) {
		out = append(out, fmt.Sprintf("%s %v", t, slices.Sorted(slices.Values(m[t]))))
	}
	return strings.Join(out, ", ")
}

func waitFor(ctx context.Context, what string, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, context.Cause(ctx))
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// printer serializes output: listeners run on franz-go's goroutines.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}
