package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestTransform runs the program against the embedded cluster and checks
// that every order has its receipt, with the right total, and that the
// group committed every order.
func TestTransform(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	want := []string{`"receipts" holds 10 receipts`, `group "receipts-writer" committed 10 of 10 orders`}
	for i := 1; i <= nOrders; i++ {
		want = append(want, fmt.Sprintf("receipt for order %d (", i))
	}
	want = append(want, "receipt for order 3 (ken): 36.00\n")
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}
