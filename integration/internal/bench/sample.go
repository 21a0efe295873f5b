package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"sync"
	"time"
)

// heapSampleEvery is how often the heap is sampled for a run's peak.
const heapSampleEvery = 5 * time.Millisecond

// heapSampler keeps the most the Go heap held while it runs: the bytes of
// heap objects (live and not yet swept), from runtime/metrics, which reads
// without stopping the world.
type heapSampler struct {
	mu   sync.Mutex
	max  int64
	done chan struct{}
	wg   sync.WaitGroup
}

const heapMetric = "/memory/classes/heap/objects:bytes"

func readHeap(s []metrics.Sample) int64 {
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

func (h *heapSampler) start() {
	h.done = make(chan struct{})
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		s := []metrics.Sample{{Name: heapMetric}}
		t := time.NewTicker(heapSampleEvery)
		defer t.Stop()
		for {
			v := readHeap(s)
			h.mu.Lock()
			h.max = max(h.max, v)
			h.mu.Unlock()
			select {
			case <-t.C:
			case <-h.done:
				return
			}
		}
	}()
}

func (h *heapSampler) stop() {
	if h.done == nil {
		return
	}
	close(h.done)
	h.wg.Wait()
	s := []metrics.Sample{{Name: heapMetric}}
	v := readHeap(s)
	h.mu.Lock()
	h.max = max(h.max, v)
	h.mu.Unlock()
}

func (h *heapSampler) peak() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.max
}

// envProfile names a directory: each client child then writes a CPU
// profile of its measured window, and an allocation profile at its end,
// there (benchcompare -profile).
const envProfile = "BENCHCOMPARE_PROFILE"

// profiler writes the profiles envProfile asks for. The file names come
// from envProfileName, set by the parent for each run.
type profiler struct {
	f *os.File
}

const envProfileName = "BENCHCOMPARE_PROFILE_NAME"

func (p *profiler) start() {
	dir := os.Getenv(envProfile)
	if dir == "" {
		return
	}
	f, err := os.Create(filepath.Join(dir, os.Getenv(envProfileName)+".cpu.pprof"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare child: cpu profile:", err)
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare child: cpu profile:", err)
		f.Close()
		return
	}
	p.f = f
}

func (p *profiler) stop() {
	if p.f == nil {
		return
	}
	pprof.StopCPUProfile()
	p.f.Close()
	p.f = nil
	name := filepath.Join(os.Getenv(envProfile), os.Getenv(envProfileName)+".allocs.pprof")
	if f, err := os.Create(name); err == nil {
		_ = pprof.Lookup("allocs").WriteTo(f, 0)
		f.Close()
	}
}

// profileName is the file name stem of a run's profiles.
func profileName(sp spec, round int) string {
	return strings.NewReplacer("/", "-", " ", "-").Replace(fmt.Sprintf("%s-%dB-%s-r%d", sp.Scenario, sp.Size, sp.Client, round))
}
