package chaos

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/kstreamtest"
)

// startBroker runs the kfake broker as a process of its own and returns its
// address. The broker stops when its standard input closes: at the end of
// the test, or when the test process dies.
func startBroker(t testing.TB, bin string) string {
	t.Helper()
	cmd := exec.Command(bin)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("broker did not stop within 10s of its stdin closing")
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "BROKERS "); ok {
				lines <- addr
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case addr := <-lines:
		return addr
	case <-time.After(30 * time.Second):
		t.Fatalf("broker did not print its address within 30s; stderr:\n%s", stderr.String())
		return ""
	}
}

// externalCluster starts a broker process and returns the kit's view of it
// (kstreamtest on the cluster named by KAFKA_BROKERS), with topic created.
func externalCluster(t *testing.T, brokerBin, topic string, partitions int32) (*kstreamtest.Cluster, string) {
	t.Helper()
	addr := startBroker(t, brokerBin)
	t.Setenv("KAFKA_BROKERS", addr)
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, partitions))
	return c, addr
}

// memberProc is one member process (cmd/member).
type memberProc struct {
	id   int
	mode string
	out  string // processed records, "partition offset" per line
	// rejected: share mode, the records rejected, "partition offset" per
	// line
	rejected string
	logPath  string
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	logFile  *os.File
	started  time.Time
	done     chan struct{} // closed once the process has exited and its output is read

	mu       sync.Mutex
	events   []string
	exitErr  error
	exitAt   time.Time
	termAt   time.Time // SIGTERM sent
	killedAt time.Time // SIGKILL sent
	stopped  time.Duration
	lost     int // LOST events
}

type memberFlags struct {
	brokers, topic, group, mode string
	delay                       time.Duration
	// The emit modes (emit_churn_test.go).
	emitTo, instanceID string
	txnTimeout         time.Duration
}

func startMember(t testing.TB, bin, dir string, id int, f memberFlags) *memberProc {
	t.Helper()
	m := &memberProc{
		id:      id,
		mode:    f.mode,
		out:     filepath.Join(dir, fmt.Sprintf("member-%02d.records", id)),
		logPath: filepath.Join(dir, fmt.Sprintf("member-%02d.log", id)),
		done:    make(chan struct{}),
	}
	args := []string{"-brokers", f.brokers, "-topic", f.topic, "-group", f.group, "-mode", f.mode,
		"-out", m.out, "-delay", f.delay.String(), "-client-id", m.clientID()}
	if f.mode == "share" || f.mode == "share-franz" {
		m.rejected = filepath.Join(dir, fmt.Sprintf("member-%02d.rejected", id))
		args = append(args, "-rejected", m.rejected)
	}
	if f.emitTo != "" {
		args = append(args, "-emit-to", f.emitTo, "-member-id", strconv.Itoa(id),
			"-instance-id", f.instanceID, "-txn-timeout", f.txnTimeout.String())
	}
	if os.Getenv("CHAOS_VERBOSE") == "1" {
		args = append(args, "-v")
	}
	m.cmd = exec.Command(bin, args...)
	var err error
	if m.stdin, err = m.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if m.logFile, err = os.Create(m.logPath); err != nil {
		t.Fatal(err)
	}
	m.cmd.Stderr = m.logFile
	m.started = time.Now()
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start member %d: %v", id, err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			m.event(sc.Text())
		}
	}()
	go func() {
		<-read
		err := m.cmd.Wait()
		m.logFile.Close()
		m.mu.Lock()
		m.exitErr, m.exitAt = err, time.Now()
		m.mu.Unlock()
		close(m.done)
	}()
	return m
}

func (m *memberProc) event(line string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, fmt.Sprintf("%s %s", time.Now().Format("15:04:05.000"), line))
	if d, ok := strings.CutPrefix(line, "STOPPED "); ok {
		m.stopped, _ = time.ParseDuration(d)
	}
	if strings.HasPrefix(line, "LOST ") {
		m.lost++
	}
}

// clientID is the member's Kafka client ID, as the coordinator shows it.
func (m *memberProc) clientID() string { return fmt.Sprintf("member-%d", m.id) }

func (m *memberProc) String() string {
	return fmt.Sprintf("member %d (%s, pid %d)", m.id, m.mode, m.cmd.Process.Pid)
}

// terminate sends SIGTERM: the member stops gracefully.
func (m *memberProc) terminate() {
	m.mu.Lock()
	m.termAt = time.Now()
	m.mu.Unlock()
	m.cmd.Process.Signal(syscall.SIGTERM)
}

// kill sends SIGKILL and waits for the process to be gone.
func (m *memberProc) kill() {
	m.mu.Lock()
	m.killedAt = time.Now()
	m.mu.Unlock()
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.done
}

// waitStopped waits for a terminated member to exit, at most timeout, and
// returns how long it took from SIGTERM. A member that does not exit in time
// is made to dump its goroutines (SIGQUIT) and killed; err says so.
func (m *memberProc) waitStopped(timeout time.Duration) (time.Duration, error) {
	select {
	case <-m.done:
	case <-time.After(timeout):
		m.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
			m.cmd.Process.Kill()
			<-m.done
		}
		return 0, fmt.Errorf("%v did not stop within %v of SIGTERM (goroutine dump in %s):\n%s", m, timeout, m.logPath, tail(m.logPath, 60))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	took := m.exitAt.Sub(m.termAt)
	if m.exitErr != nil {
		return took, fmt.Errorf("%v exited with %v after SIGTERM; log:\n%s", m, m.exitErr, tail(m.logPath, 40))
	}
	return took, nil
}

func (m *memberProc) eventLog() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.Join(m.events, "\n")
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// pos is a record's position in the topic.
type pos struct {
	p int32
	o int64
}

// readProcessed reads a member's file. A last line without its newline
// (a SIGKILL in the middle of a write) is not a processed record.
func readProcessed(path string) (recs []pos, partial int, err error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return recs, 1, nil
		}
		line := b[:i]
		b = b[i+1:]
		ps, os_, ok := bytes.Cut(line, []byte{' '})
		if !ok {
			return nil, 0, fmt.Errorf("%s: bad line %q", path, line)
		}
		p, err1 := strconv.ParseInt(string(ps), 10, 32)
		o, err2 := strconv.ParseInt(string(os_), 10, 64)
		if err1 != nil || err2 != nil {
			return nil, 0, fmt.Errorf("%s: bad line %q", path, line)
		}
		recs = append(recs, pos{int32(p), o})
	}
	return recs, 0, nil
}

// producer writes to every partition of a topic continuously, one record
// per partition per tick, with ProduceSync, and remembers every offset the
// broker acknowledged.
type producer struct {
	cl       *kgo.Client
	topic    string
	parts    int32
	interval time.Duration
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once

	mu    sync.Mutex
	acked map[int32][]int64
	n     int64
	errs  []error
}

func startProducer(t testing.TB, brokers []string, topic string, parts int32, interval time.Duration) *producer {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		kgo.MetadataMinAge(100*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	p := &producer{cl: cl, topic: topic, parts: parts, interval: interval,
		stop: make(chan struct{}), done: make(chan struct{}), acked: make(map[int32][]int64)}
	go p.run()
	t.Cleanup(p.close)
	return p
}

func (p *producer) run() {
	defer close(p.done)
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	seq := 0
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		recs := make([]*kgo.Record, p.parts)
		for i := range recs {
			seq++
			recs[i] = &kgo.Record{Topic: p.topic, Partition: int32(i), Value: []byte(strconv.Itoa(seq))}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res := p.cl.ProduceSync(ctx, recs...)
		cancel()
		p.mu.Lock()
		for _, r := range res {
			if r.Err != nil {
				p.errs = append(p.errs, r.Err)
				continue
			}
			p.acked[r.Record.Partition] = append(p.acked[r.Record.Partition], r.Record.Offset)
			p.n++
		}
		p.mu.Unlock()
	}
}

// finish stops producing and returns what was acknowledged.
func (p *producer) finish() (acked map[int32][]int64, n int64, errs []error) {
	p.close()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked, p.n, p.errs
}

func (p *producer) count() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *producer) close() {
	p.once.Do(func() {
		close(p.stop)
		<-p.done
		p.cl.Close()
	})
}

// workDir returns a directory for the members' files and logs. It is removed
// when the test passes and kept, and named in the log, when it fails.
func workDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "chaos-"+strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("CHAOS_KEEP") != "" {
			t.Logf("member files and logs kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// watchGroup logs every change of the group's state, as the coordinator
// describes it, until the returned function is called.
func watchGroup(t testing.TB, c *kstreamtest.Cluster, group string, began time.Time) func() {
	return watchGroupEvery(t, c, group, began, 200*time.Millisecond, t.Logf)
}

// recordGroup is watchGroup for the in-process cluster, where describing
// the group costs no request: it looks every 2ms and logs what it saw only
// if the test fails.
func recordGroup(t testing.TB, c *kstreamtest.Cluster, group string, began time.Time) func() {
	var mu sync.Mutex
	var lines []string
	stop := watchGroupEvery(t, c, group, began, 2*time.Millisecond, func(format string, args ...any) {
		mu.Lock()
		lines = append(lines, fmt.Sprintf(format, args...))
		mu.Unlock()
	})
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			mu.Lock()
			t.Logf("group %q as its coordinator saw it:\n%s", group, strings.Join(lines, "\n"))
			mu.Unlock()
		}
	})
	return stop
}

func watchGroupEvery(t testing.TB, c *kstreamtest.Cluster, group string, began time.Time, every time.Duration, logf func(string, ...any)) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := ""
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			g, err := c.DescribeGroup(ctx, group)
			cancel()
			if err == nil {
				if s := g.String(); s != last {
					logf("%7.3fs group: %s", time.Since(began).Seconds(), s)
					last = s
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(stop); <-done }) }
}
