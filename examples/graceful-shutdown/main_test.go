package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// checkOutput checks what every run must report: job 1 started and finished,
// jobs 2 and 3 never started, and offset 1 committed.
func checkOutput(t *testing.T, got, what string) {
	t.Helper()
	for _, want := range []string{
		"job 1: started (offset 0)\n",
		"job 1: finished\n",
		"eng.Run returned ",
		"job 1 finished ",
		"after " + what + ", before Run returned\n",
		"committed offset of jobs/0: 1 ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// The stop came while job 1 was in flight, and Run returned after it
	// finished.
	iStop := strings.Index(got, "job 1: started")
	iDone := strings.Index(got, "job 1: finished")
	iRun := strings.Index(got, "eng.Run returned")
	if !(iStop < iDone && iDone < iRun) {
		t.Errorf("want job 1 started, finished, then Run returned, in that order")
	}
	for _, job := range []string{"job 2", "job 3"} {
		if strings.Contains(got, job+":") {
			t.Errorf("%s was started after the stop", job)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}

// TestShutdown cancels the engine's context while job 1 is in flight, as the
// signal does in the program, without signalling the test process.
func TestShutdown(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	err := shutdownDemo(ctx, &out, "the cancel", func() error { cancel(); return nil })
	if err != nil {
		t.Fatalf("shutdownDemo: %v\noutput:\n%s", err, out.String())
	}
	checkOutput(t, out.String(), "the cancel")
	if d := time.Since(start); d < jobTime {
		t.Errorf("returned after %v, before job 1 could finish", d)
	}
}

// TestSignal runs the program's main in a child process, which sends
// itself a real SIGTERM; the test process is not signalled.
func TestSignal(t *testing.T) {
	if os.Getenv("GRACEFUL_SHUTDOWN_CHILD") == "1" {
		t.Skip("in the child process, TestChildMain runs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestChildMain$")
	cmd.Env = append(os.Environ(), "GRACEFUL_SHUTDOWN_CHILD=1", "KAFKA_BROKERS=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	got := stdout.String()
	if !strings.Contains(got, "sending SIGTERM to this process\n") ||
		!strings.Contains(got, "(ctx: terminated signal received)") {
		t.Errorf("the child did not stop on its SIGTERM:\n%s", got)
	}
	checkOutput(t, got, "SIGTERM")
}

// TestChildMain is main, run by TestSignal in a child process.
func TestChildMain(t *testing.T) {
	if os.Getenv("GRACEFUL_SHUTDOWN_CHILD") != "1" {
		t.Skip("run by TestSignal in a child process")
	}
	main()
}
