package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestMetricsExample(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(context.Background(), &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		// 20 produced, 11 processed and committed, 12 yielded.
		`kstreams_committed_offset{group="metrics-example",partition="0",stream="orders",topic="orders"} 11`,
		`kstreams_highwater{group="metrics-example",partition="0",stream="orders",topic="orders"} 20`,
		`kstreams_lag{group="metrics-example",partition="0",stream="orders",topic="orders"} 9`,
		`kstreams_position{group="metrics-example",partition="0",stream="orders",topic="orders"} 12`,
		`kstreams_position_lag{group="metrics-example",partition="0",stream="orders",topic="orders"} 8`,
		`kstreams_records_processed_total{stream="orders",topic="orders"} 11`,
		`kstreams_records_sent_total{engine="shop",topic="orders"} 20`,
		`"healthy":true`,
		`"state":"running"`,
		"after Stop, kstreams_lag series: 0",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(got)
	}
}
