package kstreamtest

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"
)

// CommitMonitor watches a group's committed offsets during a test, so that
// the test can check at its end that they never went backwards: a commit
// that moves an offset back makes the group process records again after its
// next restart or rebalance, and usually means a member committed for a
// partition it no longer owned.
//
// It polls: on the in-process cluster every 5ms and without a request (it
// reads kfake's group state), on a real cluster every 50ms with OffsetFetch.
// A regression undone between two polls is not seen. Its methods are safe
// for concurrent use.
type CommitMonitor struct {
	group string
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once

	mu          sync.Mutex
	last        Offsets
	polls       int
	regressions []string
	lastErr     error
}

// MonitorCommits starts a CommitMonitor of group. It runs until Stop or the
// end of the test.
func (c *Cluster) MonitorCommits(t testing.TB, group string) *CommitMonitor {
	t.Helper()
	m := &CommitMonitor{group: group, stop: make(chan struct{}), done: make(chan struct{}), last: make(Offsets)}
	interval := 5 * time.Millisecond
	if c.fake == nil {
		interval = 50 * time.Millisecond
	}
	go m.run(c, interval)
	t.Cleanup(m.Stop)
	return m
}

func (m *CommitMonitor) run(c *Cluster, interval time.Duration) {
	defer close(m.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-m.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		got, err := c.committed(ctx, m.group)
		m.observe(got, err)
		select {
		case <-m.stop:
			return
		case <-time.After(interval):
		}
	}
}

func (m *CommitMonitor) observe(got Offsets, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.lastErr = err
		return
	}
	m.polls++
	for t, ps := range got {
		for p, off := range ps {
			prev, ok := m.last[t][p]
			if ok && off < prev {
				m.regressions = append(m.regressions, fmt.Sprintf("%s/%d went from %d back to %d", t, p, prev, off))
			}
			m.last.set(t, p, off)
		}
	}
}

// Stop stops polling. It is idempotent; the checks still work after it.
func (m *CommitMonitor) Stop() {
	m.once.Do(func() { close(m.stop) })
	<-m.done
}

// Seen returns the latest committed offsets the monitor has seen.
func (m *CommitMonitor) Seen() Offsets {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(Offsets, len(m.last))
	for t, ps := range m.last {
		out[t] = maps.Clone(ps)
	}
	return out
}

// CheckMonotonic returns an error listing every time a committed offset was
// seen to go backwards, or nil if none was.
func (m *CommitMonitor) CheckMonotonic() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.regressions) == 0 {
		return nil
	}
	return fmt.Errorf("kstreamtest: committed offsets of group %q went backwards %d time(s): %s",
		m.group, len(m.regressions), strings.Join(m.regressions, "; "))
}

// AssertMonotonic reports, with t.Errorf, every time a committed offset was
// seen to go backwards. It also fails if the monitor never managed to read
// the group's commits, since then it proved nothing.
func (m *CommitMonitor) AssertMonotonic(t testing.TB) {
	t.Helper()
	if err := m.CheckMonotonic(); err != nil {
		t.Errorf("%v", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.polls == 0 {
		t.Errorf("kstreamtest: the commit monitor of group %q never read its commits (last error: %v)", m.group, m.lastErr)
	}
}
