package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// TestShareGroup runs the program on the embedded cluster: every job is
// handled, the poison one rejected and not delivered again, and more than
// one worker got work from the one partition.
func TestShareGroup(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	if !strings.Contains(got, "all 39 jobs handled by") || !strings.Contains(got, "job-7 rejected once and never delivered again") {
		t.Fatalf("output:\n%s", got)
	}
	if n := len(regexp.MustCompile(`worker-\d handled \d+ jobs`).FindAllString(got, -1)); n < 2 {
		t.Fatalf("%d workers got jobs, want at least 2:\n%s", n, got)
	}
}
