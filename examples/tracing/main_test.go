package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestTracing runs the program against the embedded cluster and checks the
// spans it exported to its output: one trace where the orders stream's
// process span is a child of the checkout span through the order's
// traceparent header, and the shipments stream's a child of the orders
// one through the header the handler's Send wrote.
func TestTracing(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	type spanContext struct{ TraceID, SpanID string }
	type span struct {
		Name        string
		SpanContext spanContext
		Parent      struct {
			spanContext
			Remote bool
		}
		SpanKind   int
		Attributes []struct {
			Key   string
			Value struct{ Value any }
		}
	}
	byName := map[string]span{}
	for _, line := range strings.Split(out.String(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var s span
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("span %q: %v", line, err)
		}
		byName[s.Name] = s
	}
	checkout, orders, shipments := byName["checkout"], byName["process orders"], byName["process shipments"]
	if checkout.Name == "" || orders.Name == "" || shipments.Name == "" {
		t.Fatalf("spans exported: %v\noutput:\n%s", byName, out.String())
	}
	for _, s := range []span{orders, shipments} {
		if s.SpanContext.TraceID != checkout.SpanContext.TraceID || !s.Parent.Remote {
			t.Fatalf("span %q: trace %s, remote parent %v; checkout's trace %s", s.Name, s.SpanContext.TraceID, s.Parent.Remote, checkout.SpanContext.TraceID)
		}
		attrs := map[string]any{}
		for _, a := range s.Attributes {
			attrs[a.Key] = a.Value.Value
		}
		if attrs["messaging.system"] != "kafka" || attrs["messaging.operation.type"] != "process" {
			t.Fatalf("span %q attributes %v", s.Name, attrs)
		}
	}
	if orders.Parent.SpanID != checkout.SpanContext.SpanID || shipments.Parent.SpanID != orders.SpanContext.SpanID {
		t.Fatalf("parents: orders %s (checkout %s), shipments %s (orders %s)",
			orders.Parent.SpanID, checkout.SpanContext.SpanID, shipments.Parent.SpanID, orders.SpanContext.SpanID)
	}
	if !strings.Contains(out.String(), "one trace: checkout > process orders > process shipments") {
		t.Fatalf("no tree in the output:\n%s", out.String())
	}
}
