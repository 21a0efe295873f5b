package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestEngineDecorator runs the program against the embedded cluster and
// checks that the handler saw each event once, in order, with its headers,
// and that the group's commit covers all of them.
func TestEngineDecorator(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	var consumed []string
	for _, line := range strings.Split(got, "\n") {
		if strings.HasPrefix(line, "Event consumed: ") {
			consumed = append(consumed, line)
		}
	}
	want := []string{
		"Event consumed: headers: [event-id=1], payload: Hi 1",
		"Event consumed: headers: [event-id=2], payload: Hi 2",
		"Event consumed: headers: [event-id=3], payload: Hi 3",
	}
	if strings.Join(consumed, "\n") != strings.Join(want, "\n") {
		t.Fatalf("consumed lines:\n%s\nwant:\n%s\nfull output:\n%s", strings.Join(consumed, "\n"), strings.Join(want, "\n"), got)
	}
	for _, want := range []string{
		"engine stopped after 3 events",
		`group "de-my-partition" committed local--kstreams/0 at offset 3 (end of partition: 3)`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
