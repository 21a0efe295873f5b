package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// TestSeveralTopics runs the program against the embedded cluster and
// checks that the one stream consumed every event of both topics, each
// topic's in order, tagged with the topic it came from, and committed on
// both.
func TestSeveralTopics(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	byTopic := make(map[string][]string)
	re := regexp.MustCompile(`Event consumed from topic (\S+): headers: \[n=(\d)\], payload: (.*)`)
	for _, m := range re.FindAllStringSubmatch(got, -1) {
		if want := strings.TrimPrefix(m[1], "local--") + " event " + m[2]; m[3] != want {
			t.Errorf("topic %s, header n=%s: payload %q, want %q", m[1], m[2], m[3], want)
		}
		byTopic[m[1]] = append(byTopic[m[1]], m[2])
	}
	for _, topic := range []string{"local--kstreams", "local--hello-world"} {
		if got := strings.Join(byTopic[topic], ","); got != "1,2,3" {
			t.Errorf("events of %s consumed: %s, want 1,2,3", topic, got)
		}
		want := `consumed 3 events of ` + topic + `; group "example-group" committed ` + topic + `/0 at offset 3`
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}
