// Package kstreamtest runs Kafka for tests and example programs, and gives
// tests the levers to cause what breaks consumers in production: rebalances,
// crashed members, failing requests and hung brokers.
//
// The cluster is an in-process one (franz-go's kfake, a real Kafka protocol
// server on 127.0.0.1), or the cluster named by KAFKA_BROKERS when that is
// set, so the same test runs against both. A secured cluster is reached with
// the environment kstream reads (KAFKA_TLS, KAFKA_TLS_CA_FILE,
// KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD), except by
// the members of AddMember, which dial through a link of their own. A test of a handler:
//
//	func TestBilling(t *testing.T) {
//		c := kstreamtest.NewCluster(t, kstreamtest.Topic("orders", 4))
//		var ledger kstreamtest.Ledger
//		s := kstreamtest.NewStream(t, c, codec.JSON[Order](),
//			kstream.Topics("orders"), kstream.Group("billing"))
//		go s.Use(t.Context(), func(records iter.Seq2[kstream.Record[Order], error]) error {
//			for rec, err := range records {
//				if err != nil {
//					return err
//				}
//				bill(rec.Value)
//				ledger.Add(rec.Topic, rec.Partition, rec.Offset)
//			}
//			return nil
//		})
//		c.WaitGroupStable(t, "billing", 1, 10*time.Second)
//		m := c.AddMember(t, "billing", []string{"orders"}, kstreamtest.RecordTo(&ledger))
//		c.WaitGroupStable(t, "billing", 2, 10*time.Second) // the stream gave up partitions
//		kstreamtest.ProduceValues(t.Context(), c, "orders", 4, codec.JSON[Order](), orders...)
//		m.Crash() // its partitions come back after the session timeout
//		c.WaitCaughtUp(t, "billing", 20*time.Second, "orders")
//		ledger.AssertAtLeastOnce(t, c.Produced(t, "orders"))
//	}
//
// # Conventions
//
// Functions named Wait... take a *testing.T (any testing.TB) and a timeout,
// and fail the test with what they expected and what they saw last. The waits
// on the cluster and on a Ledger have an Await... twin that takes a context
// and returns that as an error, for programs and examples. Nothing waits
// forever. Constructors that take a
// testing.TB (NewCluster, NewStream, NewEngine, AddMember, MonitorCommits,
// the Fail levers) undo what they did when the test ends.
//
// # Levers
//
// Rebalances: NewStream builds streams whose connections Crash can cut, so a
// crash is a real one (no commit, no LeaveGroup; the broker notices at the
// session timeout, a second in tests); Leave is the graceful way out.
// AddMember adds a plain at-least-once member to any group, to take
// partitions from the streams under test; Member.Leave and Member.Crash
// remove it. WaitGroupStable waits for the rebalance to settle.
// AddShareMember adds a plain member to a share group (KIP-932), which
// accepts each record it processes, to take work from share streams.
//
// Faults (in-process cluster only; on a real cluster they fail the test):
// FailFetch, FailProduce, FailCommit, FailHeartbeat and FailRequests answer
// the next n requests of their kind with a Kafka error; StallBroker holds a
// broker's requests unanswered until Heal.
//
// Invariants: a Ledger collects what was processed (Add, RecordTo for
// members, Track for engine handlers) and checks that every produced record
// was processed at least once and none twice; a CommitMonitor checks that a
// group's committed offsets never went backwards.
//
// Schema registry: beside every cluster runs a schema registry, an
// in-process one (franz-go's srfake) or the one at SCHEMA_REGISTRY_URL:
// RegistryURL, RegistryClient (NewRegistryClient in tests) and Registry, to
// seed or intercept it; StopRegistry takes it down mid-test and its
// Restart brings it back at the same URL with the same schemas.
//
// See docs/testing.md for a guide.
package kstreamtest
