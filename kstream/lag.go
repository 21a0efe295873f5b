// Lag from the group: the per-partition lag and committed offsets of the
// streams an engine runs, read from the brokers, so that they outlive the
// stream's consumer (a crashed or stopped stream is still in its engine,
// and its lag still grows), and the per-stream up gauge.

package kstream

import (
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// How often, at most, the lag of one group is read from the brokers (more
// frequent scrapes are answered from the last reading), and how long a
// scrape waits for a reading (it answers with the last one after that).
const (
	groupLagMaxAge  = 2 * time.Second
	groupLagTimeout = 3 * time.Second
)

// runningEngines are the engines that run, which the collectors of every
// registry report on (each the streams whose metrics it holds).
var runningEngines sync.Map // *Engine → struct{}

func registerEngine(e *Engine)   { runningEngines.Store(e, struct{}{}) }
func unregisterEngine(e *Engine) { runningEngines.Delete(e) }

// lagTarget is what a scrape reports for one stream of an engine.
type lagTarget struct {
	stream  string
	group   string
	topics  []string
	pattern *regexp.Regexp
	up      bool
}

// lagTargets returns the engine's streams that report to m, and the
// engine's producer, whose connection reads the offsets (nil while it
// starts or stops).
func (e *Engine) lagTargets(m *metricsSet) ([]lagTarget, *kgo.Client) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ts []lagTarget
	for _, r := range e.runners {
		if r.s.metricsSet() != m {
			continue
		}
		group, topics, pattern := r.s.lagSource()
		r.mu.Lock()
		up := r.state == StreamRunning
		r.mu.Unlock()
		ts = append(ts, lagTarget{stream: r.name, group: group, topics: topics, pattern: pattern, up: up})
	}
	var producer *kgo.Client
	if e.state == engineRunning {
		producer = e.producer
	}
	return ts, producer
}

// groupLagKey identifies a reading: one group's offsets in some topics,
// through one engine.
type groupLagKey struct {
	e      *Engine
	group  string
	topics string // the topics, or the pattern, joined
}

type groupLagReading struct {
	at   time.Time
	rows []partitionLag
}

// partitionLag is one partition's committed offset (-1: none) and lag.
type partitionLag struct {
	topic     string
	partition int32
	committed int64
	lag       int64
}

// groupLags reads and caches the group offsets of engine streams for one
// registry's collector.
type groupLags struct {
	mu       sync.Mutex // one scrape at a time reads
	readings map[groupLagKey]*groupLagReading
}

// collectEngines emits the up gauge of every engine stream that reports
// to m and, for those with a group, the group's committed offsets and lag
// per partition.
func (pc *partitionCollector) collectEngines(ch chan<- prometheus.Metric) {
	pc.lags.mu.Lock()
	defer pc.lags.mu.Unlock()
	used := map[groupLagKey]bool{}
	runningEngines.Range(func(k, _ any) bool {
		e := k.(*Engine)
		ts, producer := e.lagTargets(pc.m)
		for _, t := range ts {
			up := 0.0
			if t.up {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(pc.up, prometheus.GaugeValue, up, t.stream)
			if t.group == "" || producer == nil {
				continue
			}
			key := groupLagKey{e: e, group: t.group, topics: strings.Join(t.topics, ",")}
			if t.pattern != nil {
				key.topics = t.pattern.String()
			}
			used[key] = true
			rd := pc.lags.readings[key]
			if rd == nil || time.Since(rd.at) > groupLagMaxAge {
				rows, err := readGroupLag(producer, t)
				if err != nil {
					e.log.Debug("reading the group's lag for metrics", "stream", t.stream, "group", t.group, "err", err)
				} else {
					rd = &groupLagReading{at: time.Now(), rows: rows}
					pc.lags.readings[key] = rd
				}
			}
			if rd == nil {
				continue
			}
			for _, p := range rd.rows {
				lv := []string{t.stream, t.group, p.topic, strconv.Itoa(int(p.partition))}
				if p.committed >= 0 {
					ch <- prometheus.MustNewConstMetric(pc.committed, prometheus.GaugeValue, float64(p.committed), lv...)
				}
				ch <- prometheus.MustNewConstMetric(pc.lag, prometheus.GaugeValue, float64(p.lag), lv...)
			}
		}
		return true
	})
	for k := range pc.lags.readings {
		if !used[k] {
			delete(pc.lags.readings, k)
		}
	}
}

// readGroupLag reads a group's committed offsets, and the start and end
// offsets of the stream's topics: three requests. A partition without a
// commit lags by every record in it.
func readGroupLag(cl *kgo.Client, t lagTarget) ([]partitionLag, error) {
	ctx, cancel := context.WithTimeout(context.Background(), groupLagTimeout)
	defer cancel()
	adm := kadm.NewClient(cl)
	committed, err := adm.FetchOffsets(ctx, t.group)
	if err != nil {
		return nil, err
	}
	topics := slices.Clone(t.topics)
	if t.pattern != nil {
		for topic := range committed {
			if t.pattern.MatchString(topic) {
				topics = append(topics, topic)
			}
		}
	}
	if len(topics) == 0 {
		return nil, nil
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, err
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, err
	}
	var rows []partitionLag
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset < 0 {
			return
		}
		row := partitionLag{topic: o.Topic, partition: o.Partition, committed: -1}
		if c, ok := committed.Lookup(o.Topic, o.Partition); ok && c.Err == nil && c.At >= 0 {
			row.committed = c.At
			row.lag = max(o.Offset-c.At, 0)
		} else if s, ok := starts.Lookup(o.Topic, o.Partition); ok && s.Err == nil {
			row.lag = max(o.Offset-s.Offset, 0)
		}
		rows = append(rows, row)
	})
	return rows, nil
}
