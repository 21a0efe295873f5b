package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestCrashingStream runs the program against the embedded cluster and
// checks the crash log, that the crashed stream consumed nothing after the
// bad record (and did not commit it), that the healthy stream went on, and
// that the restarted stream saved the failed record on its second delivery.
func TestCrashingStream(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		// ErrorPolicyStop: the crash is logged with the panic and where it happened.
		`level=ERROR msg="stream crashed" engine=my-stream-engine stream=crashing topics=local--kstreams err="kstream: panic: runtime error: index out of range [1] with length 1" policy=stop stack="parsePerson (main.go:`,
		"crashing: Event consumed. Payload ada is 36\n",
		// The other stream goes on after the crash.
		`sent "hello 2" to local--hello-world after the crash`,
		"healthy: Event consumed. Payload hello 2\n",
		// ErrorPolicyRestart: the failed record is delivered again.
		`msg="stream crashed" engine=my-stream-engine stream=retrying topics=local--kstreams err="store unavailable, try again" policy=restart`,
		`retrying: saving "Hi" (offset 1), attempt 1: store unavailable, try again`,
		`retrying: saved "Hi" (offset 1), attempt 2`,
		`retrying: saved "grace:45" (offset 2), attempt 1`,
		"  crashing: crashed, restarts 0, last error: panic: runtime error: index out of range [1] with length 1\n",
		"  healthy: running, restarts 0\n",
		"  retrying: running, restarts 1, last error: store unavailable, try again\n",
		// "Hi" was not committed by the crashed stream; everything else was.
		"  de-my-partition on local--kstreams: 1\n",
		"  hello-group on local--hello-world: 2\n",
		"  retry-group on local--kstreams: 3\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(got, "crashing: Event consumed. Payload grace") {
		t.Errorf("the crashed stream consumed the record after the crash")
	}
	if n := strings.Count(got, `stream=crashing`); n != 1 {
		t.Errorf("the crash of the crashing stream was logged %d times, want 1", n)
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}
