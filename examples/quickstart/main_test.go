package main

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestQuickstart runs the program against the embedded cluster and checks
// what it reports: all ten orders, their total, and commits covering them.
func TestQuickstart(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	total := 0.0
	for i := 1; i <= nOrders; i++ {
		total += float64(i)*12.5 + 0.99
	}
	want := "consumed 10 orders, total " + strconv.FormatFloat(total, 'f', 2, 64)
	if !strings.Contains(got, want) {
		t.Fatalf("output lacks %q:\n%s", want, got)
	}
	committed := 0
	for _, m := range regexp.MustCompile(`orders/\d+: (\d+)`).FindAllStringSubmatch(got, -1) {
		n, _ := strconv.Atoi(m[1])
		committed += n
	}
	if committed != nOrders {
		t.Fatalf("committed offsets add up to %d, want %d:\n%s", committed, nOrders, got)
	}
}
