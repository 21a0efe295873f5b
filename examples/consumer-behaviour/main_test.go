package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// TestConsumerBehaviour runs the program against the embedded cluster and
// checks the reset policies: the "earliest" group read the events sent
// before it started, the "latest" group did not, and read one sent after.
func TestConsumerBehaviour(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	consumed := make(map[string][]string)
	for _, m := range regexp.MustCompile(`(?m)^(earliest|latest) consumed: \[(.*)\]$`).FindAllStringSubmatch(got, -1) {
		consumed[m[1]] = strings.Fields(m[2])
	}
	earliest, latest := consumed["earliest"], consumed["latest"]
	if len(earliest) < 3 || earliest[0] != "before-1" || earliest[1] != "before-2" || !strings.HasPrefix(earliest[2], "after-") {
		t.Errorf("earliest consumed %v, want before-1, before-2, then what was sent after", earliest)
	}
	if len(latest) == 0 {
		t.Errorf("latest consumed nothing, want the events sent after it joined")
	}
	for _, v := range latest {
		if !strings.HasPrefix(v, "after-") {
			t.Errorf("latest consumed %q, sent before it joined", v)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}
