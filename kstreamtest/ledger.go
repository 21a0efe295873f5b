package kstreamtest

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/kstream"
)

// Ledger records which records were processed, by topic, partition and
// offset, and how many times, so that a test can check at its end that no
// record was lost (AssertAtLeastOnce) and none was processed twice
// (AssertNoDuplicates), across every member of a group, through crashes and
// rebalances.
//
// The zero Ledger is ready to use. It is safe for concurrent use: handlers
// on many goroutines, and members, may share one.
type Ledger struct {
	mu     sync.Mutex
	counts map[position]int
	total  int
}

type position struct {
	topic     string
	partition int32
	offset    int64
}

func (p position) String() string { return fmt.Sprintf("%s/%d@%d", p.topic, p.partition, p.offset) }

func comparePositions(a, b position) int {
	return cmp.Or(cmp.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition), cmp.Compare(a.offset, b.offset))
}

// Add records that the record at offset of topic's partition was processed.
func (l *Ledger) Add(topic string, partition int32, offset int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil {
		l.counts = make(map[position]int)
	}
	l.counts[position{topic, partition, offset}]++
	l.total++
}

// AddRecord records that r was processed.
func (l *Ledger) AddRecord(r *kgo.Record) { l.Add(r.Topic, r.Partition, r.Offset) }

// Track returns a middleware that records each record in l once the
// handlers after it return nil, that is, once the engine counts it as
// processed. Put it first in the chain:
//
//	s.Handle(handle, kstreamtest.Track[Order](&ledger), kstream.Retry[Order](3, time.Second))
//
// With HandleBatches it records every record of a batch the handlers after
// it returned nil for.
func Track[T any](l *Ledger) kstream.Middleware[T] {
	return func(next kstream.Handler[T]) kstream.Handler[T] {
		return func(ctx context.Context, rec kstream.Record[T]) error {
			if err := next(ctx, rec); err != nil {
				return err
			}
			if batch := rec.Batch(); batch != nil {
				for _, r := range batch {
					l.Add(r.Topic, r.Partition, r.Offset)
				}
				return nil
			}
			l.Add(rec.Topic, rec.Partition, rec.Offset)
			return nil
		}
	}
}

// Count returns how many distinct records were processed.
func (l *Ledger) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.counts)
}

// Total returns how many times records were processed, repeats included.
func (l *Ledger) Total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Times returns how many times the record at offset of topic's partition was
// processed.
func (l *Ledger) Times(topic string, partition int32, offset int64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[position{topic, partition, offset}]
}

// Await waits until at least n distinct records were processed, and returns
// an error saying how many were if ctx is done first.
func (l *Ledger) Await(ctx context.Context, n int) error {
	for {
		if l.Count() >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kstreamtest: %d distinct record(s) processed, want %d (%v)", l.Count(), n, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Wait is Await for tests: it waits at most timeout and fails t with how many
// records were processed.
func (l *Ledger) Wait(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := l.Await(ctx, n); err != nil {
		t.Fatalf("after %v: %v", timeout, err)
	}
}

// maxListed bounds how many offsets a failure message lists.
const maxListed = 20

// CheckAtLeastOnce returns an error listing every record that was produced
// but never processed: for each topic and partition in produced (end
// offsets, as Cluster.Produced returns them), every offset from 0 up to the
// end offset must be in the ledger. Records of other topics and partitions
// are not looked at. On a topic written by transactions, the offsets of the
// transaction markers hold no record, so compare with ReadRecords instead.
func (l *Ledger) CheckAtLeastOnce(produced Offsets) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var missing []string
	n := 0
	for _, t := range slices.Sorted(maps.Keys(produced)) {
		for _, p := range slices.Sorted(maps.Keys(produced[t])) {
			end := produced[t][p]
			var from int64 = -1 // the start of the current run of missing offsets
			flush := func(to int64) {
				if from < 0 {
					return
				}
				n += int(to - from)
				if len(missing) < maxListed {
					if to-from == 1 {
						missing = append(missing, fmt.Sprintf("%s/%d@%d", t, p, from))
					} else {
						missing = append(missing, fmt.Sprintf("%s/%d@%d-%d", t, p, from, to-1))
					}
				}
				from = -1
			}
			for o := int64(0); o < end; o++ {
				if l.counts[position{t, p, o}] == 0 {
					if from < 0 {
						from = o
					}
					continue
				}
				flush(o)
			}
			flush(end)
		}
	}
	if n == 0 {
		return nil
	}
	more := ""
	if len(missing) == maxListed {
		more = ", ..."
	}
	return fmt.Errorf("kstreamtest: %d produced record(s) never processed (produced: %v): %s%s", n, produced, strings.Join(missing, ", "), more)
}

// CheckNoDuplicates returns an error listing every record that was processed
// more than once, with how many times.
func (l *Ledger) CheckNoDuplicates() error {
	l.mu.Lock()
	var dups []position
	for p, n := range l.counts {
		if n > 1 {
			dups = append(dups, p)
		}
	}
	slices.SortFunc(dups, comparePositions)
	var listed []string
	for _, p := range dups[:min(len(dups), maxListed)] {
		listed = append(listed, fmt.Sprintf("%v (%d times)", p, l.counts[p]))
	}
	l.mu.Unlock()
	if len(dups) == 0 {
		return nil
	}
	more := ""
	if len(dups) > maxListed {
		more = fmt.Sprintf(", and %d more", len(dups)-maxListed)
	}
	return fmt.Errorf("kstreamtest: %d record(s) processed more than once: %s%s", len(dups), strings.Join(listed, ", "), more)
}

// AssertAtLeastOnce reports, with t.Errorf, every produced record that was
// never processed; see CheckAtLeastOnce. The test goes on, so that the other
// checks report too.
func (l *Ledger) AssertAtLeastOnce(t testing.TB, produced Offsets) {
	t.Helper()
	if err := l.CheckAtLeastOnce(produced); err != nil {
		t.Errorf("%v", err)
	}
}

// AssertNoDuplicates reports, with t.Errorf, every record that was processed
// more than once; see CheckNoDuplicates.
func (l *Ledger) AssertNoDuplicates(t testing.TB) {
	t.Helper()
	if err := l.CheckNoDuplicates(); err != nil {
		t.Errorf("%v", err)
	}
}
