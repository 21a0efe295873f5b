// Command benchcompare measures kstream against raw franz-go,
// segmentio/kafka-go and IBM/sarama, consuming and producing the same records
// on one kfake broker, and prints Markdown tables of medians and ratios to
// franz-go. See docs/performance.md for what is measured and how.
//
//	go run ./integration/cmd/benchcompare            # defaults: a few minutes
//	go run ./integration/cmd/benchcompare -quick     # CI smoke: under a minute
//	go run ./integration/cmd/benchcompare -only consume -rounds 9
//
// The broker runs in a child process, and so does every client run (this
// same executable, started again with BENCHCOMPARE_ROLE set), so that each
// run's CPU time, allocations and peak RSS are its client's alone.
package main

import "github.com/gokstreams/kstreams/integration/internal/bench"

func main() { bench.Main() }
