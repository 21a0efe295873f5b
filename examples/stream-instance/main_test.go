package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestStreamInstance runs the program against the embedded cluster and
// checks that the custom decoder produced typed values, that the bad record
// was reported as a decode error with its offset, and that the stream went
// on after it.
func TestStreamInstance(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"Event consumed: headers: [content-type=text/name-age n=1], payload: {Name:ada Age:36}\n",
		"Event consumed: headers: [content-type=text/name-age n=2], payload: {Name:grace Age:45}\n",
		`skipped local--kstreams/0 offset 2: want name:age, got "not a person"` + "\n",
		"Event consumed: headers: [content-type=text/name-age n=4], payload: {Name:linus Age:28}\n",
		"decoded 3 people, rejected 1 record(s)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// Offset order within the partition: the record after the bad one
	// comes after the report of the bad one.
	if i, j := strings.Index(got, "offset 2:"), strings.Index(got, "{Name:linus"); i < 0 || j < i {
		t.Errorf("linus (offset 3) was not consumed after the bad record (offset 2)")
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}
