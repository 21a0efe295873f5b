// The group balancers a stream offers by default, so that a group can be
// shared with consumers of other clients (docs/interop.md).

package kstream

import "github.com/twmb/franz-go/pkg/kgo"

// kafkajsRoundRobin is the protocol name of kafkajs's default assigner: a
// round robin under a name of its own, which no other client offers.
const kafkajsRoundRobin = "RoundRobinAssigner"

// defaultBalancers returns the balancers a group stream offers when
// ClientOptions sets none (kgo.Balancers there replaces the whole list), in
// order of preference: cooperative-sticky first, so that a group of only
// kstream (or other franz-go) members stays cooperative, then the eager
// protocols other clients offer, so that a member of another client can
// join instead of being refused with INCONSISTENT_GROUP_PROTOCOL: range
// (librdkafka's default range,roundrobin and Java's range,cooperative-sticky
// share it), roundrobin (aiokafka) and kafkajs's RoundRobinAssigner. The
// coordinator picks the protocol every member offers that most members
// prefer; so a mixed group runs range or roundrobin, eagerly.
//
// With ClientOptions(kgo.ServerSideBalancer()) the first balancer, a sticky
// one, makes the broker's "uniform" assignor assign.
func defaultBalancers() []kgo.GroupBalancer {
	return []kgo.GroupBalancer{
		kgo.CooperativeStickyBalancer(),
		kgo.RangeBalancer(),
		kgo.RoundRobinBalancer(),
		renamedBalancer{kgo.RoundRobinBalancer(), kafkajsRoundRobin},
	}
}

// renamedBalancer is a balancer under another protocol name. The name is
// all that differs: kafkajs's round robin reads and writes the consumer
// protocol's subscription and assignment as every client does (franz-go
// reads the short version-1 subscription kafkajs sends).
type renamedBalancer struct {
	kgo.GroupBalancer
	name string
}

func (b renamedBalancer) ProtocolName() string { return b.name }
