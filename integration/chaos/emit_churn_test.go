//go:build chaos

package chaos

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/kstreamtest"
)

// emitConfig is what an emit scenario adds to a churn scenario: the members
// (modes emit, eos and eos-static of cmd/member) consume the chaos topic
// and, for each record, emit "partition offset member" to topic, tied to
// the record with kstream.Emit.
type emitConfig struct {
	topic string
	// exactlyOnce: the output read read_committed must hold exactly one
	// record per input record; else (the default mode) at least one, and
	// every extra one must be accounted for by a kill.
	exactlyOnce bool
	// txnTimeout is the eos members' kgo.TransactionTimeout: how long a
	// killed member's open transaction, which nothing fences, holds
	// read_committed readers and the group's offsets.
	txnTimeout time.Duration
}

const emitTopic = "chaos-out"

// Scenario 9: consume, transform and produce under ExactlyOnce, members
// (separate processes) joining, leaving gracefully and killed with SIGKILL
// at random while a producer writes. Each member is, at random, static
// (InstanceID, so a member started again in a dead one's place fences its
// transaction at once) or dynamic (random transactional ID: a dead
// member's transaction ends at its 10 s timeout). A read_committed reader
// of the output, ours (franz-go) and kcat (librdkafka), must find exactly
// one output per input: 0 lost, 0 duplicated.
func TestEmitExactlyOnceWithKills(t *testing.T) {
	requireChaos(t)
	runProcessChurn(t, churnConfig{
		name:  "9. consume-transform-produce, ExactlyOnce, churn with SIGKILL (processes: static and dynamic members)",
		modes: []string{"eos", "eos-static"},
		kills: true,
		emit:  &emitConfig{topic: emitTopic, exactlyOnce: true, txnTimeout: 10 * time.Second},
	})
}

// Scenario 10: the same in the default (at-least-once) mode of Emit. Nothing
// may be lost; every duplicate output must be one a killed member had
// emitted for a record at or after the commit it died with.
func TestEmitDefaultWithKills(t *testing.T) {
	requireChaos(t)
	if testing.Short() {
		t.Skip("not in the bounded subset (make chaos runs it); scenario 9 covers Emit there")
	}
	runProcessChurn(t, churnConfig{
		name:  "10. consume-transform-produce, Emit default mode, churn with SIGKILL (processes)",
		modes: []string{"emit"},
		kills: true,
		emit:  &emitConfig{topic: emitTopic},
	})
}

// freeSlot returns an InstanceID for member id: the lowest slot no member
// process still running holds. A slot is freed when its member has exited
// (a killed one, or one that left and has finished stopping), so that two
// live members never share one.
func (run *churnRun) freeSlot(id int) string {
	if run.slots == nil {
		run.slots = make(map[int]string)
	}
	held := make(map[string]bool)
	for _, m := range run.members {
		slot, ok := run.slots[m.id]
		if !ok {
			continue
		}
		select {
		case <-m.done:
		default:
			held[slot] = true
		}
	}
	for k := 1; ; k++ {
		slot := fmt.Sprintf("slot-%d", k)
		if !held[slot] {
			run.slots[id] = slot
			return slot
		}
	}
}

// checkOutput checks the output of an emit scenario against the input (end:
// the input's end offsets) and fills r.
func (run *churnRun) checkOutput(c *kstreamtest.Cluster, r *row, end map[int32]int64) {
	t, e := run.t, run.cfg.emit
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	outEnd, err := c.EndOffsets(ctx, e.topic)
	if err != nil {
		t.Fatal(err)
	}
	committed, nCommitted, err := readOutput(ctx, c.Brokers(), e.topic, outEnd, true)
	if err != nil {
		t.Fatal(err)
	}
	_, nAll, err := readOutput(ctx, c.Brokers(), e.topic, outEnd, false)
	if err != nil {
		t.Fatal(err)
	}
	v := verify(end, committed, run.kills)
	v.assert(t, e.exactlyOnce) // exactly once: no duplicate at all
	run.logf("read_committed output: %d records for %d inputs: lost %d, duplicated %d; read_uncommitted: %d records",
		nCommitted, v.produced, v.lost, v.duplicated, nAll)

	// The processings, from the members' files: under ExactlyOnce more
	// than one per input after aborts, which the output must not show.
	processings, partials := 0, 0
	for _, m := range run.members {
		recs, partial, err := readProcessed(m.out)
		if err != nil {
			t.Fatal(err)
		}
		processings += len(recs)
		partials += partial
	}

	kcatNote := ""
	if e.exactlyOnce {
		kv, n := run.kcatOutput(c, e.topic, end)
		if kv.lost > 0 || kv.duplicated > 0 {
			t.Errorf("kcat (read_committed) read %d outputs: lost %d (%s), duplicated %d (%s)",
				n, kv.lost, firstN(kv.lostList, 20), kv.duplicated, strings.Join(kv.dupList, " "))
		}
		kcatNote = fmt.Sprintf("; kcat read_committed: %d outputs, lost %d, duplicated %d", n, kv.lost, kv.duplicated)
	}

	r.Produced, r.Lost, r.Duplicated, r.MaxShutdown = v.produced, v.lost, v.duplicated, run.maxStop
	if !e.exactlyOnce {
		r.DupBound = v.bound
	}
	r.Notes = fmt.Sprintf("seed %d; %d members started, %d graceful leaves, %d kills", run.seed, run.joins, run.leaves, len(run.kills))
	if run.skippedKills > 0 {
		r.Notes += fmt.Sprintf(" (%d more skipped: group not stable)", run.skippedKills)
	}
	r.Notes += fmt.Sprintf("; output read_committed %d, read_uncommitted %d (aborted %d); %d processings of %d inputs%s",
		nCommitted, nAll, nAll-nCommitted, processings, v.produced, kcatNote)
	if partials > 0 {
		r.Notes += fmt.Sprintf("; %d half-written line(s) at kills", partials)
	}
	for _, err := range run.stopErrs {
		t.Error(err)
	}
	if t.Failed() {
		for _, m := range run.members {
			t.Logf("%v events:\n%s", m, m.eventLog())
		}
	}
}

// readOutput reads topic from its start to end (the end offsets), as a
// read_committed consumer or not, and returns the input records each
// output names, by the member that emitted it, and the number of outputs.
func readOutput(ctx context.Context, brokers []string, topic string, end map[int32]int64, readCommitted bool) (map[int][]pos, int, error) {
	// Transaction markers take offsets too: kept, they move the reader to
	// the end offsets.
	opts := []kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords()}
	if readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kstreamtest.NewClient(brokers, opts...)
	if err != nil {
		return nil, 0, err
	}
	defer cl.Close()
	left := make(map[int32]int64)
	for p, o := range end {
		if o > 0 {
			left[p] = o
		}
	}
	out := make(map[int][]pos)
	n := 0
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, 0, fmt.Errorf("reading %s (read_committed %v): partitions %v not read to their end: %w", topic, readCommitted, slices.Sorted(maps.Keys(left)), err)
		}
		for _, r := range fs.Records() {
			if r.Offset+1 >= left[r.Partition] {
				delete(left, r.Partition)
			}
			if r.Attrs.IsControl() {
				continue
			}
			p, m, err := parseOutput(r.Value)
			if err != nil {
				return nil, 0, fmt.Errorf("%s@%d/%d: %w", topic, r.Partition, r.Offset, err)
			}
			out[m] = append(out[m], p)
			n++
		}
	}
	return out, n, nil
}

// parseOutput parses "partition offset member".
func parseOutput(v []byte) (pos, int, error) {
	f := strings.Fields(string(v))
	if len(f) != 3 {
		return pos{}, 0, fmt.Errorf("bad output %q", v)
	}
	p, err1 := strconv.ParseInt(f[0], 10, 32)
	o, err2 := strconv.ParseInt(f[1], 10, 64)
	m, err3 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return pos{}, 0, fmt.Errorf("bad output %q", v)
	}
	return pos{int32(p), o}, m, nil
}

// kcatOutput reads the output topic with kcat (librdkafka) as a
// read_committed consumer and checks it against the input: it returns the
// verdict (no kill counted: exactly once) and the number of outputs.
func (run *churnRun) kcatOutput(c *kstreamtest.Cluster, topic string, end map[int32]int64) (verdict, int) {
	t := run.t
	bin, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat not found (apt-get install kcat): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-b", c.Brokers()[0], "-C", "-t", topic, "-o", "beginning", "-e", "-q",
		"-X", "isolation.level=read_committed", "-f", "%s\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat: %v\nstderr:\n%s", err, stderr.String())
	}
	out := make(map[int][]pos)
	n := 0
	for line := range bytes.Lines(stdout.Bytes()) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		p, m, err := parseOutput(line)
		if err != nil {
			t.Fatalf("kcat: %v", err)
		}
		out[m] = append(out[m], p)
		n++
	}
	return verify(end, out, nil), n
}
