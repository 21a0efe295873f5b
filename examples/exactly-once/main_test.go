package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestExactlyOnce runs the program against the embedded cluster: the first
// run fails on order 7 and its transaction aborts, the second finishes,
// and a read_committed reader finds exactly one receipt per order (run
// fails otherwise) while the group committed every order.
func TestExactlyOnce(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	for _, w := range []string{
		"then failed on order 7: its open transaction aborted",
		"run 2: transformed ",
		"read_committed reader: 10 receipts, exactly one per order",
		`group "receipts-writer" committed 10 of 10 orders`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}
