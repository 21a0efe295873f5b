package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestBackfill runs the program against the embedded cluster and checks
// that the engine returned by itself once the bounded stream finished, and
// that the database holds exactly the events of the window.
func TestBackfill(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"produced 48 events over 3 partitions",
		"engine stopped by itself after",
		`stream "backfill" is finished`,
		"database: 12 events, from",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}
