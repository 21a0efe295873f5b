// Package bench is the peer-comparison harness behind cmd/benchcompare: it
// measures kstream's consumer and producer against raw franz-go,
// segmentio/kafka-go and IBM/sarama on the same data, in the same run.
//
// Process layout: the harness (the parent) starts the Kafka broker, an
// in-process kfake cluster from kstreamtest.Start, in a child process of its
// own, then runs every measured client run in a fresh child process too.
// So a run's CPU time, allocations and peak RSS are the client's alone: the
// broker's work is measured separately (from /proc), and no run inherits
// another's heap. The parent only creates topics, pre-produces the records
// to consume and checks what was produced.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config says what to measure.
type Config struct {
	Records int // records per consume and batched/async produce run
	// TransformRecords: records per transform run (transform.go); 0:
	// Records, at most 100000.
	TransformRecords int
	SyncRecords      int   // records per produce-sync run
	ScaleRecords     int   // records per share-scale run (one partition, 1 ms per record); 0: 2000
	Sizes            []int // value sizes in bytes; each is a pass of its own
	Partitions       int
	Rounds           int
	Batch            int      // records per batch call (produce-batch, produce-async)
	Only             []string // scenarios, clients or scenario/client; empty: all
	Brokers          []string // an existing cluster; empty: start a broker child
	NumBrokers       int      // brokers of the broker child
	Timeout          time.Duration
	Warmup           bool // one unmeasured baseline run before each scenario
	// NotIdempotent makes franz-go and kstream producers write without
	// idempotence, as kafka-go and sarama (by default) do.
	NotIdempotent bool
	// FetchMaxBytes and FetchMaxPartitionBytes, if positive, are given to
	// the kstream consumers (kgo.FetchMaxBytes, kgo.FetchMaxPartitionBytes
	// through ClientOptions) instead of their defaults.
	FetchMaxBytes, FetchMaxPartitionBytes int32
	// EngineLinger, if positive, is given to the kstream engines'
	// producers (kgo.ProducerLinger through ClientOptions).
	EngineLinger time.Duration
	Exe          string // executable started as children; empty: this one
	Log          io.Writer
}

// Report is what a harness run measured.
type Report struct {
	Config   Config
	Brokers  []string
	External bool // the cluster was not started by the harness
	Tables   []Table
}

// Table is one scenario at one record size.
type Table struct {
	Scenario   string
	Size       int
	Records    int
	Partitions int
	Batch      int
	Rounds     int
	Baseline   string // client ID the ratios are to (but see Row.Ref)
	Rows       []Row
	Notes      []string // clients left out, and why
}

// Row is one client's medians over the rounds of a table.
type Row struct {
	ID, Name, How string
	Ref           string // client ID its ratios are to
	External      bool   // ran in a process of its own (kcat): no Go heap or allocations
	Runs, Failed  int
	Errors        []string
	Consumed      []int64 // records each run consumed or had acknowledged
	WallNS        []int64 // per round; 0 for a failed run
	SteadyNS      []int64 // per round (consume); 0 for a failed run

	RecPerSec, MBPerSec         float64
	Ratio, RatioMin, RatioMax   float64 // records/s over the baseline's in the same round
	SteadyRecPerSec             float64 // consume: first record to last
	SteadyRatio                 float64
	CPUPerM, BrokerCPUPerM      float64 // CPU seconds per million records
	AllocsPerRec, AllocBytesRec float64
	RSSMiB, HeapMiB             float64 // peak RSS; peak Go heap (objects)
}

var runID = time.Now().UnixNano()
var seq atomic.Int64

func uniqueName(kind string) string {
	return fmt.Sprintf("bc-%s-%d-%d", kind, runID, seq.Add(1))
}

// Scenarios is every scenario, in the order they run.
var Scenarios = []string{scenarioConsume, scenarioShare, scenarioShareScale, scenarioProduceSync, scenarioProduceBatch, scenarioProduceAsync, scenarioTransform, scenarioTransformEOS}

// clientIDs returns the clients of a scenario, in a fixed order, baseline
// first, in a slice of the caller's own (a test that removed kcat from the
// package's order in place left the selection test without it).
func clientIDs(scenario string) []string {
	if scenario == scenarioConsume {
		return slices.Clone(consumerOrder)
	}
	if scenario == scenarioShare {
		return slices.Clone(shareOrder)
	}
	if scenario == scenarioShareScale {
		return slices.Clone(shareScaleOrder)
	}
	if isTransform(scenario) {
		return slices.Clone(transformOrder[scenario])
	}
	var ids []string
	for _, id := range producerOrder {
		if _, ok := producers[scenario][id]; ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// refOf returns the client whose runs a client's ratios are to.
func refOf(scenario, id string) string {
	if scenario == scenarioConsume && consumers[id].ref != "" {
		return consumers[id].ref
	}
	return baselineID
}

// external reports whether a client runs as a program of its own (kcat).
func external(id string) bool { return id == "kcat" || id == "kcat-nogroup" }

func clientInfo(scenario, id string) (name, how string) {
	if scenario == scenarioConsume {
		c := consumers[id]
		return c.name, c.how
	}
	if scenario == scenarioShare {
		c := shareConsumers[id]
		return c.name, c.how
	}
	if scenario == scenarioShareScale {
		c := shareScaleConsumers[id]
		return c.name, c.how
	}
	if isTransform(scenario) {
		c := transformers[scenario][id]
		return c.name, c.how
	}
	p := producers[scenario][id]
	return p.name, p.how
}

const baselineID = "franz-go"

// selection applies Config.Only.
type selection struct {
	scenarios map[string]bool
	clients   map[string]bool
	pairs     map[string]bool
}

func newSelection(only []string) (selection, error) {
	s := selection{map[string]bool{}, map[string]bool{}, map[string]bool{}}
	known := map[string]bool{}
	for _, sc := range Scenarios {
		for _, id := range clientIDs(sc) {
			known[id] = true
		}
	}
	for _, tok := range only {
		tok = strings.TrimSpace(tok)
		switch {
		case tok == "":
		case slices.Contains(Scenarios, tok):
			s.scenarios[tok] = true
		case known[tok]:
			s.clients[tok] = true
		case strings.Contains(tok, "/"):
			sc, id, _ := strings.Cut(tok, "/")
			if !slices.Contains(Scenarios, sc) || !slices.Contains(clientIDs(sc), id) {
				return s, fmt.Errorf("-only: no client %q in scenario %q", id, sc)
			}
			s.pairs[tok] = true
		default:
			return s, fmt.Errorf("-only: %q is neither a scenario (%s) nor a client", tok, strings.Join(Scenarios, ", "))
		}
	}
	return s, nil
}

// pick returns the selected clients of a scenario, baseline first (it is
// always included, for the ratios), or nil if the scenario is not selected.
// Scenario and client tokens combine (-only consume,sarama: sarama's
// consumer); scenario/client tokens add single clients.
func (s selection) pick(scenario string) []string {
	onlyPairs := len(s.scenarios) == 0 && len(s.clients) == 0 && len(s.pairs) > 0
	var out []string
	for _, id := range clientIDs(scenario) {
		ok := s.pairs[scenario+"/"+id]
		if !ok && !onlyPairs {
			ok = (len(s.scenarios) == 0 || s.scenarios[scenario]) && (len(s.clients) == 0 || s.clients[id])
		}
		if ok {
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return nil
	}
	// The clients the ratios are to run too, in the scenario's order.
	need := map[string]bool{baselineID: true}
	for _, id := range out {
		need[id], need[refOf(scenario, id)] = true, true
	}
	out = out[:0]
	for _, id := range clientIDs(scenario) {
		if need[id] {
			out = append(out, id)
		}
	}
	return out
}

func (c *Config) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, format+"\n", args...)
	}
}

// Run measures what cfg asks for.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	sel, err := newSelection(cfg.Only)
	if err != nil {
		return nil, err
	}
	if cfg.Records <= 0 || cfg.Partitions <= 0 || cfg.Rounds <= 0 || cfg.Batch <= 0 || len(cfg.Sizes) == 0 {
		return nil, errors.New("records, partitions, rounds, batch and sizes must be positive")
	}
	if cfg.SyncRecords <= 0 {
		cfg.SyncRecords = max(cfg.Records/10, 1)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Minute
	}
	exe := cfg.Exe
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	rep := &Report{Config: cfg}

	brokerPID := -1
	switch {
	case len(cfg.Brokers) > 0:
		rep.Brokers, rep.External = cfg.Brokers, true
	case strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != "":
		for _, a := range strings.Split(os.Getenv("KAFKA_BROKERS"), ",") {
			if a = strings.TrimSpace(a); a != "" {
				rep.Brokers = append(rep.Brokers, a)
			}
		}
		rep.External = true
	default:
		bp, err := startBroker(exe, max(cfg.NumBrokers, 1))
		if err != nil {
			return nil, fmt.Errorf("start broker: %w", err)
		}
		defer bp.Close()
		rep.Brokers = bp.brokers
		brokerPID = bp.PID()
		cfg.logf("broker child pid %d at %s", brokerPID, strings.Join(bp.brokers, ","))
	}

	adm, err := newAdmin(rep.Brokers)
	if err != nil {
		return nil, err
	}
	defer adm.Close()

	for _, size := range cfg.Sizes {
		for _, sc := range Scenarios {
			ids := sel.pick(sc)
			if ids == nil {
				continue
			}
			t, err := runScenario(ctx, &cfg, adm, exe, brokerPID, rep.Brokers, sc, size, ids)
			if err != nil {
				return rep, err
			}
			rep.Tables = append(rep.Tables, *t)
		}
	}
	return rep, nil
}

type admin struct {
	cl      *kgo.Client
	adm     *kadm.Client
	brokers []string
}

func newAdmin(brokers []string) (*admin, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(0),
	)
	if err != nil {
		return nil, err
	}
	return &admin{cl: cl, adm: kadm.NewClient(cl), brokers: brokers}, nil
}

func (a *admin) Close() { a.cl.Close() }

func (a *admin) createTopic(ctx context.Context, name string, partitions int) error {
	resp, err := a.adm.CreateTopic(ctx, int32(partitions), 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", name, err)
	}
	for {
		md, err := a.adm.Metadata(ctx, name)
		if err == nil {
			if td, ok := md.Topics[name]; ok && td.Err == nil && len(td.Partitions) == partitions {
				ready := true
				for _, p := range td.Partitions {
					ready = ready && p.Leader >= 0 && p.Err == nil
				}
				if ready {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %s not ready: %w", name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (a *admin) deleteTopic(ctx context.Context, name string) {
	_, _ = a.adm.DeleteTopics(ctx, name)
}

// endOffsets returns the end offset of each partition 0..partitions-1.
func (a *admin) endOffsets(ctx context.Context, topic string, partitions int) ([]int64, error) {
	lo, err := a.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	if err := lo.Error(); err != nil {
		return nil, err
	}
	out := make([]int64, partitions)
	lo.Each(func(o kadm.ListedOffset) {
		if int(o.Partition) < partitions {
			out[o.Partition] = o.Offset
		}
	})
	return out, nil
}

// prepareConsume creates the topic to consume and writes n records of size
// bytes to it, spread evenly over its partitions.
func (a *admin) prepareConsume(ctx context.Context, topic string, n, size, partitions int) ([]int64, error) {
	if err := a.createTopic(ctx, topic, partitions); err != nil {
		return nil, err
	}
	v := newValues(n, size)
	const chunk = 10_000
	recs := make([]*kgo.Record, 0, chunk)
	for i := 0; i < n; {
		recs = recs[:0]
		for ; i < n && len(recs) < chunk; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % partitions), Value: v.at(i)})
		}
		if err := a.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return nil, fmt.Errorf("pre-produce: %w", err)
		}
	}
	ends, err := a.endOffsets(ctx, topic, partitions)
	if err != nil {
		return nil, err
	}
	var sum int64
	for _, e := range ends {
		sum += e
	}
	if sum != int64(n) {
		return nil, fmt.Errorf("pre-produce: topic %s holds %d records, want %d", topic, sum, n)
	}
	return ends, nil
}

func runScenario(ctx context.Context, cfg *Config, adm *admin, exe string, brokerPID int, brokers []string, scenario string, size int, ids []string) (*Table, error) {
	n := cfg.Records
	switch {
	case scenario == scenarioProduceSync:
		n = cfg.SyncRecords
	case isTransform(scenario):
		n = cfg.TransformRecords
		if n <= 0 {
			n = min(cfg.Records, 100_000)
		}
	}
	partitions := cfg.Partitions
	if scenario == scenarioShareScale {
		n, partitions = cfg.ScaleRecords, 1
		if n <= 0 {
			n = defaultScaleRecords
		}
	}
	t := &Table{Scenario: scenario, Size: size, Records: n, Partitions: partitions, Batch: cfg.Batch, Rounds: cfg.Rounds, Baseline: baselineID}
	if !kcatAvailable() {
		ids = slices.DeleteFunc(slices.Clone(ids), external)
		t.Notes = append(t.Notes, "kcat (librdkafka) left out: kcat not found on PATH (apt-get install kcat, or set KCAT)")
		cfg.logf("[%s %dB] kcat not found: its runs are left out", scenario, size)
	}
	base := spec{
		Scenario:   scenario,
		Brokers:    brokers,
		Records:    n,
		Size:       size,
		Partitions: partitions,
		Batch:      cfg.Batch,
		Timeout:    int64(cfg.Timeout),

		NotIdempotent: cfg.NotIdempotent,

		FetchMaxBytes:          cfg.FetchMaxBytes,
		FetchMaxPartitionBytes: cfg.FetchMaxPartitionBytes,
		EngineLinger:           int64(cfg.EngineLinger),
	}
	consumes := isConsume(scenario) || isTransform(scenario)
	if consumes {
		base.Topic = uniqueName(fmt.Sprintf("%s-%d", scenario, size))
		pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		start := time.Now()
		ends, err := adm.prepareConsume(pctx, base.Topic, n, size, partitions)
		cancel()
		if err != nil {
			return nil, err
		}
		base.EndOffsets = ends
		cfg.logf("[%s %dB] pre-produced %d records on %d partitions in %v", scenario, size, n, partitions, time.Since(start).Round(time.Millisecond))
		defer adm.deleteTopic(context.Background(), base.Topic)
	}

	one := func(id string, round int) (Result, error) {
		sp := base
		sp.Client = id
		sp.ProfileName = profileName(sp, round)
		switch {
		case isTransform(scenario):
			sp.Group = uniqueName("group-" + id)
			sp.OutTopic = uniqueName(scenario + "-out-" + id)
			if err := adm.createTopic(ctx, sp.OutTopic, cfg.Partitions); err != nil {
				return Result{}, err
			}
			defer adm.deleteTopic(context.Background(), sp.OutTopic)
		case isConsume(scenario):
			sp.Group = uniqueName("group-" + id)
		default:
			sp.Topic = uniqueName(scenario + "-" + id)
			if err := adm.createTopic(ctx, sp.Topic, cfg.Partitions); err != nil {
				return Result{}, err
			}
			defer adm.deleteTopic(context.Background(), sp.Topic)
		}
		began := time.Now()
		res := runChild(ctx, exe, sp, brokerPID)
		res.ChildNS = time.Since(began).Nanoseconds()
		if isTransform(scenario) && res.Err == "" {
			if err := adm.checkOutput(ctx, sp.OutTopic, cfg.Partitions, int64(n), scenario == scenarioTransformEOS); err != nil {
				res.Err = err.Error()
			}
		}
		if !consumes && res.Err == "" {
			ends, err := adm.endOffsets(ctx, sp.Topic, cfg.Partitions)
			var sum int64
			for _, e := range ends {
				sum += e
			}
			switch {
			case err != nil:
				res.Err = fmt.Sprintf("end offsets: %v", err)
			case sum != int64(n):
				res.Err = fmt.Sprintf("topic holds %d records after the run, want %d", sum, n)
			}
		}
		return res, ctx.Err()
	}

	if cfg.Warmup {
		res, err := one(baselineID, 0)
		if err != nil {
			return nil, err
		}
		cfg.logf("[%s %dB] warm-up %s: %s", scenario, size, baselineID, describe(res, n, size))
	}

	results := make(map[string][]Result, len(ids))
	for round := range cfg.Rounds {
		order := roundOrder(ids, round)
		for _, id := range order {
			res, err := one(id, round+1)
			if err != nil {
				return nil, err
			}
			results[id] = append(results[id], res)
			cfg.logf("[%s %dB] round %d/%d %-16s %s", scenario, size, round+1, cfg.Rounds, id, describe(res, n, size))
		}
	}

	for _, id := range ids {
		name, how := clientInfo(scenario, id)
		row := Row{ID: id, Name: name, How: how, Ref: refOf(scenario, id), External: external(id)}
		baseRes := results[row.Ref]
		var rate, mbs, steady, cpu, bcpu, allocs, allocB, rss, heap, ratios, sratios []float64
		for round, r := range results[id] {
			row.Runs++
			row.Consumed = append(row.Consumed, r.Records)
			if r.Err != "" || r.WallNS <= 0 {
				row.WallNS = append(row.WallNS, 0)
				row.SteadyNS = append(row.SteadyNS, 0)
				row.Failed++
				if !slices.Contains(row.Errors, r.Err) {
					row.Errors = append(row.Errors, r.Err)
				}
				continue
			}
			row.WallNS = append(row.WallNS, r.WallNS)
			row.SteadyNS = append(row.SteadyNS, r.SteadyNS)
			rt := float64(n) / (float64(r.WallNS) / 1e9)
			rate = append(rate, rt)
			mbs = append(mbs, rt*float64(size)/1e6)
			cpu = append(cpu, float64(r.CPUNS)/1e9/float64(n)*1e6)
			if r.BrokerCPUNS >= 0 {
				bcpu = append(bcpu, float64(r.BrokerCPUNS)/1e9/float64(n)*1e6)
			}
			allocs = append(allocs, float64(r.Mallocs)/float64(n))
			allocB = append(allocB, float64(r.AllocBytes)/float64(n))
			rss = append(rss, float64(r.MaxRSSKB)/1024)
			heap = append(heap, float64(r.PeakHeapKB)/1024)
			var st float64
			if r.SteadyNS > 0 {
				st = float64(n) / (float64(r.SteadyNS) / 1e9)
				steady = append(steady, st)
			}
			if round < len(baseRes) {
				b := baseRes[round]
				if b.Err == "" && b.WallNS > 0 {
					ratios = append(ratios, float64(b.WallNS)/float64(r.WallNS))
					if b.SteadyNS > 0 && r.SteadyNS > 0 {
						sratios = append(sratios, float64(b.SteadyNS)/float64(r.SteadyNS))
					}
				}
			}
		}
		row.RecPerSec, row.MBPerSec = median(rate), median(mbs)
		row.SteadyRecPerSec, row.SteadyRatio = median(steady), median(sratios)
		row.Ratio = median(ratios)
		if len(ratios) > 0 {
			row.RatioMin, row.RatioMax = slices.Min(ratios), slices.Max(ratios)
		}
		row.CPUPerM, row.BrokerCPUPerM = median(cpu), median(bcpu)
		if len(bcpu) == 0 {
			row.BrokerCPUPerM = -1
		}
		row.AllocsPerRec, row.AllocBytesRec, row.RSSMiB, row.HeapMiB = median(allocs), median(allocB), median(rss), median(heap)
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}

// roundOrder is the order in which round (from 0) runs the clients ids: ids
// rotated by one every two rounds, and reversed in odd rounds, so that no
// client always runs first, and none always runs after the same neighbour
// (a run can leave the broker work to do, such as collecting the topic
// deleted after it, that falls in the next run).
func roundOrder(ids []string, round int) []string {
	k := round / 2 % len(ids)
	order := append(slices.Clone(ids[k:]), ids[:k]...)
	if round%2 == 1 {
		slices.Reverse(order)
	}
	return order
}

// roundRatios returns, for each round where both ran, a's duration over
// b's: b's speed relative to a's.
func roundRatios(a, b []int64) []float64 {
	var out []float64
	for i := range min(len(a), len(b)) {
		if a[i] > 0 && b[i] > 0 {
			out = append(out, float64(a[i])/float64(b[i]))
		}
	}
	return out
}

func describe(r Result, n, size int) string {
	if r.Err != "" {
		return "FAILED: " + r.Err
	}
	secs := float64(r.WallNS) / 1e9
	return fmt.Sprintf("%9.0f rec/s %7.2f MB/s  wall %6.3fs  cpu %6.3fs  broker cpu %6.3fs  %5.2f allocs/rec  rss %5.1f MiB  (child %.1fs)",
		float64(n)/secs, float64(n)*float64(size)/secs/1e6, secs, float64(r.CPUNS)/1e9,
		float64(r.BrokerCPUNS)/1e9, float64(r.Mallocs)/float64(n), float64(r.MaxRSSKB)/1024, float64(r.ChildNS)/1e9)
}

// medianCI returns a distribution-free 95% confidence interval of the
// median of the population xs was drawn from: the order statistics s[l]
// and s[n-1-l] of the sorted values, with l the largest index for which
// the interval covers the median with probability at least 0.95 (the count
// of values below the median is binomial, n and 1/2). ok is false when n is
// under 6, too few for any such interval. The rounds of a run scatter by
// 10-25%: a median of 15 rounds moves by a few percent from run to run, and
// the interval says by how much.
func medianCI(xs []float64) (lo, hi float64, ok bool) {
	n := len(xs)
	s := slices.Clone(xs)
	slices.Sort(s)
	// tail(l) = P(B <= l), B ~ Binomial(n, 1/2); the interval's coverage
	// is 1 - 2*tail(l).
	l, tail := -1, 0.0
	lnN, _ := math.Lgamma(float64(n + 1))
	lnN -= float64(n) * math.Ln2 // ln(n! / 2^n)
	for k := 0; k < n/2; k++ {
		lk, _ := math.Lgamma(float64(k + 1))
		lnk, _ := math.Lgamma(float64(n - k + 1))
		tail += math.Exp(lnN - lk - lnk) // P(B = k)
		if 2*tail > 0.05 {
			break
		}
		l = k
	}
	if l < 0 {
		return 0, 0, false
	}
	return s[l], s[n-1-l], true
}

// ciText is the 95% interval of the median of xs, as text to put after a
// ratio ("" when there are too few values for one).
func ciText(xs []float64) string {
	lo, hi, ok := medianCI(xs)
	if !ok {
		return ""
	}
	return fmt.Sprintf(" (95%% CI %.2f–%.2f over %d rounds)", lo, hi, len(xs))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
