//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// quiet logs the SDK's warnings and errors only: the scenarios make the
// info logs of every rebalance.
var quiet = kstream.Logger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

// Scenario 5: Engine.Stop while the group rebalances. Engines of one group
// take turns under continuous production: a new engine joins and, once the
// coordinator has started rebalancing, after a random moment (0 to 200ms)
// either the old engine or the newcomer is stopped. Every Stop must return nil within its deadline; the
// group must lose and repeat nothing (every stop is graceful); no goroutine
// may remain once the last engine stopped.
func TestShutdownStopDuringRebalance(t *testing.T) {
	requireChaos(t)
	const topic, group, partitions = "stop", "stop", 6
	const deadline = 10 * time.Second
	rounds := 30
	if testing.Short() {
		rounds = 4
	}
	if v := os.Getenv("CHAOS_ROUNDS"); v != "" {
		fmt.Sscan(v, &rounds)
	}
	r := &row{Scenario: "5. Engine.Stop during a rebalance (engines joining and stopping, -race)", DupBound: -1}
	report(t, r)
	sd := seed(t)
	rng := rand.New(rand.NewPCG(uint64(sd), 5))

	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, partitions))
	warmUp(t, c, group, topic)
	checkLeaks := leakCheck(t)
	mon := c.MonitorCommits(t, group)
	prod := startProducer(t, c.Brokers(), topic, partitions, produceInterval)
	var ledger kstreamtest.Ledger

	start := func(i int) *kstream.Engine {
		eng := kstreamtest.NewEngine(t, c, quiet)
		s := kstreamtest.NewStream(t, c, codec.Bytes(), kstream.Topics(topic), kstream.Group(group), kstream.Name(fmt.Sprintf("e%d", i)))
		s.Handle(func(context.Context, kstream.Record[[]byte]) error {
			time.Sleep(recordDelay)
			return nil
		}, kstreamtest.Track[[]byte](&ledger))
		if err := eng.Add(s); err != nil {
			t.Fatal(err)
		}
		if err := eng.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return eng
	}
	began := time.Now()
	stopRecording := recordGroup(t, c, group, began)
	cur := start(0)
	c.WaitGroupStable(t, group, 1, 15*time.Second)
	var maxStop time.Duration
	states := make(map[string]int)
	for i := 1; i <= rounds; i++ {
		next := start(i)
		// Wait for the rebalance the newcomer starts, then stop at a
		// random moment of it: at once, or up to 200ms in.
		kstreamtest.WaitFor(t, 10*time.Second, "the group to start rebalancing", func() bool {
			g, _ := c.DescribeGroup(context.Background(), group)
			return g.State != "Stable" || len(g.Members) == 2
		})
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
		victim, survivor, which := cur, next, "old"
		if rng.IntN(2) == 0 {
			victim, survivor, which = next, cur, "joining"
		}
		g, _ := c.DescribeGroup(context.Background(), group)
		state := rebalanceState(t, c, g, topic)
		states[state]++
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		t0 := time.Now()
		err := victim.Stop(ctx)
		took := time.Since(t0)
		cancel()
		maxStop = max(maxStop, took)
		t.Logf("%7.3fs round %d: stopped the %s engine in %v; the group was %s", time.Since(began).Seconds(), i, which, took.Round(time.Millisecond), state)
		if err != nil {
			t.Errorf("round %d: Stop of the %s engine during a rebalance: %v", i, which, err)
		}
		if took >= deadline {
			t.Errorf("round %d: Stop took %v, past its %v deadline", i, took, deadline)
		}
		cur = survivor
		c.WaitGroupStable(t, group, 1, 20*time.Second)
	}
	_, n, perrs := prod.finish()
	if len(perrs) > 0 {
		t.Errorf("producer: %d errors, first: %v", len(perrs), perrs[0])
	}
	c.WaitCaughtUp(t, group, 60*time.Second, topic)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t0 := time.Now()
	if err := cur.Stop(ctx); err != nil {
		t.Errorf("last Stop: %v", err)
	}
	maxStop = max(maxStop, time.Since(t0))
	cancel()
	mon.Stop()
	stopRecording()
	mon.AssertMonotonic(t)
	checkLeaks(10 * time.Second)
	ledger.AssertAtLeastOnce(t, c.Produced(t, topic))
	ledger.AssertNoDuplicates(t)

	r.Duration = time.Since(began)
	r.Produced = n
	r.Lost = countLost(&ledger, c.Produced(t, topic), topic)
	r.Duplicated = int64(ledger.Total() - ledger.Count())
	r.MaxShutdown = maxStop
	var st []string
	for _, k := range slices.Sorted(maps.Keys(states)) {
		st = append(st, fmt.Sprintf("%d %s", states[k], k))
	}
	r.Notes = fmt.Sprintf("seed %d; %d Stops (deadline %v) of the old or the joining engine, group at the Stop: %s; then 1 at the end; no goroutine left", sd, rounds, deadline, strings.Join(st, ", "))
}

// rebalanceState names where the group is in a rebalance: Kafka's state,
// and, when Stable, whether the cooperative-sticky second round (moving
// partitions that were revoked in the first) is still to come.
func rebalanceState(t testing.TB, c *kstreamtest.Cluster, g kstreamtest.GroupState, topic string) string {
	if g.State != "Stable" {
		return g.State
	}
	assigned := 0
	for _, m := range g.Members {
		assigned += len(m.Assignment[topic])
	}
	parts, err := c.EndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if assigned < len(parts) {
		return "Stable with partitions unassigned (cooperative round 1)"
	}
	return fmt.Sprintf("Stable with %d members", len(g.Members))
}

// Scenario 6: Engine.Stop while a handler blocks until its ctx is done.
// The handler's ctx is canceled at the stop's deadline; Stop must return
// within the deadline plus the engine's one-second grace, leave the blocked
// record uncommitted (it is delivered again to the next member) and leave
// no goroutine. A handler that ignores its ctx cannot be waited for: Stop
// must still return in that time, with an error naming the stream, and the
// stream's goroutines must end once the handler returns.
func TestShutdownHandlerBlockedOnCtx(t *testing.T) {
	requireChaos(t)
	const deadline = 2 * time.Second
	const slack = 700 * time.Millisecond // scheduling, under -race on 2 cores
	r := &row{Scenario: "6. Engine.Stop with a handler blocked on ctx, under load (deadline 2s; -race)", DupBound: -1}
	report(t, r)
	began := time.Now()
	var maxStop time.Duration
	var cases, dupNotes []string
	var produced, totalDups int64

	// A blocker sets the stream's function up: it calls block for each
	// record (which blocks on the chosen one) and done for each record
	// once the engine counts it processed.
	type blocker struct {
		setup func(s *kstream.Stream[[]byte], block func(context.Context, kstream.Record[[]byte]) error, done func(kstream.Record[[]byte]))
		opts  []kstream.Option
	}
	handle := func(s *kstream.Stream[[]byte], block func(context.Context, kstream.Record[[]byte]) error, done func(kstream.Record[[]byte])) {
		s.Handle(func(ctx context.Context, rec kstream.Record[[]byte]) error {
			if err := block(ctx, rec); err != nil {
				return err
			}
			done(rec)
			return nil
		})
	}
	for _, tc := range []struct {
		name        string
		b           blocker
		ignoresCtx  bool
		wantStopErr bool
		keyed       bool // records of a partition may finish past the blocked one
	}{
		{name: "Handle", b: blocker{setup: handle}},
		{name: "Handle with PartitionConcurrency(3)", b: blocker{setup: handle, opts: []kstream.Option{kstream.PartitionConcurrency(3)}}},
		{name: "Handle with KeyConcurrency(4)", b: blocker{setup: handle, opts: []kstream.Option{kstream.KeyConcurrency(4)}}, keyed: true},
		{name: "HandleBatches", b: blocker{setup: func(s *kstream.Stream[[]byte], block func(context.Context, kstream.Record[[]byte]) error, done func(kstream.Record[[]byte])) {
			s.HandleBatches(10, 50*time.Millisecond, func(ctx context.Context, recs []kstream.Record[[]byte]) error {
				for _, rec := range recs {
					if err := block(ctx, rec); err != nil {
						return err // the whole batch stays unprocessed
					}
				}
				for _, rec := range recs {
					done(rec)
				}
				return nil
			})
		}}},
		{name: "Func ranging Records", b: blocker{setup: func(s *kstream.Stream[[]byte], block func(context.Context, kstream.Record[[]byte]) error, done func(kstream.Record[[]byte])) {
			s.Func(func(ctx context.Context, s *kstream.Stream[[]byte]) error {
				for rec, err := range s.Records(ctx) {
					if err != nil {
						return err
					}
					if err := block(ctx, rec); err != nil {
						return err
					}
					done(rec) // the body returns to the iterator next: processed
				}
				return nil
			})
		}}},
		{name: "Handle that ignores ctx", b: blocker{setup: handle}, ignoresCtx: true, wantStopErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const topic, group, partitions = "blocked", "blocked", 3
			c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, partitions))
			warmUp(t, c, group, topic)
			checkLeaks := leakCheck(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := produceKeyed(ctx, c, topic, partitions, 60); err != nil {
				t.Fatal(err)
			}
			// Under load: records keep coming while the engine stops.
			prod := startProducer(t, c.Brokers(), topic, partitions, produceInterval)

			var ledger kstreamtest.Ledger
			blocked := make(chan pos, 1)
			release := make(chan struct{})
			var once sync.Once
			var calls atomic.Int64
			block := func(ctx context.Context, rec kstream.Record[[]byte]) error {
				calls.Add(1)
				// Block on the 5th record of partition 1; the others
				// are processed.
				if rec.Partition == 1 && rec.Offset == 4 {
					first := false
					once.Do(func() { first = true })
					if first {
						blocked <- pos{rec.Partition, rec.Offset}
						if tc.ignoresCtx {
							<-release
							return errors.New("released")
						}
						<-ctx.Done()
						return ctx.Err()
					}
				}
				return nil
			}
			done := func(rec kstream.Record[[]byte]) { ledger.Add(rec.Topic, rec.Partition, rec.Offset) }
			eng := kstreamtest.NewEngine(t, c, quiet)
			s := kstreamtest.NewStream(t, c, codec.Bytes(), append([]kstream.Option{kstream.Topics(topic), kstream.Group(group)}, tc.b.opts...)...)
			tc.b.setup(s, block, done)
			if err := eng.Add(s); err != nil {
				t.Fatal(err)
			}
			if err := eng.Start(ctx); err != nil {
				t.Fatal(err)
			}
			var at pos
			select {
			case at = <-blocked:
			case <-time.After(20 * time.Second):
				t.Fatal("the handler never got the record to block on")
			}
			time.Sleep(300 * time.Millisecond) // let the other partitions go on

			sctx, scancel := context.WithTimeout(context.Background(), deadline)
			t0 := time.Now()
			err := eng.Stop(sctx)
			took := time.Since(t0)
			scancel()
			maxStop = max(maxStop, took)
			t.Logf("Stop returned after %v: %v", took.Round(time.Millisecond), err)
			if limit := deadline + time.Second + slack; took > limit {
				t.Errorf("Stop took %v, more than its %v deadline + 1s grace + %v", took, deadline, slack)
			}
			if tc.wantStopErr != (err != nil) {
				t.Errorf("Stop error = %v, want an error: %v", err, tc.wantStopErr)
			}
			if tc.wantStopErr && err != nil && !strings.Contains(err.Error(), s.Name()) {
				t.Errorf("Stop error %q does not name the stream %q", err, s.Name())
			}
			if tc.ignoresCtx {
				close(release)
			}
			prod.finish()

			committed, cerr := c.Committed(ctx, group)
			if cerr != nil {
				t.Fatal(cerr)
			}
			if off, ok := committed[topic][at.p]; ok && off > at.o {
				t.Errorf("partition %d committed at %d, past the record %d whose handler never finished", at.p, off, at.o)
			}
			// The next member gets the blocked record again, and nothing
			// is lost.
			m := c.AddMember(t, group, []string{topic}, kstreamtest.RecordTo(&ledger))
			c.WaitCaughtUp(t, group, 30*time.Second, topic)
			if err := m.Leave(); err != nil {
				t.Errorf("member leave: %v", err)
			}
			if ledger.Times(topic, at.p, at.o) != 1 {
				t.Errorf("the blocked record %d@%d was processed %d times after the stop, want 1 (by the next member)", at.p, at.o, ledger.Times(topic, at.p, at.o))
			}
			ledger.AssertAtLeastOnce(t, c.Produced(t, topic))
			dups := 0
			for p := range int32(partitions) {
				for o := range c.Produced(t, topic)[topic][p] {
					n := ledger.Times(topic, p, o)
					if n <= 1 {
						continue
					}
					dups += n - 1
					// With KeyConcurrency, records after one that waits
					// for the blocked record (same key, or same lane: lanes
					// are key hashes) may finish but are never committed
					// past it: they come again. Nothing committed may.
					if !tc.keyed || o < committed[topic][p] {
						t.Errorf("record %d@%d processed %d times (committed offset at the stop: %d)", p, o, n, committed[topic][p])
					}
				}
			}
			if dups > 0 {
				t.Logf("%d records handled but left uncommitted behind the blocked key's lane, delivered again (at least once)", dups)
				dupNotes = append(dupNotes, fmt.Sprintf("%s: %d", tc.name, dups))
				totalDups += int64(dups)
			}
			produced += c.Produced(t, topic).Total()
			checkLeaks(10 * time.Second)
			cases = append(cases, fmt.Sprintf("%s %v", tc.name, took.Round(10*time.Millisecond)))
		})
	}
	r.Duration = time.Since(began)
	r.MaxShutdown = maxStop
	r.Produced, r.Duplicated = produced, totalDups
	r.Notes = "Stop time per case: " + strings.Join(cases, ", ") + "; the blocked record is never committed and is delivered again to the next member; no goroutine left"
	if len(dupNotes) > 0 {
		r.Notes += "; duplicates (" + strings.Join(dupNotes, ", ") + ") are records other keys finished behind a record that waited for the blocked key's lane: never committed past it, so delivered again, all at or after the committed offset"
	}
}

// produceKeyed writes n records with seven keys, record i with key
// k<i mod 7>, each key to one partition (key mod partitions) as a
// partitioner would, so that KeyConcurrency has keys to tell apart.
func produceKeyed(ctx context.Context, c *kstreamtest.Cluster, topic string, partitions int32, n int) error {
	recs := make([]*kgo.Record, n)
	for i := range recs {
		k := i % 7
		recs[i] = &kgo.Record{Topic: topic, Partition: int32(k) % partitions, Key: []byte(fmt.Sprintf("k%d", k)), Value: []byte(fmt.Sprint(i))}
	}
	return c.Produce(ctx, recs...)
}

// warmUp makes the kit's own client connect and look up the group and the
// topic, so that its connections are in a goroutine baseline taken after.
func warmUp(t testing.TB, c *kstreamtest.Cluster, group, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Committed(ctx, group); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EndOffsets(ctx, topic); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lag(ctx, group, topic); err != nil {
		t.Fatal(err)
	}
}

func countLost(l *kstreamtest.Ledger, produced kstreamtest.Offsets, topic string) int64 {
	var lost int64
	for p, end := range produced[topic] {
		for o := int64(0); o < end; o++ {
			if l.Times(topic, p, o) == 0 {
				lost++
			}
		}
	}
	return lost
}

// Scenario 7: Close, or Engine.Stop, called from a rebalance listener
// callback, on the callback's own goroutine (which franz-go's group
// management waits for) and from a goroutine the callback starts, in
// OnRevoked and in OnAssigned, while records keep coming. Each must return
// within its bound, the stream's loop must end, nothing may be lost or
// processed twice (every stop is graceful), and no goroutine may remain.
// The one exception is documented behaviour: Stream.Close from another
// goroutine while a Records loop's body runs leaves that record uncommitted,
// so it alone may come again. A Close during Open (the first assignment can
// come before Open returns) makes Open return ErrClosed.
//
// Bounds: Close returns without waiting for the group leave when called
// from a callback, so 5s is generous; Engine.Stop is given a 3s deadline
// and must return by it plus its one-second grace (and 1s of slack).
// Engine.Stop on the callback's goroutine closes the stream at once (see
// TestEngineStopInsideListener).
func TestShutdownCloseFromListener(t *testing.T) {
	requireChaos(t)
	r := &row{Scenario: "7. Close / Engine.Stop called from a listener callback, under load (-race)", DupBound: -1}
	report(t, r)
	began := time.Now()
	var maxStop time.Duration
	var produced int64
	var times []string
	const stopDeadline = 3 * time.Second
	for _, tc := range []struct {
		engine, revoked, direct bool
	}{
		{false, true, true}, {false, false, true}, {true, true, true}, {true, false, true},
		{false, true, false}, {false, false, false}, {true, true, false}, {true, false, false},
	} {
		name := map[bool]string{false: "Stream.Close", true: "Engine.Stop"}[tc.engine] +
			map[bool]string{false: " in OnAssigned", true: " in OnRevoked"}[tc.revoked] +
			map[bool]string{false: " (from a goroutine it starts)", true: " (on its goroutine)"}[tc.direct]
		t.Run(name, func(t *testing.T) {
			const topic, group, partitions = "listen", "listen", 4
			c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, partitions))
			warmUp(t, c, group, topic)
			base := goroutines()
			checkLeaks := leakCheck(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := produceKeyed(ctx, c, topic, partitions, 40); err != nil {
				t.Fatal(err)
			}
			prod := startProducer(t, c.Brokers(), topic, partitions, produceInterval)
			var (
				ledger  kstreamtest.Ledger
				s       *kstream.Stream[[]byte]
				eng     *kstream.Engine
				stopped = make(chan time.Duration, 1)
				stopErr atomic.Value
				fired   atomic.Bool
			)
			stop := func() {
				t0 := time.Now()
				var err error
				if tc.engine {
					sctx, scancel := context.WithTimeout(context.Background(), stopDeadline)
					err = eng.Stop(sctx)
					scancel()
				} else {
					err = s.Close()
				}
				if err != nil {
					stopErr.Store(err)
				}
				stopped <- time.Since(t0)
			}
			cb := func(context.Context, kstream.AnyStream, map[string][]int32) {
				if !fired.CompareAndSwap(false, true) {
					return
				}
				if tc.direct {
					stop()
				} else {
					go stop()
				}
			}
			l := kstream.ListenerFuncs{Assigned: cb}
			if tc.revoked {
				l = kstream.ListenerFuncs{Revoked: cb}
			}
			s = kstreamtest.NewStream(t, c, codec.Bytes(), kstream.Topics(topic), kstream.Group(group), kstream.Listener(l), quiet)
			ranged := make(chan struct{})
			if tc.engine {
				eng = kstreamtest.NewEngine(t, c, quiet)
				s.Handle(func(context.Context, kstream.Record[[]byte]) error {
					time.Sleep(recordDelay)
					return nil
				}, kstreamtest.Track[[]byte](&ledger))
				if err := eng.Add(s); err != nil {
					t.Fatal(err)
				}
				if err := eng.Start(ctx); err != nil {
					t.Fatal(err)
				}
				close(ranged)
			} else {
				if err := s.Open(ctx); err != nil {
					// Closed by its listener while Open still connected
					// (the assignment can come before Open returns):
					// Open gives up with ErrClosed.
					if !errors.Is(err, kstream.ErrClosed) || !fired.Load() {
						t.Fatal(err)
					}
					t.Logf("closed by the listener during Open: %v", err)
				}
				go func() {
					defer close(ranged)
					for rec, err := range s.Records(ctx) {
						if err == nil {
							time.Sleep(recordDelay)
							ledger.Add(rec.Topic, rec.Partition, rec.Offset)
						}
					}
				}()
			}
			var m *kstreamtest.Member
			if tc.revoked {
				c.WaitGroupStable(t, group, 1, 15*time.Second)
				m = c.AddMember(t, group, []string{topic}, kstreamtest.RecordTo(&ledger)) // takes partitions: a revoke
			}
			bound := 5 * time.Second
			if tc.engine {
				bound = stopDeadline + time.Second + time.Second
			}
			select {
			case took := <-stopped:
				maxStop = max(maxStop, took)
				times = append(times, fmt.Sprintf("%s %v", name, took.Round(10*time.Millisecond)))
				err, _ := stopErr.Load().(error)
				t.Logf("stopped in %v: %v", took.Round(time.Millisecond), err)
				if took > bound {
					t.Errorf("the stop took %v, more than its bound %v", took, bound)
				}
				if err != nil && !(tc.engine && tc.direct) {
					t.Errorf("stop: %v", err)
				}
			case <-time.After(bound + 20*time.Second):
				t.Fatalf("the stop called from the callback did not return within %v; goroutines started by the test in kstream/franz-go:\n%s", bound+20*time.Second, summarize(base))
			}
			select {
			case <-ranged:
			case <-time.After(10 * time.Second):
				t.Fatalf("the stream's loop did not end after the stop; goroutines:\n%s", summarize(base))
			}
			_, n, _ := prod.finish()
			produced += n + 40
			// Whatever the stopped stream did not process, a member does.
			if m == nil {
				m = c.AddMember(t, group, []string{topic}, kstreamtest.RecordTo(&ledger))
			}
			c.WaitCaughtUp(t, group, 30*time.Second, topic)
			if err := m.Leave(); err != nil {
				t.Errorf("member leave: %v", err)
			}
			ledger.AssertAtLeastOnce(t, c.Produced(t, topic))
			if !tc.engine && !tc.direct {
				// Close from another goroutine while the loop body runs:
				// the record in hand is not committed (the body has not
				// returned to the iterator), so the next owner gets it
				// again. That one record, and no other, may repeat.
				if dups := ledger.Total() - ledger.Count(); dups > 1 {
					t.Errorf("%d records processed twice; Close from another goroutine may repeat only the record in hand", dups)
				}
			} else {
				ledger.AssertNoDuplicates(t)
			}
			r.Lost += countLost(&ledger, c.Produced(t, topic), topic)
			r.Duplicated += int64(ledger.Total() - ledger.Count())
			checkLeaks(10 * time.Second)
		})
	}
	r.Duration = time.Since(began)
	r.MaxShutdown = maxStop
	r.Produced = produced
	r.Notes = "8 cases: " + strings.Join(times, ", ") + "; no goroutine left"
}

// Regression test: Engine.Stop called on a listener callback's goroutine
// used to wait out its whole deadline, plus its one-second grace, because the
// stream's loop waits in franz-go's PollRecords for the rebalance the
// callback belongs to, which waits for Stop. Stop now closes such a stream at
// once.
func TestEngineStopInsideListener(t *testing.T) {
	requireChaos(t)
	const topic, group = "listen", "listen"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 4))
	ctx := context.Background()
	if err := produceKeyed(ctx, c, topic, 4, 40); err != nil {
		t.Fatal(err)
	}
	type result struct {
		took time.Duration
		err  error
	}
	done := make(chan result, 1)
	var fired atomic.Bool
	var eng *kstream.Engine
	l := kstream.ListenerFuncs{Assigned: func(context.Context, kstream.AnyStream, map[string][]int32) {
		if fired.CompareAndSwap(false, true) {
			sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer scancel()
			t0 := time.Now()
			err := eng.Stop(sctx)
			done <- result{time.Since(t0), err}
		}
	}}
	eng = kstreamtest.NewEngine(t, c, quiet)
	s := kstreamtest.NewStream(t, c, codec.Bytes(), kstream.Topics(topic), kstream.Group(group), kstream.Listener(l), quiet)
	s.Handle(func(context.Context, kstream.Record[[]byte]) error { return nil })
	if err := eng.Add(s); err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.took > 2*time.Second || res.err != nil {
		t.Fatalf("Engine.Stop(ctx with a 10s deadline) called in OnAssigned took %v and returned %v; want it to return promptly (as Close from a callback does) and nil", res.took.Round(time.Millisecond), res.err)
	}
}
