package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestJSON runs the program against the embedded cluster and checks that the
// typed orders came back equal to those sent, and that each malformed value
// was reported as a *kstream.DecodeError at its own offset with the
// encoding/json cause, without stopping the stream.
func TestJSON(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"received order 1 from orders/0@0: customer ada, 1 items, total 25.00, placed 2025-03-14T09:26:53Z",
		"received order 2 from orders/0@1: customer grace, 2 items, total 19.90",
		"decode error at orders/0@2: codec: JSON decode into main.Order:",
		"cause: *json.SyntaxError",
		"decode error at orders/0@3: codec: JSON decode into main.Order:",
		`cause: *json.UnmarshalTypeError: field "id" wants int, got a JSON string`,
		// The record after the bad ones is still read.
		"received order 5 from orders/0@4: customer barbara, 1 items, total 39.99",
		"read 3 orders equal to those sent and 2 decode errors",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}
