package main

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBatches runs the program against the embedded cluster and checks the
// batches it reports: never empty and never over max; full batches while
// records were waiting in the topic; the late records in one short batch
// yielded no sooner than the wait; every reading in exactly one batch; and,
// for HandleBatches, commits at the ends of the partitions.
func TestBatches(t *testing.T) {
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
	getmany, engine, ok := strings.Cut(got, "HandleBatches(")
	if !ok {
		t.Fatal("no HandleBatches part")
	}

	seen := map[string]map[string]int{"records": {}, "rows": {}}
	seqLists := regexp.MustCompile(`seq \[([\d ]*)\]`)
	// sizes returns the sizes of the batches reported in part, checking each
	// against the sequence numbers listed with it.
	sizes := func(part, what string) []int {
		var out []int
		for _, m := range regexp.MustCompile(`batch of +(\d+) `+what+`: (.*)`).FindAllStringSubmatch(part, -1) {
			n, _ := strconv.Atoi(m[1])
			listed := 0
			for _, l := range seqLists.FindAllStringSubmatch(m[2], -1) {
				for _, f := range strings.Fields(l[1]) {
					listed++
					seen[what][f]++
				}
			}
			if listed != n {
				t.Errorf("batch of %d lists %d readings: %s", n, listed, m[0])
			}
			out = append(out, n)
		}
		return out
	}
	check := func(name string, got []int, max int) {
		sum, full := 0, 0
		for _, n := range got {
			if n < 1 || n > max {
				t.Errorf("%s: batch of %d, want 1..%d", name, n, max)
			}
			if n == max {
				full++
			}
			sum += n
		}
		if sum != first+late {
			t.Errorf("%s: batches %v hold %d readings, want %d", name, got, sum, first+late)
		}
		if full == 0 {
			t.Errorf("%s: no full batch in %v", name, got)
		}
	}

	before, after, ok := strings.Cut(getmany, "produced 3 more readings")
	if !ok {
		t.Fatal("no late produce")
	}
	if s := sizes(after, "records"); len(s) != 1 || s[0] != late {
		t.Errorf("late readings came in batches %v, want one of %d", s, late)
	}
	if s := sizes(before, "records"); len(s) == 0 || s[0] != 10 {
		t.Errorf("first batches %v: want the first full (10)", s)
	}
	clear(seen["records"]) // count each batch once, over the whole part
	check("Batches", sizes(getmany, "records"), 10)
	m := regexp.MustCompile(`yielded (\S+) after the produce`).FindStringSubmatch(after)
	if m == nil {
		t.Fatal("no delay reported for the late batch")
	}
	if d, err := time.ParseDuration(m[1]); err != nil || d < 250*time.Millisecond {
		t.Errorf("late batch yielded after %s, want at least the 250ms wait", m[1])
	}

	check("HandleBatches", sizes(engine, "rows"), 8)
	for what, counts := range seen {
		for seq := range first + late {
			if n := counts[strconv.Itoa(seq)]; n != 1 {
				t.Errorf("reading %d in %d batches of %s, want 1", seq, n, what)
			}
		}
	}
	if !strings.Contains(engine, "33 rows inserted") {
		t.Error("not every row inserted")
	}
	committed := 0
	for _, m := range regexp.MustCompile(`committed readings/\d: (\d+) \(end (\d+)\)`).FindAllStringSubmatch(engine, -1) {
		if m[1] != m[2] {
			t.Errorf("committed %s, end %s", m[1], m[2])
		}
		n, _ := strconv.Atoi(m[1])
		committed += n
	}
	if committed != first+late {
		t.Errorf("committed offsets add up to %d, want %d", committed, first+late)
	}
}
