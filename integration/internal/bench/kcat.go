package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// kcat (librdkafka) as a peer. The child that measures it starts kcat as a
// process of its own and charges the run with kcat's CPU time (from its exit
// status) and peak RSS (its VmHWM, read every rssSampleEvery while it
// runs: the high-water mark only grows, so the last reading is its peak up
// to a few milliseconds before exit). The consumer prints one line per
// record ("partition offset size"), which the child parses into the same
// tally as every other consumer's records; printing them is part of kcat's
// CPU time, parsing them is not. The producer reads one value per line from
// its standard input, written by the child (not counted); so the values
// are printable (letters), of the run's size, without the newline.

// kcatPath is the kcat executable: $KCAT, or kcat on PATH.
func kcatPath() (string, error) {
	if p := os.Getenv("KCAT"); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("kcat")
	if err != nil {
		return "", errors.New("kcat not found on PATH (apt-get install kcat, or set KCAT)")
	}
	return p, nil
}

// kcatAvailable reports whether the kcat clients can run.
func kcatAvailable() bool {
	_, err := kcatPath()
	return err == nil
}

const rssSampleEvery = 5 * time.Millisecond

// kcatRun is one kcat process being measured.
type kcatRun struct {
	cmd    *exec.Cmd
	stderr tailBuffer
	errBuf bytes.Buffer
	rssKB  int64
	mu     sync.Mutex
	done   chan struct{}
	wg     sync.WaitGroup
}

func newKcat(ctx context.Context, args ...string) (*kcatRun, error) {
	path, err := kcatPath()
	if err != nil {
		return nil, err
	}
	k := &kcatRun{done: make(chan struct{})}
	k.cmd = exec.CommandContext(ctx, path, args...)
	k.stderr = tailBuffer{buf: &k.errBuf, max: 4096}
	k.cmd.Stderr = &k.stderr
	k.cmd.WaitDelay = 5 * time.Second
	return k, nil
}

// start starts kcat and its RSS sampling.
func (k *kcatRun) start() error {
	if err := k.cmd.Start(); err != nil {
		return err
	}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		status := fmt.Sprintf("/proc/%d/status", k.cmd.Process.Pid)
		t := time.NewTicker(rssSampleEvery)
		defer t.Stop()
		for {
			if kb := vmHWM(status); kb > 0 {
				k.mu.Lock()
				k.rssKB = max(k.rssKB, kb)
				k.mu.Unlock()
			}
			select {
			case <-t.C:
			case <-k.done:
				return
			}
		}
	}()
	return nil
}

// wait waits for kcat to exit and fills m with what it used.
func (k *kcatRun) wait(m *meter) error {
	err := k.cmd.Wait()
	close(k.done)
	k.wg.Wait()
	if ps := k.cmd.ProcessState; ps != nil {
		u := &extUsage{cpuNS: (ps.UserTime() + ps.SystemTime()).Nanoseconds()}
		k.mu.Lock()
		u.maxRSSKB = k.rssKB
		k.mu.Unlock()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok && u.maxRSSKB == 0 {
			// Exited before the first reading: wait4's peak, which may
			// include this process's at the fork.
			u.maxRSSKB = ru.Maxrss
		}
		m.ext = u
	}
	if err != nil {
		return fmt.Errorf("kcat: %v: %s", err, strings.TrimSpace(k.errBuf.String()))
	}
	return nil
}

func vmHWM(path string) int64 {
	b, err := os.ReadFile(path)
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

// consumeKcat consumes with kcat: in a group (-G, the high-level
// KafkaConsumer, auto commit of consumed offsets every commitInterval), or
// without one (-C on every partition from the beginning). -c makes it exit
// after the run's records.
func consumeKcat(group bool) func(ctx context.Context, sp spec, m *meter, t *tally) error {
	return func(ctx context.Context, sp spec, m *meter, t *tally) error {
		args := []string{"-b", strings.Join(sp.Brokers, ","), "-q", "-f", "%p %o %S\n",
			"-c", strconv.Itoa(sp.Records), "-X", "auto.offset.reset=earliest"}
		if group {
			args = append(args, "-G", sp.Group, "-X", fmt.Sprintf("auto.commit.interval.ms=%d", commitInterval.Milliseconds()), sp.Topic)
		} else {
			args = append(args, "-C", "-t", sp.Topic, "-o", "beginning")
		}
		k, err := newKcat(ctx, args...)
		if err != nil {
			return err
		}
		out, err := k.cmd.StdoutPipe()
		if err != nil {
			return err
		}
		m.Start()
		if err := k.start(); err != nil {
			return err
		}
		perr := parseKcatLines(out, t)
		_, _ = io.Copy(io.Discard, out)
		if err := k.wait(m); err != nil {
			return err
		}
		return perr
	}
}

// parseKcatLines feeds the tally from kcat's "partition offset size" lines.
func parseKcatLines(r io.Reader, t *tally) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			return fmt.Errorf("kcat printed %q, want \"partition offset size\"", sc.Text())
		}
		p, err1 := strconv.ParseInt(f[0], 10, 32)
		o, err2 := strconv.ParseInt(f[1], 10, 64)
		n, err3 := strconv.Atoi(f[2])
		if err := errors.Join(err1, err2, err3); err != nil {
			return fmt.Errorf("kcat printed %q: %w", sc.Text(), err)
		}
		if t.add(int32(p), o, n) {
			return nil
		}
	}
	return sc.Err()
}

// produceKcat produces with kcat -P, one record per line of its standard
// input, unkeyed (librdkafka's default partitioner spreads them), acks=all,
// no compression, idempotent unless the run says not; kcat flushes and
// waits for every acknowledgement before it exits.
func produceKcat(ctx context.Context, sp spec, m *meter, v values) (int64, error) {
	idem := "true"
	if sp.NotIdempotent {
		idem = "false"
	}
	k, err := newKcat(ctx, "-P", "-b", strings.Join(sp.Brokers, ","), "-t", sp.Topic, "-q",
		"-X", "acks=all", "-X", "compression.codec=none", "-X", "enable.idempotence="+idem)
	if err != nil {
		return 0, err
	}
	in, err := k.cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	lines := printable(v)
	m.Start()
	if err := k.start(); err != nil {
		return 0, err
	}
	werr := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(in, 256<<10)
		for i := range sp.Records {
			w.Write(lines.at(i))
			if err := w.WriteByte('\n'); err != nil {
				werr <- err
				in.Close()
				return
			}
		}
		err := w.Flush()
		in.Close()
		werr <- err
	}()
	err = k.wait(m)
	if e := <-werr; err == nil && e != nil {
		err = fmt.Errorf("writing to kcat: %w", e)
	}
	if err != nil {
		return 0, err
	}
	if strings.Contains(k.errBuf.String(), "failed") {
		return 0, fmt.Errorf("kcat: %s", strings.TrimSpace(k.errBuf.String()))
	}
	m.Stop()
	// kcat exited 0 after flushing: every record was acknowledged (the
	// parent checks the topic's end offsets).
	return int64(sp.Records), nil
}

// printable returns values of the same size made of letters only, for
// kcat's newline-delimited input.
func printable(v values) values {
	b := make([]byte, len(v.block))
	for i, c := range v.block {
		b[i] = 'a' + c%26
	}
	return values{block: b, size: v.size}
}
