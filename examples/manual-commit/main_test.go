package main

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestManualCommit runs the program against the embedded cluster and checks
// what it reports: after each run the committed offset of every partition is
// the number of payments stored there; the payment the database refused was
// not committed and was the first record of its partition on restart; in the
// end every payment was stored exactly once.
func TestManualCommit(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	defer func() {
		if t.Failed() {
			t.Logf("output:\n%s", got)
		}
	}()

	run1, run2, ok := strings.Cut(got, "run 2:")
	if !ok {
		t.Fatal("no second run")
	}

	// Payment 7 is the fourth payment of partition 1 (payments 1, 3, 5, 7,
	// 9), so offset 3.
	if !strings.Contains(run1, "payment 7 (payments/1@3) was not stored and is not committed: the group's next offset there is still 3") {
		t.Error("run 1 does not report payment 7 uncommitted at offset 3")
	}
	if strings.Contains(run1, "stored payment 7") {
		t.Error("run 1 stored payment 7")
	}
	if !strings.Contains(run2, "first record of payments/1: offset 3 (payment 7)") {
		t.Error("run 2 does not start partition 1 with payment 7")
	}
	if n := strings.Count(got, "stored payment 7 "); n != 1 {
		t.Errorf("payment 7 stored %d times, want once", n)
	}
	for id := 1; id <= payments; id++ {
		if n := strings.Count(got, "stored payment "+strconv.Itoa(id)+" "); n != 1 {
			t.Errorf("payment %d stored %d times, want once", id, n)
		}
	}

	// Every report pairs a committed offset with the stored offsets 0..n-1.
	re := regexp.MustCompile(`payments/(\d): committed offset (\d+), stored offsets \[([\d ]*)\]`)
	for i, part := range []string{run1, run2} {
		ms := re.FindAllStringSubmatch(part, -1)
		if len(ms) != partitions {
			t.Fatalf("run %d: %d partition reports, want %d", i+1, len(ms), partitions)
		}
		for _, m := range ms {
			committed, _ := strconv.Atoi(m[2])
			stored := strings.Fields(m[3])
			if committed != len(stored) {
				t.Errorf("run %d: partition %s committed %d with %d stored", i+1, m[1], committed, len(stored))
			}
			if i == 1 && committed != payments/partitions {
				t.Errorf("after run 2, partition %s committed %d, want %d", m[1], committed, payments/partitions)
			}
		}
	}
	if !strings.Contains(got, "all 10 payments stored once each; committed offsets are the ends of the partitions") {
		t.Error("no final summary")
	}
}
