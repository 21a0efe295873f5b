package kstreamtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ShareMember is a plain member of a share group (KIP-932) that runs beside
// the streams under test, the share group counterpart of Member: it takes
// records from the group, so that a test sees its streams share the work,
// or lose records to a member that crashes.
//
// It polls, processes each record (hands it to its RecordTo ledger and
// OnRecord function, if any) and accepts it. Leave releases the records it
// holds and leaves the group; Crash cuts its connections first, so the
// records it holds come back only when their acquisition lock expires (30 s
// by default, group.share.record.lock.duration.ms) or the broker sees its
// connection gone. MemberClientOptions passes options to its client. Its
// methods are safe for concurrent use.
type ShareMember struct {
	group  string
	cl     *kgo.Client
	link   *link
	cancel context.CancelFunc
	done   chan struct{}
	cfg    memberConfig

	processed atomic.Int64
	stopOnce  sync.Once
}

// AddShareMember starts a ShareMember of the share group that consumes
// topics, and makes it leave when t ends (unless it left or crashed
// before). It sets the group's share.auto.offset.reset to earliest if the
// group has no value (as kstream's ShareGroup streams do). It fails t if
// the member cannot start.
func (c *Cluster) AddShareMember(t testing.TB, group string, topics []string, opts ...MemberOption) *ShareMember {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := c.StartShareMember(ctx, group, topics, opts...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(m.Leave)
	return m
}

// StartShareMember is AddShareMember for programs and examples: it returns
// an error instead of failing a test, and the caller must call Leave or
// Crash.
func (c *Cluster) StartShareMember(ctx context.Context, group string, topics []string, opts ...MemberOption) (*ShareMember, error) {
	if group == "" || len(topics) == 0 {
		return nil, fmt.Errorf("kstreamtest: share member needs a group and at least one topic (group %q, topics %v)", group, topics)
	}
	if err := c.SetShareAutoOffsetReset(ctx, group, "earliest", false); err != nil {
		return nil, err
	}
	m := &ShareMember{group: group, link: newLink(), done: make(chan struct{})}
	for _, o := range opts {
		o(&m.cfg)
	}
	kopts := []kgo.Opt{
		kgo.SeedBrokers(c.brokers...),
		kgo.ClientID(fmt.Sprintf("kstreamtest-share-member-%d", memberSeq.Add(1))),
		kgo.FetchMaxWait(250 * time.Millisecond),
		kgo.MetadataMinAge(testMetadataMinAge),
	}
	kopts = append(kopts, m.cfg.opts...)
	kopts = append(kopts,
		kgo.ShareGroup(group),
		kgo.ConsumeTopics(topics...),
		kgo.Dialer(m.link.dial),
	)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kstreamtest: share member of group %q: %w", group, err)
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("kstreamtest: share member of group %q: no broker answered: %w", group, err)
	}
	m.cl = cl
	loopCtx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go m.run(loopCtx)
	return m, nil
}

func (m *ShareMember) run(ctx context.Context) {
	defer close(m.done)
	for {
		fs := m.cl.PollRecords(ctx, 500)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return // what the poll returned is released by Leave
		}
		fs.EachRecord(func(r *kgo.Record) {
			if m.cfg.ledger != nil {
				m.cfg.ledger.AddRecord(r)
			}
			if m.cfg.onRecord != nil {
				m.cfg.onRecord(r)
			}
			m.processed.Add(1)
			r.Ack(kgo.AckAccept)
		})
	}
}

// Group returns the member's share group.
func (m *ShareMember) Group() string { return m.group }

// Processed returns how many records the member has processed (and
// accepted).
func (m *ShareMember) Processed() int64 { return m.processed.Load() }

// Leave stops the member gracefully: it stops polling, releases the records
// it holds unprocessed and leaves the group. Leave and Crash after the
// first call of either do nothing.
func (m *ShareMember) Leave() {
	m.stopOnce.Do(func() {
		m.cancel()
		<-m.done
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.cl.FlushAcks(ctx)
		m.cl.Close() // releases what it holds and leaves the group
	})
}

// Crash stops the member the way a process dies: its connections are cut
// first, so it neither flushes its acknowledgements nor leaves.
func (m *ShareMember) Crash() {
	m.stopOnce.Do(func() {
		m.link.sever()
		m.cancel()
		<-m.done
		m.cl.Close()
	})
}

// SetShareAutoOffsetReset sets the share group's share.auto.offset.reset
// ("earliest" or "latest", or a duration "by_duration:<ISO8601>"), which
// says where the group starts reading a partition it has not read yet
// (Kafka's default is latest). With force false it leaves a value the
// group has set alone.
func (c *Cluster) SetShareAutoOffsetReset(ctx context.Context, group, value string, force bool) error {
	if !force {
		dreq := kmsg.NewPtrDescribeConfigsRequest()
		dres := kmsg.NewDescribeConfigsRequestResource()
		dres.ResourceType = kmsg.ConfigResourceTypeGroupConfig
		dres.ResourceName = group
		dres.ConfigNames = []string{"share.auto.offset.reset"}
		dreq.Resources = append(dreq.Resources, dres)
		resp, err := dreq.RequestWith(ctx, c.client)
		if err == nil && len(resp.Resources) == 1 {
			for _, cf := range resp.Resources[0].Configs {
				if cf.Name == "share.auto.offset.reset" && cf.Source == kmsg.ConfigSourceGroupConfig {
					return nil
				}
			}
		}
	}
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeGroupConfig
	res.ResourceName = group
	cf := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	cf.Name = "share.auto.offset.reset"
	cf.Op = kmsg.IncrementalAlterConfigOpSet
	cf.Value = kmsg.StringPtr(value)
	res.Configs = append(res.Configs, cf)
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, c.client)
	if err == nil && len(resp.Resources) == 1 {
		err = kerr.ErrorForCode(resp.Resources[0].ErrorCode)
	}
	if err != nil {
		return fmt.Errorf("kstreamtest: set share.auto.offset.reset of share group %q: %w", group, err)
	}
	return nil
}
