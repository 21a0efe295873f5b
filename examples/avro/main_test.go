package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestAvro runs the program on the embedded cluster and registry and
// checks the evolution both ways: v1 records read by the v2 stream with
// v2's defaults, v2 records read by the v1 stream with the new fields
// dropped, and the record written without the registry reported as a
// decode error naming the subject, without stopping either stream.
func TestAvro(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	t.Setenv("SCHEMA_REGISTRY_URL", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"v2 reader: order 1 of ada, 25.00 EUR, coupon none (written with schema v1)",
		"v2 reader: order 3 of linus, 12.00 USD, coupon SPRING (written with schema v2)",
		"v1 reader: order 3 of linus, 12.00 (written with schema v2)",
		`decode error at orders/0@4: schemaregistry: Avro decode, subject "orders-value": wrong magic byte`,
		"both readers read all 4 orders (2 written with v1, 2 with v2) and skipped the 1 record not written through the registry",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if n := strings.Count(got, "decode error at orders/0@4"); n != 2 {
		t.Errorf("%d decode errors reported, want one per stream", n)
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}
