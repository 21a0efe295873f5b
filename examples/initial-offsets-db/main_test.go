package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestInitialOffsetsDB runs the program against the embedded cluster and
// checks that the restarted stream resumed at the offset stored in the
// database, that the partition the topic does not have was warned about,
// that every order was stored exactly once, and that Kafka holds no
// commit for the group.
func TestInitialOffsetsDB(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	first, second, ok := strings.Cut(got, "--- second run (restart)")
	if !ok {
		t.Fatalf("no second run:\n%s", got)
	}
	for _, want := range []string{
		"no offsets in the database: starting from the reset policy (earliest)",
		"stored order-1 (offset 0)",
		"stored order-3 (offset 2) and next offset 3",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("first run lacks %q", want)
		}
	}
	if strings.Contains(first, "order-4") {
		t.Errorf("first run stored order-4; it should stop after three")
	}
	for _, want := range []string{
		"resuming from the database: local--kstreams/0 at offset 3",
		`level=WARN msg="initial offset ignored: partition not assigned to this member"`,
		"topic=local--kstreams partition=1 offset=0",
		"stored order-4 (offset 3)",
		"stored order-6 (offset 5) and next offset 6",
		"database: 6 orders stored, 6 distinct offsets (0..5)",
		"database: next offset of local--kstreams/0 is 6",
		`kafka: group "initial-offsets-demo" has 0 committed offsets`,
	} {
		if !strings.Contains(second, want) {
			t.Errorf("second run lacks %q", want)
		}
	}
	// The restarted stream read nothing twice: its first order is order-4.
	if i, j := strings.Index(second, "stored order-"), strings.Index(second, "stored order-4"); i != j {
		t.Errorf("the second run stored something before order-4")
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}
