package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestTopicPattern runs the program against the embedded cluster and checks
// that the stream consumed the matching topic it started with, was assigned
// and consumed the matching topic created while it ran, and never read the
// topic that does not match.
func TestTopicPattern(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	// In the order the program reports them.
	want := []string{
		"assigned: map[local--events-a:[0]]",
		"Event consumed from topic local--events-a: payload: a1",
		"Event consumed from topic local--events-a: payload: a2",
		"created local--events-b and sent b1 to it",
		"assigned: map[local--events-b:[0]]",
		"Event consumed from topic local--events-b: payload: b1",
		"consumed from local--events-a: [a1 a2]",
		"consumed from local--events-b: [b1]",
		"consumed from local--other: []",
	}
	rest := got
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("output lacks %q after the facts before it:\n%s", w, got)
		}
		rest = rest[i+len(w):]
	}
	if strings.Contains(got, "topic local--other") {
		t.Errorf("the stream consumed from local--other, which does not match:\n%s", got)
	}
}
