package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// TestRemoveStream runs the program against the embedded cluster and checks
// that Remove committed what was processed, that nothing was consumed while
// the stream was removed, and that re-adding it consumed exactly the missed
// events.
func TestRemoveStream(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	var payloads []string
	for _, m := range regexp.MustCompile(`Event consumed: offset \d+, payload: (.*)`).FindAllStringSubmatch(got, -1) {
		payloads = append(payloads, m[1])
	}
	if want := "event 1,event 2,event 3,event 4,event 5"; strings.Join(payloads, ",") != want {
		t.Errorf("consumed %v, want each of the five events once, in order", payloads)
	}
	// The sequence of facts, in the order the program reports them.
	want := []string{
		`removed "my-stream"; engine still has it: false`,
		"  committed: 3, end: 3, lag: 0",
		"sent events 4..5",
		"consumed while removed (500ms): 0",
		"  committed: 3, end: 5, lag: 2",
		`added "my-stream" again`,
		"Event consumed: offset 3, payload: event 4",
		"  committed: 5, end: 5, lag: 0",
	}
	rest := got
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("output lacks %q after the facts before it:\n%s", w, got)
		}
		rest = rest[i+len(w):]
	}
}
