package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gokstreams/kstreams/kstreamtest"
)

// The harness runs every client run, and the broker, in a child process: the
// same executable started again with one of these environment variables set.
// An environment variable rather than a flag, so that a test binary can be
// a child too (see MaybeChild).
const (
	envRole       = "BENCHCOMPARE_ROLE" // "client" or "broker"
	envSpec       = "BENCHCOMPARE_SPEC" // JSON spec of a client run
	envNumBrokers = "BENCHCOMPARE_NUM_BROKERS"
	resultPrefix  = "BENCHCOMPARE_RESULT "
	brokersPrefix = "BROKERS "
)

// spec is what a client child is asked to do.
type spec struct {
	Scenario   string   `json:"scenario"`
	Client     string   `json:"client"`
	Brokers    []string `json:"brokers"`
	Topic      string   `json:"topic"`
	OutTopic   string   `json:"out_topic,omitempty"` // transform: the output topic
	Group      string   `json:"group,omitempty"`
	Records    int      `json:"records"`
	Size       int      `json:"size"`
	Partitions int      `json:"partitions"`
	Batch      int      `json:"batch"`
	EndOffsets []int64  `json:"end_offsets,omitempty"` // consume: per partition
	// NotIdempotent turns off franz-go's (and so kstream's) idempotent
	// writes, which kafka-go lacks and sarama leaves off by default.
	NotIdempotent bool   `json:"not_idempotent,omitempty"`
	Timeout       int64  `json:"timeout_ns"`
	ProfileName   string `json:"profile_name,omitempty"` // file stem of its profiles (envProfile)
	// Fetch sizes of the kstream consumers, when not their defaults.
	FetchMaxBytes          int32 `json:"fetch_max_bytes,omitempty"`
	FetchMaxPartitionBytes int32 `json:"fetch_max_partition_bytes,omitempty"`
	// EngineLinger, if positive, is the kstream engines' kgo.ProducerLinger.
	EngineLinger int64 `json:"engine_linger_ns,omitempty"`
}

// Result is what one client run measured. The child fills everything but
// BrokerCPUNS, which the parent measures from outside.
type Result struct {
	Records    int64  `json:"records"` // consumed, or acknowledged
	Bytes      int64  `json:"bytes"`   // value bytes
	WallNS     int64  `json:"wall_ns"`
	SteadyNS   int64  `json:"steady_ns"` // first record to last (consume)
	CPUNS      int64  `json:"cpu_ns"`
	Mallocs    uint64 `json:"mallocs"`
	AllocBytes uint64 `json:"alloc_bytes"`
	GCs        uint32 `json:"gcs"`
	MaxRSSKB   int64  `json:"max_rss_kb"`
	// PeakHeapKB is the most the Go heap held (allocated objects, garbage
	// not yet swept included), sampled every heapSampleEvery over the
	// window, and at its end.
	PeakHeapKB int64 `json:"peak_heap_kb"`
	// External: the client ran in a process of its own (kcat); CPUNS and
	// MaxRSSKB are that process's, and there are no Go allocations.
	External bool   `json:"external,omitempty"`
	Err      string `json:"err,omitempty"`

	BrokerCPUNS int64 `json:"broker_cpu_ns"` // the broker process, whole child lifetime; -1 unknown
	ChildNS     int64 `json:"child_ns"`      // the child process, start to exit
}

// MaybeChild runs the child role this process was started for, if any, and
// exits. It returns only in a process that is not a child. Call it first in
// main, and in TestMain of a test that runs the harness.
func MaybeChild() {
	switch os.Getenv(envRole) {
	case "":
		return
	case "client":
		os.Exit(clientMain())
	case "broker":
		n, _ := strconv.Atoi(os.Getenv(envNumBrokers))
		if err := ServeBroker(max(n, 1), os.Stdout, stdinClosed()); err != nil {
			fmt.Fprintln(os.Stderr, "benchcompare broker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "benchcompare: unknown %s %q\n", envRole, os.Getenv(envRole))
		os.Exit(2)
	}
}

// stdinClosed is closed when standard input ends (the parent closed its end,
// or died) or on SIGINT/SIGTERM.
func stdinClosed() <-chan struct{} {
	ch := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(ch)
	}()
	out := make(chan struct{})
	go func() {
		select {
		case <-ch:
		case <-sig:
		}
		close(out)
	}()
	return out
}

// ServeBroker starts an in-process cluster of n brokers with
// kstreamtest.Start, writes "BROKERS host:port,..." on w, and serves until
// stop is closed. KAFKA_BROKERS is ignored: the point is to start one.
func ServeBroker(n int, w io.Writer, stop <-chan struct{}) error {
	os.Unsetenv("KAFKA_BROKERS")
	c, err := kstreamtest.Start(kstreamtest.NumBrokers(n))
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := fmt.Fprintf(w, "%s%s\n", brokersPrefix, strings.Join(c.Brokers(), ",")); err != nil {
		return err
	}
	<-stop
	return nil
}

func clientMain() int {
	var sp spec
	if err := json.Unmarshal([]byte(os.Getenv(envSpec)), &sp); err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare child: bad spec:", err)
		return 2
	}
	res := runClient(sp)
	b, _ := json.Marshal(res)
	fmt.Printf("%s%s\n", resultPrefix, b)
	return 0
}

// runClient runs one client in this process and measures it.
func runClient(sp spec) Result {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(sp.Timeout))
	defer cancel()
	m := newMeter()
	var res Result
	var err error
	switch {
	case isTransform(sp.Scenario):
		res, err = runTransform(ctx, sp, m)
	case isConsume(sp.Scenario):
		cs := consumers
		switch sp.Scenario {
		case scenarioShare:
			cs = shareConsumers
		case scenarioShareScale:
			cs = shareScaleConsumers
		}
		c, ok := cs[sp.Client]
		if !ok {
			return Result{Err: fmt.Sprintf("unknown consumer %q", sp.Client)}
		}
		t := newTally(sp.Partitions, int64(sp.Records), m)
		err = c.run(ctx, sp, m, t)
		res.Records = t.total.Load()
		switch {
		case err != nil:
		case sp.Scenario == scenarioShare || sp.Scenario == scenarioShareScale:
			err = t.checkShare(sp)
		default:
			err = t.check(sp)
		}
		for i := range t.parts {
			res.Bytes += t.parts[i].bytes
		}
	default:
		p, ok := producers[sp.Scenario][sp.Client]
		if !ok {
			return Result{Err: fmt.Sprintf("unknown producer %q in %q", sp.Client, sp.Scenario)}
		}
		values := newValues(sp.Records, sp.Size)
		var acked int64
		acked, err = p.run(ctx, sp, m, values)
		res.Records = acked
		res.Bytes = acked * int64(sp.Size)
		if err == nil && acked != int64(sp.Records) {
			err = fmt.Errorf("%d of %d records acknowledged", acked, sp.Records)
		}
	}
	if err == nil && !m.Stopped() {
		err = errors.New("the run ended without its last record")
	}
	m.fill(&res)
	res.MaxRSSKB = maxRSSKB()
	if m.ext != nil {
		res.MaxRSSKB = m.ext.maxRSSKB
	}
	if err != nil {
		res.Err = err.Error()
	}
	return res
}

// check verifies that exactly the topic's records were consumed, each once.
func (t *tally) check(sp spec) error {
	if n := t.total.Load(); n != int64(sp.Records) {
		return fmt.Errorf("consumed %d records, want %d", n, sp.Records)
	}
	for p := range t.parts {
		pt := &t.parts[p]
		var end int64
		if p < len(sp.EndOffsets) {
			end = sp.EndOffsets[p]
		}
		if pt.bad != 0 || pt.count != end || pt.next != end {
			return fmt.Errorf("partition %d: %d records up to offset %d, %d out of sequence; want offsets 0..%d once each",
				p, pt.count, pt.next, pt.bad, end-1)
		}
		if pt.bytes != pt.count*int64(sp.Size) {
			return fmt.Errorf("partition %d: %d value bytes in %d records of %d bytes", p, pt.bytes, pt.count, sp.Size)
		}
	}
	return nil
}

// values are the record values a producer sends: slices of one block of
// random bytes (the block is made before the measured window, so producing
// them allocates nothing but what the client does). They are random so that
// no compression would pay off; compression is off everywhere anyway.
type values struct {
	block []byte
	size  int
}

const valueBlock = 4 << 20

func newValues(n, size int) values {
	bl := max(valueBlock, 2*size)
	b := make([]byte, bl)
	fillRandom(b, uint64(size))
	return values{block: b, size: size}
}

func (v values) at(i int) []byte {
	span := len(v.block) - v.size
	off := (i * v.size) % span
	return v.block[off : off+v.size : off+v.size]
}

// fillRandom fills b with a cheap deterministic pseudo-random sequence
// (xorshift), seeded by seed.
func fillRandom(b []byte, seed uint64) {
	x := seed*0x9E3779B97F4A7C15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x >> 24)
	}
}

// runChild runs one client run in a child process and returns its result.
// brokerPID, if positive, is the broker process whose CPU time the run is
// charged with.
func runChild(ctx context.Context, exe string, sp spec, brokerPID int) Result {
	js, err := json.Marshal(sp)
	if err != nil {
		return Result{Err: err.Error(), BrokerCPUNS: -1}
	}
	cctx, cancel := context.WithTimeout(ctx, time.Duration(sp.Timeout)+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, exe)
	cmd.Env = append(childEnv(), envRole+"=client", envSpec+"="+string(js), envProfileName+"="+sp.ProfileName)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &tailBuffer{buf: &stderr, max: 4096}
	cmd.WaitDelay = 5 * time.Second

	b0 := procCPU(brokerPID)
	runErr := cmd.Run()
	b1 := procCPU(brokerPID)

	var res Result
	found := false
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), resultPrefix); ok {
			if err := json.Unmarshal([]byte(line), &res); err == nil {
				found = true
			}
		}
	}
	switch {
	case !found && runErr != nil:
		res.Err = fmt.Sprintf("child: %v; stderr: %s", runErr, strings.TrimSpace(stderr.String()))
	case !found:
		res.Err = fmt.Sprintf("child printed no result; stderr: %s", strings.TrimSpace(stderr.String()))
	case runErr != nil && res.Err == "":
		res.Err = fmt.Sprintf("child: %v", runErr)
	}
	res.BrokerCPUNS = -1
	if b0 >= 0 && b1 >= 0 {
		res.BrokerCPUNS = b1 - b0
	}
	return res
}

// childEnv is the environment of a child: this process's, without the
// variables that say what a child is. A race-enabled binary (the harness's
// test under -race) sleeps a second when it exits unless GORACE says
// otherwise; children do not need that.
func childEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, envRole+"=") && !strings.HasPrefix(e, envSpec+"=") && !strings.HasPrefix(e, envNumBrokers+"=") && !strings.HasPrefix(e, envProfileName+"=") {
			env = append(env, e)
		}
	}
	if _, ok := os.LookupEnv("GORACE"); !ok {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	return env
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf *bytes.Buffer
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

// procCPU returns the user+sys CPU time of process pid from /proc, or -1.
// The kernel counts it in clock ticks (USER_HZ, 100 on Linux), so it has
// 10ms resolution.
func procCPU(pid int) int64 {
	if pid <= 0 {
		return -1
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	// After the name: state is field 3, utime field 14, stime field 15.
	if len(f) < 13 {
		return -1
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	const userHZ = 100
	return (ut + st) * int64(time.Second) / userHZ
}

// brokerProc is a broker child.
type brokerProc struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	brokers []string
	stderr  *bytes.Buffer
}

// startBroker starts a broker child and waits for its addresses.
func startBroker(exe string, n int) (*brokerProc, error) {
	cmd := exec.Command(exe)
	cmd.Env = append(childEnv(), envRole+"=broker", envNumBrokers+"="+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &tailBuffer{buf: &stderr, max: 4096}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	bp := &brokerProc{cmd: cmd, stdin: stdin, stderr: &stderr}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if l, ok := strings.CutPrefix(sc.Text(), brokersPrefix); ok {
				lines <- l
				break
			}
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l, ok := <-lines:
		if !ok {
			bp.Close()
			return nil, fmt.Errorf("broker child exited without addresses: %s", strings.TrimSpace(stderr.String()))
		}
		bp.brokers = strings.Split(l, ",")
	case <-time.After(30 * time.Second):
		bp.Close()
		return nil, errors.New("broker child gave no address in 30s")
	}
	return bp, nil
}

func (b *brokerProc) PID() int { return b.cmd.Process.Pid }

// Close stops the broker child: closing its stdin asks it to exit.
func (b *brokerProc) Close() {
	b.stdin.Close()
	done := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-done
	}
}
