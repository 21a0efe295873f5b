package bench

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// meter measures one client run inside its child process: wall time from
// just before the client is created to the last record (consumed or
// acknowledged), CPU time (user+sys of the whole child process, from
// getrusage) and heap allocations (runtime.MemStats) over the same window.
// The child holds nothing but the client, so these are the client's own.
type meter struct {
	start    time.Time
	first    atomic.Int64 // UnixNano of the first record, 0 before
	stopOnce sync.Once
	stopped  chan struct{}
	end      time.Time

	ru0, ru1 syscall.Rusage
	ms0, ms1 runtime.MemStats

	heap heapSampler
	prof profiler

	// ext is set by a client that runs in a process of its own (kcat):
	// its CPU time and peak RSS are that process's, and it has no Go heap.
	ext *extUsage
}

// extUsage is what a client run in another process (kcat) used.
type extUsage struct {
	cpuNS    int64
	maxRSSKB int64
}

func newMeter() *meter { return &meter{stopped: make(chan struct{})} }

// Start opens the window. The garbage of the child's setup is collected
// first, so that the run does not pay for it.
func (m *meter) Start() {
	runtime.GC()
	runtime.ReadMemStats(&m.ms0)
	m.prof.start()
	m.heap.start()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &m.ru0)
	m.start = time.Now()
}

// First notes the first record, once.
func (m *meter) First() {
	if m.first.Load() == 0 {
		m.first.CompareAndSwap(0, time.Now().UnixNano())
	}
}

// Stop closes the window, once, from whichever goroutine saw the last
// record.
func (m *meter) Stop() {
	m.stopOnce.Do(func() {
		m.end = time.Now()
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &m.ru1)
		runtime.ReadMemStats(&m.ms1)
		m.heap.stop()
		m.prof.stop()
		close(m.stopped)
	})
}

// Stopped reports whether Stop was called.
func (m *meter) Stopped() bool {
	select {
	case <-m.stopped:
		return true
	default:
		return false
	}
}

func (m *meter) fill(r *Result) {
	if !m.Stopped() {
		return
	}
	r.WallNS = m.end.Sub(m.start).Nanoseconds()
	if f := m.first.Load(); f != 0 {
		r.SteadyNS = m.end.UnixNano() - f
	}
	r.CPUNS = rusageCPU(&m.ru1) - rusageCPU(&m.ru0)
	r.Mallocs = m.ms1.Mallocs - m.ms0.Mallocs
	r.AllocBytes = m.ms1.TotalAlloc - m.ms0.TotalAlloc
	r.GCs = m.ms1.NumGC - m.ms0.NumGC
	r.PeakHeapKB = max(m.heap.peak(), int64(m.ms1.HeapAlloc)) / 1024
	if m.ext != nil {
		r.External = true
		r.CPUNS = m.ext.cpuNS
		r.Mallocs, r.AllocBytes, r.GCs, r.PeakHeapKB = 0, 0, 0, 0
	}
}

func rusageCPU(ru *syscall.Rusage) int64 {
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// maxRSSKB is the peak resident set size of this process so far, in KiB:
// VmHWM of /proc/self/status. Not getrusage's ru_maxrss: Go starts a child
// with vfork semantics, and Linux carries the high-water mark of the memory
// the child shared with its parent until exec into the child's ru_maxrss,
// so there it would report the parent's peak.
func maxRSSKB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}

// tally counts and checks the records a consumer gets: per partition,
// offsets must follow each other from 0 to the partition's end, with no gap
// and no repeat. It is safe for one goroutine per partition (sarama consumes
// each partition on its own goroutine); the total is atomic. The record that
// completes the count stops the meter and closes done.
type tally struct {
	parts []partTally
	total atomic.Int64
	want  int64
	m     *meter
	done  chan struct{}
}

type partTally struct {
	next  int64 // offset expected next
	count int64
	bytes int64
	bad   int64 // records out of sequence: repeats or gaps
	_     [32]byte
}

func newTally(partitions int, want int64, m *meter) *tally {
	return &tally{parts: make([]partTally, partitions), want: want, m: m, done: make(chan struct{})}
}

// add counts one record and reports whether it was the last one wanted.
func (t *tally) add(partition int32, offset int64, size int) bool {
	if int(partition) >= len(t.parts) || partition < 0 {
		t.total.Add(1)
		return false
	}
	p := &t.parts[partition]
	if offset != p.next {
		p.bad++
	}
	if offset+1 > p.next {
		p.next = offset + 1
	}
	p.count++
	p.bytes += int64(size)
	n := t.total.Add(1)
	if n == 1 {
		t.m.First()
	}
	if n == t.want {
		t.m.Stop()
		close(t.done)
		return true
	}
	return false
}
