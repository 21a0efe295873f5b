package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
)

// devProcess is a running kstreams-dev.
type devProcess struct {
	cmd      *exec.Cmd
	brokers  []string
	registry string
	stderr   *bytes.Buffer
	lines    chan string // stdout after "ready"
	done     chan error
}

// startDev runs the built command and waits until it says it is ready,
// reading the addresses it prints.
func startDev(t *testing.T, bin string, args ...string) *devProcess {
	t.Helper()
	p := &devProcess{cmd: exec.Command(bin, args...), stderr: new(bytes.Buffer), lines: make(chan string, 100), done: make(chan error, 1)}
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		isReady := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case isReady:
				p.lines <- line
			case strings.HasPrefix(line, "kafka: "):
				p.brokers = strings.Split(strings.TrimPrefix(line, "kafka: "), ",")
			case strings.HasPrefix(line, "schema registry: "):
				p.registry = strings.TrimPrefix(line, "schema registry: ")
			case line == "ready; Ctrl-C stops":
				isReady = true
				ready <- nil
			}
		}
		close(p.lines)
		if !isReady {
			ready <- fmt.Errorf("exited before it was ready")
		}
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
		}
	})
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("kstreams-dev %v: %v\nstderr:\n%s", args, err, p.stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("kstreams-dev %v not ready after 60s\nstderr:\n%s", args, p.stderr)
	}
	return p
}

// stop sends sig and checks that the process stops cleanly, exit status 0.
func (p *devProcess) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("kstreams-dev after %v: %v\nstderr:\n%s", sig, err, p.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("kstreams-dev still running 30s after %v\nstderr:\n%s", sig, p.stderr)
	}
	var rest []string
	for l := range p.lines {
		rest = append(rest, l)
	}
	if !slices.Contains(rest, "stopped") {
		t.Fatalf("kstreams-dev did not say it stopped: %q", rest)
	}
}

func buildDev(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kstreams-dev")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// The command on free ports: a plain franz-go client produces to the
// topic it created and reads back, a group commits, a schema is
// registered; after a restart with the same data folder the records, the
// commit and the schema are all there; SIGTERM and SIGINT stop it with
// status 0.
func TestDevClusterKeepsDataAcrossRestarts(t *testing.T) {
	bin := buildDev(t)
	data := filepath.Join(t.TempDir(), "data")
	args := []string{"-port", "0", "-registry-port", "0", "-brokers", "2", "-topic", "orders:3", "-data", data}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	first := startDev(t, bin, args...)
	if len(first.brokers) != 2 {
		t.Fatalf("brokers %v, want 2", first.brokers)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(first.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	var sent []*kgo.Record
	for i := range 9 {
		sent = append(sent, &kgo.Record{Topic: "orders", Partition: int32(i % 3), Value: fmt.Appendf(nil, "order-%d", i)})
	}
	if err := cl.ProduceSync(ctx, sent...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	if got := readAll(ctx, t, first.brokers, 9); !sameRecords(got, sent) {
		t.Fatalf("read back %v, sent %v", keys(got), keys(sent))
	}
	adm := kadm.NewClient(cl)
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: "orders", Partition: 1, At: 2, LeaderEpoch: -1})
	if _, err := adm.CommitOffsets(ctx, "billing", offs); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	src := registryClient(t, first.registry)
	schema := sr.Schema{Schema: `{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}`}
	id, err := src.RegisterSchema(ctx, "orders-value", schema, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	first.stop(t, syscall.SIGTERM)

	second := startDev(t, bin, args...)
	if got := readAll(ctx, t, second.brokers, 9); !sameRecords(got, sent) {
		t.Fatalf("after the restart: read %v, sent %v", keys(got), keys(sent))
	}
	cl, err = kgo.NewClient(kgo.SeedBrokers(second.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	committed, err := kadm.NewClient(cl).FetchOffsets(ctx, "billing")
	cl.Close()
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := committed.Lookup("orders", 1); !ok || o.At != 2 {
		t.Fatalf("the group's commit after the restart: %+v (found %v), want offset 2", o, ok)
	}
	got, err := registryClient(t, second.registry).SchemaByID(ctx, id)
	if err != nil || got.Schema != schema.Schema {
		t.Fatalf("schema %d after the restart: %+v, %v", id, got, err)
	}
	second.stop(t, os.Interrupt)
}

func registryClient(t *testing.T, url string) *sr.Client {
	t.Helper()
	cl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// readAll reads n records of orders from the start, outside any group.
func readAll(ctx context.Context, t *testing.T, brokers []string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []*kgo.Record
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d records: %v", len(got), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		got = append(got, fs.Records()...)
	}
	return got
}

type recKey struct {
	partition int32
	offset    int64
	value     string
}

func keys(rs []*kgo.Record) []recKey {
	var out []recKey
	for _, r := range rs {
		out = append(out, recKey{r.Partition, r.Offset, string(r.Value)})
	}
	slices.SortFunc(out, func(a, b recKey) int {
		if a.partition != b.partition {
			return int(a.partition - b.partition)
		}
		return int(a.offset - b.offset)
	})
	return out
}

func sameRecords(a, b []*kgo.Record) bool { return slices.Equal(keys(a), keys(b)) }

func TestFlags(t *testing.T) {
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.port != 9092 || c.registryPort != 8081 || c.brokers != 1 || !c.autoCreate || c.data != "" {
		t.Fatalf("defaults %+v: want Kafka on 9092 (the SDK's default brokers), the registry on 8081, one broker, auto-create, in memory", c)
	}
	c, err = parseFlags([]string{"-topic", "orders:6", "-topic", "events", "-brokers", "3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []topicFlag{{"orders", 6}, {"events", 1}}; !slices.Equal(c.topics, want) || c.brokers != 3 {
		t.Fatalf("topics %v brokers %d", c.topics, c.brokers)
	}
	for _, bad := range [][]string{
		{"-topic", "orders:0"},
		{"-topic", "orders:x"},
		{"-topic", ":3"},
		{"-brokers", "0"},
		{"-port", "65535", "-brokers", "2"},
		{"-registry-port", "-2"},
		{"extra"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
	var stderr bytes.Buffer
	if code := run(context.Background(), func() {}, []string{"-brokers", "0"}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "-brokers 0") {
		t.Fatalf("run with a bad flag: status %d, stderr %q", code, stderr.String())
	}
}
