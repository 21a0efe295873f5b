//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/kstreamtest"
)

const (
	churnTopic      = "chaos"
	churnPartitions = 12
	churnGroup      = "chaos"
	maxMembers      = 4
	// produceInterval is the producer's tick: one record per partition per
	// tick, 480 records/s in all.
	produceInterval = 25 * time.Millisecond
	// recordDelay is each member's work per record, so that a member
	// holds records while the group rebalances around it.
	recordDelay = time.Millisecond
	// stopDeadline bounds a graceful stop of a member process (SIGTERM to
	// exit); the engine mode's own stop deadline is 20s.
	stopDeadline = 30 * time.Second
	drainTimeout = 2 * time.Minute
)

// Scenario 1: members (separate processes, Records loops and engines in the
// default at-least-once mode) join and leave gracefully at random moments.
// Nothing may be lost or processed twice.
func TestChurnGracefulDefault(t *testing.T) {
	requireChaos(t)
	runProcessChurn(t, churnConfig{
		name:  "1. graceful churn, default commits (processes: Records loop and Engine)",
		modes: []string{"records", "engine"},
	})
}

// Scenario 2: the same with ManualCommit and ManualCommitRebalanceListener,
// the members committing every 50 records themselves.
func TestChurnGracefulManualCommit(t *testing.T) {
	requireChaos(t)
	runProcessChurn(t, churnConfig{
		name:  "2. graceful churn, ManualCommit + ManualCommitRebalanceListener (processes)",
		modes: []string{"manual"},
	})
}

// Scenario 3: members of every mode join, leave gracefully and are killed
// with SIGKILL. Nothing may be lost; every duplicate must be a record a
// killed member had processed at or after the commit it died with.
func TestChurnWithKills(t *testing.T) {
	requireChaos(t)
	runProcessChurn(t, churnConfig{
		name:  "3. churn with SIGKILL (processes: Records loop, Engine, ManualCommit)",
		modes: []string{"records", "engine", "manual"},
		kills: true,
	})
}

type churnConfig struct {
	name  string
	modes []string
	kills bool
	// emit scenarios (emit_churn_test.go): the members emit to this topic,
	// and the output is what is checked.
	emit *emitConfig
}

// churnRun is the state of one process churn scenario.
type churnRun struct {
	t       *testing.T
	cfg     churnConfig
	rng     *rand.Rand
	seed    int64
	bin     string
	brokers string
	dir     string
	began   time.Time

	members []*memberProc
	gone    map[int]bool // terminated or killed
	kills   []killRecord
	joins   int
	leaves  int

	skippedKills int
	slots        map[int]string // eos-static members' InstanceIDs, by member id

	stopMu   sync.Mutex
	stopErrs []error
	maxStop  time.Duration
	stops    sync.WaitGroup
}

func runProcessChurn(t *testing.T, cfg churnConfig) {
	memberBin, brokerBin := binaries(t)
	if v := os.Getenv("CHAOS_MODES"); v != "" {
		cfg.modes = strings.Split(v, ",")
		cfg.name += " [modes " + v + "]"
	}
	duration := churnDuration(t, 2*time.Minute, 15*time.Second)
	r := &row{Scenario: cfg.name, Duration: duration, DupBound: -1}
	report(t, r)
	c, addr := externalCluster(t, brokerBin, churnTopic, churnPartitions)
	if cfg.emit != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := c.CreateTopic(ctx, cfg.emit.topic, churnPartitions)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	sd := seed(t)
	run := &churnRun{
		t: t, cfg: cfg, bin: memberBin, brokers: addr, dir: workDir(t), seed: sd,
		rng: rand.New(rand.NewPCG(uint64(sd), 0)), gone: make(map[int]bool), began: time.Now(),
	}
	t.Cleanup(run.killAll)

	mon := c.MonitorCommits(t, churnGroup)
	stopWatch := watchGroup(t, c, churnGroup, run.began)
	defer stopWatch()
	prod := startProducer(t, c.Brokers(), churnTopic, churnPartitions, produceInterval)
	run.join()
	deadline := time.Now().Add(duration)
	for {
		wait := time.Duration(300+run.rng.IntN(2700)) * time.Millisecond
		if time.Until(deadline) < wait {
			break
		}
		time.Sleep(wait)
		run.act(c)
	}
	time.Sleep(time.Until(deadline))

	acked, n, perrs := prod.finish()
	if len(perrs) > 0 {
		t.Errorf("producer: %d errors, first: %v", len(perrs), perrs[0])
	}
	run.logf("stop producing after %d records; start a member to drain", n)
	run.join()
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	lag, err := c.AwaitCaughtUp(ctx, churnGroup, churnTopic)
	cancel()
	if err != nil {
		t.Errorf("group did not commit up to the end within %v: %v", drainTimeout, err)
	} else {
		run.logf("caught up: committed %v", lag)
	}
	for _, m := range run.alive() {
		run.leave(m)
	}
	run.stops.Wait()
	mon.Stop()
	mon.AssertMonotonic(t)

	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	end, err := c.EndOffsets(ctx, churnTopic)
	cancel()
	if err != nil {
		t.Fatalf("end offsets: %v", err)
	}
	checkAcked(t, acked, end)
	if cfg.emit != nil {
		run.checkOutput(c, r, end)
		return
	}

	processed := make(map[int][]pos)
	partials := 0
	lostEvents := 0
	for _, m := range run.members {
		recs, partial, err := readProcessed(m.out)
		if err != nil {
			t.Fatal(err)
		}
		processed[m.id] = recs
		partials += partial
		m.mu.Lock()
		lostEvents += m.lost
		m.mu.Unlock()
	}
	v := verify(end, processed, run.kills)
	v.assert(t, !cfg.kills)
	for _, err := range run.stopErrs {
		t.Error(err)
	}
	if !cfg.kills && lostEvents > 0 {
		t.Errorf("%d partition-lost events with graceful leaves only (a session expired: see the member logs)", lostEvents)
	}

	r.Produced, r.Lost, r.Duplicated, r.MaxShutdown = v.produced, v.lost, v.duplicated, run.maxStop
	if cfg.kills {
		r.DupBound = v.bound
	}
	r.Notes = fmt.Sprintf("seed %d; %d members started, %d graceful leaves, %d kills", run.seed, run.joins, run.leaves, len(run.kills))
	if run.skippedKills > 0 {
		r.Notes += fmt.Sprintf(" (%d more skipped: group not stable)", run.skippedKills)
	}
	if partials > 0 {
		r.Notes += fmt.Sprintf("; %d half-written line(s) at kills", partials)
	}
	if lostEvents > 0 {
		r.Notes += fmt.Sprintf("; %d partitions-lost events", lostEvents)
	}
	if t.Failed() {
		for _, m := range run.members {
			t.Logf("%v events:\n%s", m, m.eventLog())
		}
	}
}

func (run *churnRun) logf(format string, args ...any) {
	run.t.Helper()
	run.t.Logf("%7.2fs "+format, append([]any{time.Since(run.began).Seconds()}, args...)...)
}

func (run *churnRun) alive() []*memberProc {
	var out []*memberProc
	for _, m := range run.members {
		if !run.gone[m.id] {
			out = append(out, m)
		}
	}
	return out
}

// act makes one random membership change, keeping 1 to 4 members alive.
func (run *churnRun) act(c *kstreamtest.Cluster) {
	alive := run.alive()
	type choice struct {
		weight int
		do     func()
	}
	var choices []choice
	if len(alive) < maxMembers {
		choices = append(choices, choice{3, func() { run.join() }})
	}
	if len(alive) > 1 {
		victim := alive[run.rng.IntN(len(alive))]
		choices = append(choices, choice{2, func() { run.leave(victim) }})
		if run.cfg.kills {
			choices = append(choices, choice{2, func() { run.kill(c, victim) }})
		}
	}
	total := 0
	for _, ch := range choices {
		total += ch.weight
	}
	n := run.rng.IntN(total)
	for _, ch := range choices {
		if n < ch.weight {
			ch.do()
			return
		}
		n -= ch.weight
	}
}

func (run *churnRun) join() *memberProc {
	mode := run.cfg.modes[run.rng.IntN(len(run.cfg.modes))]
	id := len(run.members) + 1
	f := memberFlags{brokers: run.brokers, topic: churnTopic, group: churnGroup, mode: mode, delay: recordDelay}
	if e := run.cfg.emit; e != nil {
		f.emitTo, f.txnTimeout = e.topic, e.txnTimeout
		if mode == "eos-static" {
			f.instanceID = run.freeSlot(id)
		}
	}
	m := startMember(run.t, run.bin, run.dir, id, f)
	run.members = append(run.members, m)
	run.joins++
	run.logf("join  %v; %d alive", m, len(run.alive()))
	return m
}

// leave stops m gracefully and, in the background, waits for it to exit.
func (run *churnRun) leave(m *memberProc) {
	run.gone[m.id] = true
	run.leaves++
	m.terminate()
	run.logf("leave %v (SIGTERM); %d alive", m, len(run.alive()))
	run.stops.Add(1)
	go func() {
		defer run.stops.Done()
		took, err := m.waitStopped(stopDeadline)
		run.stopMu.Lock()
		defer run.stopMu.Unlock()
		if err != nil {
			run.stopErrs = append(run.stopErrs, err)
			return
		}
		run.maxStop = max(run.maxStop, took)
	}()
}

// kill kills m with SIGKILL once the group is stable with m in it, after
// reading the group's commits.
//
// Only a stable group: kfake, the broker, keeps a member that dies with a
// JoinGroup or SyncGroup request in flight forever (it arms the member's
// session timer only when its answer is delivered), and with members that
// keep rejoining, the rebalance then waits for it for minutes, or leaves
// partitions assigned to the dead member. A real broker expires such a
// member after its session timeout. CHAOS_KILL_ANYTIME=1 kills at any
// moment anyway, to show it. See docs/reliability.md.
func (run *churnRun) kill(c *kstreamtest.Cluster, m *memberProc) {
	if os.Getenv("CHAOS_KILL_ANYTIME") != "1" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		g, err := c.AwaitGroupStable(ctx, churnGroup, -1)
		cancel()
		in := slices.ContainsFunc(g.Members, func(gm kstreamtest.GroupMember) bool { return gm.ClientID == m.clientID() })
		if err != nil || !in {
			run.logf("kill of %v skipped: the group is not stable with it (%v)", m, g)
			run.skippedKills++
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	committed, err := c.Committed(ctx, churnGroup)
	cancel()
	if err != nil {
		run.t.Errorf("read commits before a kill: %v", err)
		return
	}
	run.gone[m.id] = true
	m.kill()
	run.kills = append(run.kills, killRecord{victim: m.id, committed: maps.Clone(committed[churnTopic])})
	run.logf("KILL  %v (SIGKILL); %d alive", m, len(run.alive()))
}

// killAll kills what is left when the test ends early.
func (run *churnRun) killAll() {
	for _, m := range run.members {
		select {
		case <-m.done:
		default:
			m.cmd.Process.Kill()
			<-m.done
		}
	}
}

// checkAcked checks that the broker's end offsets are exactly what the
// producer had acknowledged: offsets 0 to end-1 of each partition, each
// once.
func checkAcked(t testing.TB, acked map[int32][]int64, end map[int32]int64) {
	t.Helper()
	for _, p := range slices.Sorted(maps.Keys(end)) {
		offs := slices.Clone(acked[p])
		slices.Sort(offs)
		if int64(len(offs)) != end[p] {
			t.Errorf("partition %d: end offset %d, but %d records acknowledged", p, end[p], len(offs))
			continue
		}
		for i, o := range offs {
			if o != int64(i) {
				t.Errorf("partition %d: acknowledged offsets are not 0..%d (found %d at %d)", p, end[p]-1, o, i)
				break
			}
		}
	}
}
