package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestBackpressure runs the program against the embedded cluster: the slow
// partition is paused and resumed, and both sinks receive every reading of
// their partition, in order, once (run checks it and fails otherwise).
func TestBackpressure(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"paused partition 0 (partition 1 goes on",
		"resumed partition 0",
		"all 40 readings delivered in order, each once",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}
