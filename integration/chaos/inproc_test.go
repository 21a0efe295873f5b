//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// Scenario 4: the same churn with members as goroutines of the test process,
// against the in-process cluster, so that the race detector watches the SDK
// while its members join, leave (Close, Engine.Stop) and crash
// (kstreamtest.Crash: connections cut, no commit, no LeaveGroup).
func TestChurnInProcess(t *testing.T) {
	requireChaos(t)
	t.Run("graceful", func(t *testing.T) {
		runInProcessChurn(t, "4a. graceful churn in process (goroutines: Records loop and Engine; -race)", false)
	})
	t.Run("crashes", func(t *testing.T) {
		runInProcessChurn(t, "4b. churn with crashes in process (goroutines; kstreamtest.Crash; -race)", true)
	})
}

// kip848 reports whether the members run the consumer protocol of KIP-848
// (KSTREAM_GROUP_PROTOCOL=consumer, make test-kip848) instead of the
// classic one.
func kip848() bool { return os.Getenv("KSTREAM_GROUP_PROTOCOL") == "consumer" }

// groupProtocol is the members' option for the group protocol kip848 says.
func groupProtocol() kstream.Option {
	if kip848() {
		return kstream.ClientOptions(kgo.ServerSideBalancer())
	}
	return kstream.ClientOptions()
}

// ipMember is a member of the in-process churn: a stream ranged by a
// goroutine of its own, or an engine running a Handle stream.
type ipMember struct {
	id     int
	kind   string // "records" or "engine"
	s      *kstream.Stream[[]byte]
	eng    *kstream.Engine
	stop   context.CancelFunc // records: ends the range at the next record boundary
	ranged chan struct{}      // records: closed when the range has ended

	mu   sync.Mutex
	recs []pos
	err  error
}

func (m *ipMember) String() string   { return fmt.Sprintf("member %d (%s)", m.id, m.kind) }
func (m *ipMember) clientID() string { return fmt.Sprintf("member-%d", m.id) }

func (m *ipMember) processed(r kstream.Record[[]byte]) {
	m.mu.Lock()
	m.recs = append(m.recs, pos{r.Partition, r.Offset})
	m.mu.Unlock()
	time.Sleep(recordDelay)
}

func runInProcessChurn(t *testing.T, name string, crashes bool) {
	const topic, group, partitions = "chaos", "chaos", 12
	duration := churnDuration(t, 45*time.Second, 8*time.Second)
	if kip848() {
		name += " [KIP-848 consumer protocol]"
	}
	r := &row{Scenario: name, Duration: duration, DupBound: -1}
	report(t, r)
	sd := seed(t)
	rng := rand.New(rand.NewPCG(uint64(sd), 1))
	began := time.Now()
	logf := func(format string, args ...any) {
		t.Helper()
		t.Logf("%7.2fs "+format, append([]any{time.Since(began).Seconds()}, args...)...)
	}

	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, partitions))
	stopRecording := recordGroup(t, c, group, began)
	mon := c.MonitorCommits(t, group)
	prod := startProducer(t, c.Brokers(), topic, partitions, 2*produceInterval)
	checkLeaks := leakCheck(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var (
		members   []*ipMember
		gone      = make(map[int]bool)
		kills     []killRecord
		maxStop   time.Duration
		leaves    int
		skipped   int
		stopErrs  []error
		nextKinds = []string{"records", "engine"}
	)
	alive := func() []*ipMember {
		var out []*ipMember
		for _, m := range members {
			if !gone[m.id] {
				out = append(out, m)
			}
		}
		return out
	}
	join := func() {
		m := &ipMember{id: len(members) + 1, kind: nextKinds[rng.IntN(len(nextKinds))]}
		m.s = kstreamtest.NewStream(t, c, codec.Bytes(), kstream.Topics(topic), kstream.Group(group),
			kstream.Name(fmt.Sprintf("m%d", m.id)), kstream.ClientOptions(kgo.ClientID(m.clientID())), groupProtocol(), quiet)
		switch m.kind {
		case "records":
			m.ranged = make(chan struct{})
			if err := m.s.Open(ctx); err != nil {
				t.Fatalf("open %v: %v", m, err)
			}
			var rctx context.Context
			rctx, m.stop = context.WithCancel(ctx)
			go func() {
				defer close(m.ranged)
				for rec, err := range m.s.Records(rctx) {
					if err != nil {
						var fe *kstream.FetchError
						if errors.As(err, &fe) && !fe.Fatal {
							continue // a crash's cut may surface as one
						}
						m.mu.Lock()
						m.err = err
						m.mu.Unlock()
						return
					}
					m.processed(rec)
				}
			}()
		case "engine":
			m.eng = kstreamtest.NewEngine(t, c, quiet)
			m.s.Handle(func(_ context.Context, rec kstream.Record[[]byte]) error {
				m.processed(rec)
				return nil
			})
			if err := m.eng.Add(m.s); err != nil {
				t.Fatal(err)
			}
			if err := m.eng.Start(ctx); err != nil {
				t.Fatalf("start %v: %v", m, err)
			}
		}
		members = append(members, m)
		logf("join  %v; %d alive", m, len(alive()))
	}
	leave := func(m *ipMember) {
		gone[m.id] = true
		leaves++
		start := time.Now()
		var err error
		switch m.kind {
		case "records":
			// The graceful way out of a loop: end it at the next record
			// boundary, then Close. (Close alone, from another goroutine,
			// leaves the record in hand uncommitted: it is delivered again.)
			m.stop()
			select {
			case <-m.ranged:
			case <-time.After(stopDeadline):
				err = fmt.Errorf("the range did not end within %v of its ctx being canceled", stopDeadline)
			}
			err = errors.Join(err, m.s.Close())
		case "engine":
			sctx, scancel := context.WithTimeout(context.Background(), stopDeadline)
			err = m.eng.Stop(sctx)
			scancel()
		}
		took := time.Since(start)
		maxStop = max(maxStop, took)
		if err != nil {
			stopErrs = append(stopErrs, fmt.Errorf("%v: graceful stop: %w", m, err))
		}
		logf("leave %v in %v; %d alive", m, took.Round(time.Millisecond), len(alive()))
	}
	crash := func(m *ipMember) {
		// Only in a stable group: see churnRun.kill for kfake's bug.
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		g, err := c.AwaitGroupStable(sctx, group, -1)
		scancel()
		if err != nil || !slices.ContainsFunc(g.Members, func(gm kstreamtest.GroupMember) bool { return gm.ClientID == m.clientID() }) {
			skipped++
			logf("crash of %v skipped: the group is not stable with it", m)
			return
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		committed, err := c.Committed(cctx, group)
		ccancel()
		if err != nil {
			t.Errorf("read commits before a crash: %v", err)
			return
		}
		gone[m.id] = true
		kstreamtest.Crash(t, m.s)
		kills = append(kills, killRecord{victim: m.id, committed: maps.Clone(committed[topic])})
		logf("CRASH %v; %d alive", m, len(alive()))
	}

	join()
	deadline := time.Now().Add(duration)
	for {
		wait := time.Duration(300+rng.IntN(2200)) * time.Millisecond
		if time.Until(deadline) < wait {
			break
		}
		time.Sleep(wait)
		al := alive()
		switch n := rng.IntN(7); {
		case len(al) < maxMembers && (n < 3 || len(al) <= 1):
			join()
		case crashes && n >= 5:
			crash(al[rng.IntN(len(al))])
		default:
			if len(al) > 1 {
				leave(al[rng.IntN(len(al))])
			}
		}
	}
	time.Sleep(time.Until(deadline))

	acked, n, perrs := prod.finish()
	if len(perrs) > 0 {
		t.Errorf("producer: %d errors, first: %v", len(perrs), perrs[0])
	}
	logf("stop producing after %d records; start a member to drain", n)
	join()
	wctx, wcancel := context.WithTimeout(context.Background(), drainTimeout)
	_, err := c.AwaitCaughtUp(wctx, group, topic)
	wcancel()
	if err != nil {
		t.Errorf("group did not commit up to the end within %v: %v", drainTimeout, err)
	}
	for _, m := range alive() {
		leave(m)
	}
	// The crashed engines' streams stopped with the crash; their engines
	// still run until stopped.
	for _, m := range members {
		if m.eng != nil {
			sctx, scancel := context.WithTimeout(context.Background(), stopDeadline)
			if err := m.eng.Stop(sctx); err != nil {
				t.Errorf("stopping the engine of crashed %v: %v", m, err)
			}
			scancel()
		}
	}
	mon.Stop()
	stopRecording()
	mon.AssertMonotonic(t)
	checkLeaks(10 * time.Second)

	end := c.Produced(t, topic)[topic]
	checkAcked(t, acked, end)
	processed := make(map[int][]pos)
	for _, m := range members {
		m.mu.Lock()
		processed[m.id] = slices.Clone(m.recs)
		if m.err != nil && !crashes {
			t.Errorf("%v: range ended with %v", m, m.err)
		}
		m.mu.Unlock()
	}
	v := verify(end, processed, kills)
	v.assert(t, !crashes)
	for _, err := range stopErrs {
		t.Error(err)
	}
	r.Produced, r.Lost, r.Duplicated, r.MaxShutdown = v.produced, v.lost, v.duplicated, maxStop
	if crashes {
		r.DupBound = v.bound
	}
	r.Notes = fmt.Sprintf("seed %d; %d members started, %d graceful leaves, %d crashes", sd, len(members), leaves, len(kills))
	if skipped > 0 {
		r.Notes += fmt.Sprintf(" (%d more skipped: group not stable)", skipped)
	}
}
