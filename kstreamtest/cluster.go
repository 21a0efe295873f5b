package kstreamtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/internal/kafkaenv"
	"github.com/gokstreams/kstreams/internal/srserver"
)

// Cluster is a Kafka cluster for a test or an example program.
type Cluster struct {
	fake    *kfake.Cluster
	brokers []string
	client  *kgo.Client
	admin   *kadm.Client
	secure  []kgo.Opt // TLS and SASL of a cluster named by KAFKA_BROKERS

	registry          *srserver.Server // nil with SCHEMA_REGISTRY_URL
	registryURL       string
	registryTransport *http.Transport

	closeOnce sync.Once
}

// Option configures a Cluster.
type Option func(*options)

type options struct {
	topics   []topicSpec
	brokers  int
	fakeOpts []kfake.Opt
}

type topicSpec struct {
	name       string
	partitions int32
}

// Topic creates a topic with the given number of partitions when the
// cluster starts.
func Topic(name string, partitions int32) Option {
	return func(o *options) { o.topics = append(o.topics, topicSpec{name, partitions}) }
}

// NumBrokers sets how many in-process brokers to start, overriding 1. It
// has no effect on a cluster named by KAFKA_BROKERS.
func NumBrokers(n int) Option {
	return func(o *options) { o.brokers = n }
}

// FakeOptions passes options to kfake, for fault injection and broker
// settings. They have no effect on a cluster named by KAFKA_BROKERS.
func FakeOptions(opts ...kfake.Opt) Option {
	return func(o *options) { o.fakeOpts = append(o.fakeOpts, opts...) }
}

// NewCluster starts a cluster for t and closes it when t ends. It fails t
// if the cluster cannot start.
func NewCluster(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	c, err := Start(opts...)
	if err != nil {
		t.Fatalf("kstreamtest: start cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// StartCluster starts a cluster for a program and returns its broker
// addresses and a function that stops it. With KAFKA_BROKERS set it starts
// no Kafka: it returns those brokers (after creating the requested topics)
// and stop only closes its admin connection (and the in-process schema
// registry, if it started one: see Start). A program that needs the
// registry's URL uses Start.
func StartCluster(opts ...Option) (brokers []string, stop func(), err error) {
	c, err := Start(opts...)
	if err != nil {
		return nil, nil, err
	}
	return c.Brokers(), c.Close, nil
}

// Start starts a cluster, and a schema registry beside it (see
// RegistryURL); Close stops both.
func Start(opts ...Option) (*Cluster, error) {
	o := options{brokers: 1}
	for _, opt := range opts {
		opt(&o)
	}
	c := &Cluster{registryTransport: http.DefaultTransport.(*http.Transport).Clone()}
	if err := c.startRegistry(); err != nil {
		return nil, err
	}
	if env := strings.TrimSpace(os.Getenv("KAFKA_BROKERS")); env != "" {
		for _, a := range strings.Split(env, ",") {
			if a = strings.TrimSpace(a); a != "" {
				c.brokers = append(c.brokers, a)
			}
		}
		// A secured cluster: the same environment as kstream's.
		secure, err := securityFromEnv()
		if err != nil {
			return nil, err
		}
		c.secure = secure
	} else {
		fo := []kfake.Opt{
			kfake.NumBrokers(o.brokers),
			kfake.GroupMinSessionTimeout(100 * time.Millisecond),
			// KIP-848 members learn of a new assignment at their next
			// heartbeat, whose interval the broker sets (5 s by default):
			// short, as the classic group's timings are in tests.
			// Share group members (KIP-932) likewise.
			kfake.BrokerConfigs(map[string]string{
				"group.consumer.heartbeat.interval.ms": "250",
				"group.share.heartbeat.interval.ms":    "250",
			}),
		}
		fo = append(fo, o.fakeOpts...)
		fake, err := kfake.NewCluster(fo...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("kstreamtest: start in-process cluster: %w", err)
		}
		c.fake = fake
		c.brokers = fake.ListenAddrs()
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(c.brokers...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		// Retrying after a "not leader" error waits for a metadata
		// refresh, by default at most one per 5s.
		kgo.MetadataMinAge(testMetadataMinAge),
	}, c.secure...)...)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("kstreamtest: client: %w", err)
	}
	c.client = cl
	c.admin = kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, t := range o.topics {
		if err := c.CreateTopic(ctx, t.name, t.partitions); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Brokers returns the cluster's broker addresses.
func (c *Cluster) Brokers() []string { return append([]string(nil), c.brokers...) }

// Fake returns the in-process cluster, for its control and fault hooks, or
// nil when the cluster is the one named by KAFKA_BROKERS.
func (c *Cluster) Fake() *kfake.Cluster { return c.fake }

// InProcess reports whether the cluster is the in-process one. The fault
// levers (FailRequests, StallBroker and the like) need it; a test that uses
// them can skip itself on a real cluster with
//
//	if !c.InProcess() { t.Skip("needs fault injection") }
func (c *Cluster) InProcess() bool { return c.fake != nil }

// SessionTimeout is the group session timeout that the members and streams
// the kit builds use: 1s on the in-process cluster (which allows sessions
// down to 100ms), and 6s, Kafka's default group.min.session.timeout.ms, on a
// real one. A crashed member's partitions move after about this long.
func (c *Cluster) SessionTimeout() time.Duration {
	if c.fake != nil {
		return time.Second
	}
	return 6 * time.Second
}

// GroupTimings returns the franz-go options that the kit's streams, engines
// and members use, so that rebalances and crashes play out in about a second
// instead of Kafka's 45: a session timeout of SessionTimeout(), heartbeats
// every 100ms, a 5s rebalance timeout, commits of processed records every
// 500ms, fetches that wait at most 250ms, and metadata refreshes allowed
// every 100ms (franz-go waits for one before retrying after a "not leader"
// error). Programs and examples that build their own streams pass them with
// kstream.ClientOptions(c.GroupTimings()...).
func (c *Cluster) GroupTimings() []kgo.Opt {
	return []kgo.Opt{
		kgo.SessionTimeout(c.SessionTimeout()),
		kgo.HeartbeatInterval(100 * time.Millisecond),
		kgo.RebalanceTimeout(testRebalanceTimeout),
		kgo.AutoCommitInterval(500 * time.Millisecond),
		kgo.FetchMaxWait(250 * time.Millisecond),
		kgo.MetadataMinAge(testMetadataMinAge),
	}
}

// testRebalanceTimeout bounds how long a rebalance waits for a member that
// does not rejoin (one that crashed in the middle of a rebalance), and so how
// long a loop body may hold a rebalance in a test.
const testRebalanceTimeout = 5 * time.Second

// Client returns the cluster's own franz-go client, whose partitioner honours
// Record.Partition. It is closed by Close.
func (c *Cluster) Client() *kgo.Client { return c.client }

// Admin returns an admin client for the cluster. It is closed by Close.
func (c *Cluster) Admin() *kadm.Client { return c.admin }

// Close stops the cluster. It is idempotent.
func (c *Cluster) Close() {
	c.closeOnce.Do(func() {
		if c.client != nil {
			c.client.Close()
		}
		if c.fake != nil {
			c.fake.Close()
		}
		if c.registry != nil {
			c.registry.Close()
		}
		c.registryTransport.CloseIdleConnections()
	})
}

// CreateTopic creates a topic. A topic that already exists with the same
// partition count is not an error.
func (c *Cluster) CreateTopic(ctx context.Context, name string, partitions int32) error {
	resp, err := c.admin.CreateTopic(ctx, partitions, 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.TopicAlreadyExists) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kstreamtest: create topic %q: %w", name, err)
	}
	return c.waitTopic(ctx, name, partitions)
}

// waitTopic waits until every broker's metadata has the topic's leaders.
func (c *Cluster) waitTopic(ctx context.Context, name string, partitions int32) error {
	for {
		md, err := c.admin.Metadata(ctx, name)
		if err == nil {
			if td, ok := md.Topics[name]; ok && td.Err == nil && int32(len(td.Partitions)) == partitions {
				ready := true
				for _, p := range td.Partitions {
					if p.Leader < 0 || p.Err != nil {
						ready = false
					}
				}
				if ready {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kstreamtest: topic %q not ready: %w", name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// testMetadataMinAge lets clients refresh metadata soon after an error such
// as NOT_LEADER_FOR_PARTITION, instead of franz-go's 5s.
const testMetadataMinAge = 100 * time.Millisecond

// NewClient returns a franz-go client of brokers with opts, for a program's
// or a test's own producing and consuming beside its streams. With TLS or
// SASL in the environment (KAFKA_TLS, KAFKA_TLS_CA_FILE,
// KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, read as
// kstream reads them) it dials and authenticates so, so that a program
// runs against a secured cluster named by KAFKA_BROKERS unchanged.
func NewClient(brokers []string, opts ...kgo.Opt) (*kgo.Client, error) {
	secure, err := securityFromEnv()
	if err != nil {
		return nil, err
	}
	all := append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, secure...)
	return kgo.NewClient(append(all, opts...)...)
}

// securityFromEnv returns the client options of the environment's TLS and
// SASL settings.
func securityFromEnv() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	tlsCfg, err := kafkaenv.ReadTLS()
	if err != nil {
		return nil, fmt.Errorf("kstreamtest: %w", err)
	}
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	mech, err := kafkaenv.ReadSASL()
	if err != nil {
		return nil, fmt.Errorf("kstreamtest: %w", err)
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	return opts, nil
}
