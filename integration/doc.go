// Package integration holds the work that is too slow, too disruptive or too
// dependency-heavy for the SDK's own tests: long soak and chaos runs (members
// joining, leaving and crashing mid-stream), interoperability checks against
// real Kafka clusters, and comparisons with peer Kafka libraries.
//
// It is a module of its own, joined to the SDK by the go.work at the root of
// the repository, so that its dependencies never enter the SDK's go.mod.
//
// cmd/benchcompare compares kstream with raw franz-go, segmentio/kafka-go and
// IBM/sarama (consume and produce; see docs/performance.md), and
// cmd/kfakeserver runs the in-process cluster as a process of its own.
package integration
