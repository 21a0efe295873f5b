// Package examples_test runs every example program the way a user does:
// built, started with KAFKA_BROKERS and SCHEMA_REGISTRY_URL unset (so on the
// embedded cluster and schema registry), with a timeout, checking its exit
// status and a line of its output. Each example's own test checks its
// behaviour in detail; this one checks that the programs, main included,
// run.
package examples_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// want is a line each example prints when it did its job.
var want = map[string]string{
	"avro":                "both readers read all 4 orders (2 written with v1, 2 with v2) and skipped the 1 record not written through the registry",
	"backfill":            "engine stopped by itself after",
	"backpressure":        "all 40 readings delivered in order, each once",
	"batches":             "committed readings/0: 17 (end 17)",
	"consumer-behaviour":  "latest consumed: [after-1]",
	"crashing-stream":     "retry-group on local--kstreams: 3",
	"dead-letter":         "all 6 payments handled: 3 processed, 3 dead-lettered",
	"engine-decorator":    "engine stopped after 3 events",
	"exactly-once":        "read_committed reader: 10 receipts, exactly one per order",
	"graceful-shutdown":   "committed offset of jobs/0: 1",
	"initial-offsets-db":  "database: next offset of local--kstreams/0 is 6",
	"json":                "read 3 orders equal to those sent and 2 decode errors",
	"manual-commit":       "all 10 payments stored once each",
	"metrics":             "after Stop, kstreams_lag series: 0",
	"protobuf":            "both readers read all 4 orders (2 written with v1, 2 with v2) and skipped the refund, a message of another type",
	"quickstart":          "consumed 10 orders",
	"rebalance-listeners": "committed events/3: 110 (end 110)",
	"remove-stream":       "committed: 5, end: 5, lag: 0",
	"secure-cluster":      "handled all 3 records over the secured connection",
	"share-group":         "rejected once and never delivered again",
	"several-topics":      "consumed 3 events of local--hello-world",
	"stream-instance":     "decoded 3 people, rejected 1 record(s)",
	"topic-pattern":       "consumed from local--events-b: [b1]",
	"tracing":             "one trace: checkout > process orders > process shipments",
	"transform":           `"receipts" holds 10 receipts`,
	"yield-sse":           "server: streams opened 1, closed 1",
}

func TestEveryExampleRuns(t *testing.T) {
	dirs, err := filepath.Glob("*/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != len(want) {
		t.Errorf("%d examples, %d expectations: every example needs a line in want", len(dirs), len(want))
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(os.PathSeparator), "./...")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./...: %v\n%s", err, out)
	}
	for _, d := range dirs {
		name := filepath.Dir(d)
		t.Run(name, func(t *testing.T) {
			line, ok := want[name]
			if !ok {
				t.Fatalf("no expected output for example %q", name)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(bin, name))
			cmd.Env = append(os.Environ(), "KAFKA_BROKERS=", "SCHEMA_REGISTRY_URL=")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", name, err, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), line) {
				t.Fatalf("%s did not print %q; stdout:\n%s", name, line, stdout.String())
			}
		})
	}
}
