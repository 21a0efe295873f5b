package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestProtobuf runs the program on the embedded cluster and registry and
// checks the evolution both ways: v1 records read by the generated v2 type
// with the new fields empty, v2 records read by the v1 (dynamic) type with
// the new fields kept as unknown fields, and the refund reported to both
// streams as a decode error naming its message, without stopping them.
func TestProtobuf(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	t.Setenv("SCHEMA_REGISTRY_URL", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"v2 reader: order 1 of ada, 2500 cents EUR (not set), tags [] (written with schema v1)",
		"v2 reader: order 3 of linus, 1200 cents USD, tags [gift] (written with schema v2)",
		"v1 reader: order 3 of linus, 1200 cents, 11 bytes of fields it does not know kept (written with schema v2)",
		`decode error at orders/0@4: schemaregistry: Protobuf decode, subject "orders-value", schema ID 2: writer's schema does not resolve against the reader's: message indexes [1] name message shop.Refund`,
		"both readers read all 4 orders (2 written with v1, 2 with v2) and skipped the refund, a message of another type",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}
