package kstreamtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Member is a plain group member that runs beside the streams under test, to
// provoke rebalances: joining a group takes partitions from its members,
// Leave gives them back at once, Crash gives them back only after the
// session timeout.
//
// A Member is a simple at-least-once consumer on a franz-go client of its
// own: it polls, processes each record (hands it to its RecordTo ledger and
// OnRecord function, if any), marks it, and commits the marks periodically,
// before its partitions are revoked and when it leaves. It starts from the
// group's committed offsets, else from the earliest offset, and uses
// franz-go's default balancer (cooperative-sticky), which a kstream.Stream
// offers first, so that the group stays cooperative; a group whose streams
// offer only other balancers needs MemberClientOptions(kgo.Balancers(...)).
// MemberClientOptions(kgo.Balancers(kgo.RoundRobinBalancer())) makes a
// member that offers what aiokafka does.
//
// Its methods are safe for concurrent use.
type Member struct {
	group  string
	cl     *kgo.Client
	link   *link
	cancel context.CancelFunc
	done   chan struct{}
	cfg    memberConfig

	processed atomic.Int64
	stopOnce  sync.Once

	mu       sync.Mutex
	owned    map[string]map[int32]bool
	errs     []error
	finished bool
}

// MemberOption configures a Member.
type MemberOption func(*memberConfig)

type memberConfig struct {
	ledger   *Ledger
	onRecord func(*kgo.Record)
	opts     []kgo.Opt
}

// RecordTo makes the member add each record it processes to l, so that a
// test can check the group's work as a whole.
func RecordTo(l *Ledger) MemberOption {
	return func(c *memberConfig) { c.ledger = l }
}

// OnRecord makes the member call fn for each record it processes, before
// marking it. fn runs on the member's goroutine; a slow fn (a sleep) makes a
// slow member, that holds rebalances while it works.
func OnRecord(fn func(*kgo.Record)) MemberOption {
	return func(c *memberConfig) { c.onRecord = fn }
}

// MemberClientOptions passes options to the member's franz-go client. They
// override the test timings (session timeout, heartbeat interval, ...) and
// the reset offset; the group, topics, commit settings and dialer are the
// member's own.
func MemberClientOptions(opts ...kgo.Opt) MemberOption {
	return func(c *memberConfig) { c.opts = append(c.opts, opts...) }
}

var memberSeq atomic.Int64

// AddMember starts a Member of group that consumes topics, and makes it leave
// when t ends (unless it left or crashed before). It fails t if the member's
// client cannot start. It returns once the client has reached a broker; it
// does not wait for the group to rebalance: use WaitGroupStable for that.
func (c *Cluster) AddMember(t testing.TB, group string, topics []string, opts ...MemberOption) *Member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := c.StartMember(ctx, group, topics, opts...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := m.Leave(); err != nil {
			t.Logf("kstreamtest: member of group %q leaving at the end of the test: %v", group, err)
		}
	})
	return m
}

// StartMember is AddMember for programs and examples: it returns an error
// instead of failing a test, and the caller must call Leave or Crash.
func (c *Cluster) StartMember(ctx context.Context, group string, topics []string, opts ...MemberOption) (*Member, error) {
	if group == "" || len(topics) == 0 {
		return nil, fmt.Errorf("kstreamtest: member needs a group and at least one topic (group %q, topics %v)", group, topics)
	}
	m := &Member{group: group, link: newLink(), done: make(chan struct{}), owned: make(map[string]map[int32]bool)}
	for _, o := range opts {
		o(&m.cfg)
	}
	kopts := []kgo.Opt{
		kgo.SeedBrokers(c.brokers...),
		kgo.ClientID(fmt.Sprintf("kstreamtest-member-%d", memberSeq.Add(1))),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}
	kopts = append(kopts, c.GroupTimings()...)
	kopts = append(kopts, m.cfg.opts...)
	kopts = append(kopts,
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topics...),
		kgo.AutoCommitMarks(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(m.onAssigned),
		kgo.OnPartitionsRevoked(m.onRevoked),
		kgo.OnPartitionsLost(m.onLost),
		kgo.Dialer(m.link.dial),
	)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kstreamtest: member of group %q: %w", group, err)
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("kstreamtest: member of group %q: no broker answered: %w", group, err)
	}
	m.cl = cl
	loopCtx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go m.run(loopCtx)
	return m, nil
}

func (m *Member) run(ctx context.Context) {
	defer close(m.done)
	for {
		fs := m.cl.PollRecords(ctx, 500)
		if ctx.Err() != nil || fs.IsClientClosed() {
			// Records polled but not processed stay unmarked: the next
			// owner gets them.
			m.cl.AllowRebalance()
			return
		}
		fs.EachRecord(func(r *kgo.Record) {
			if m.cfg.ledger != nil {
				m.cfg.ledger.AddRecord(r)
			}
			if m.cfg.onRecord != nil {
				m.cfg.onRecord(r)
			}
			m.processed.Add(1)
			m.cl.MarkCommitRecords(r)
		})
		m.cl.AllowRebalance()
	}
}

func (m *Member) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for t, ps := range assigned {
		if m.owned[t] == nil {
			m.owned[t] = make(map[int32]bool)
		}
		for _, p := range ps {
			m.owned[t][p] = true
		}
	}
}

// onRevoked commits what was processed before the partitions move, so that
// a graceful rebalance delivers nothing twice.
func (m *Member) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	err := cl.CommitMarkedOffsets(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil && !m.finished {
		m.errs = append(m.errs, fmt.Errorf("commit before revoke: %w", err))
	}
	m.dropLocked(revoked)
}

func (m *Member) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dropLocked(lost)
}

func (m *Member) dropLocked(parts map[string][]int32) {
	for t, ps := range parts {
		for _, p := range ps {
			delete(m.owned[t], p)
		}
		if len(m.owned[t]) == 0 {
			delete(m.owned, t)
		}
	}
}

// Group returns the member's group.
func (m *Member) Group() string { return m.group }

// ID returns the member ID the group coordinator gave the member, or "" while
// it has none.
func (m *Member) ID() string {
	id, _ := m.cl.GroupMetadata()
	return id
}

// Assignment returns the partitions the member owns, by topic, each list
// sorted.
func (m *Member) Assignment() map[string][]int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]int32, len(m.owned))
	for t, ps := range m.owned {
		out[t] = slices.Sorted(maps.Keys(ps))
	}
	return out
}

// Processed returns how many records the member has processed.
func (m *Member) Processed() int64 { return m.processed.Load() }

// Leave stops the member gracefully: it stops polling, commits what it
// processed and leaves the group, so that its partitions move to the other
// members at once. It returns the errors of its commits, including failed
// commits before earlier revokes. Leave and Crash after the first call of
// either do nothing and return nil.
func (m *Member) Leave() error {
	var err error
	m.stop(nil, func() {
		id := m.ID()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if cerr := m.cl.CommitMarkedOffsets(ctx); cerr != nil {
			err = fmt.Errorf("final commit: %w", cerr)
		}
		m.cl.CloseAllowingRebalance() // leaves the group
		m.mu.Lock()
		defer m.mu.Unlock()
		m.finished = true
		err = errors.Join(append(m.errs, err)...)
		if err != nil {
			err = fmt.Errorf("kstreamtest: member %q of group %q: %w", id, m.group, err)
		}
	})
	return err
}

// Crash stops the member the way a process dies: its connections are cut
// first, so it neither commits nor leaves the group. The broker removes it
// only when its session times out (Cluster.SessionTimeout), and the records
// it processed since its last commit are delivered again to the member that
// takes its partitions.
func (m *Member) Crash() {
	m.stop(func() {
		m.mu.Lock()
		m.finished = true // the commits that fail from now on are the crash
		m.mu.Unlock()
		m.link.sever()
	}, func() {
		m.cl.CloseAllowingRebalance()
	})
}

// stop runs before, ends the poll loop, then runs finish; only the first
// call does anything.
func (m *Member) stop(before, finish func()) {
	m.stopOnce.Do(func() {
		if before != nil {
			before()
		}
		m.cancel()
		<-m.done
		finish()
	})
}
