package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestSecureCluster runs the program against the in-process cluster with
// TLS and SASL and checks that the engine's producer and stream connected
// through the options, and that a wrong password and an untrusted
// certificate each failed Start with an error naming what is wrong.
func TestSecureCluster(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"TLS with the run's CA, SASL SCRAM-SHA-256",
		"sent 3 records",
		"handled event-1\nhandled event-2\nhandled event-3\n",
		"handled all 3 records over the secured connection",
	} {
		if !strings.Contains(got, want) {
			t.Fatalf("output lacks %q:\n%s", want, got)
		}
	}
	lines := map[string][]string{
		"wrong password: Start failed":        {"SASL authentication failed", "credentials"},
		"untrusted certificate: Start failed": {"TLS: the broker's certificate is not signed by a trusted authority"},
	}
	for prefix, words := range lines {
		i := strings.Index(got, prefix)
		if i < 0 {
			t.Fatalf("output lacks %q:\n%s", prefix, got)
		}
		line, _, _ := strings.Cut(got[i:], "\n")
		for _, w := range words {
			if !strings.Contains(line, w) {
				t.Errorf("%q lacks %q", line, w)
			}
		}
	}
}
