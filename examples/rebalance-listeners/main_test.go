package main

import (
	"bytes"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var (
	assignedRe  = regexp.MustCompile(`(?m)^(\w): assigned events \[([\d ]+)\]$`)
	revokedRe   = regexp.MustCompile(`(?m)^(\w): revoked events \[([\d ]+)\]; committed: (.*)$`)
	committedRe = regexp.MustCompile(`events/(\d)=(\d+)`)
	firstRe     = regexp.MustCompile(`(?m)^(\w): first record of events/(\d): offset (\d+)$`)
)

// TestRebalanceListeners runs the program against the embedded cluster and
// checks the callbacks it printed and what they prove: partitions moved from
// a to b and back; each revoke committed what the member had processed on
// the revoked partitions; the next owner started each partition exactly at
// that committed offset; so no record was processed twice, and in the end
// the committed offsets are the ends of the partitions.
func TestRebalanceListeners(t *testing.T) {
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

	phases := splitAll(t, got, "b joins the group", "b leaves the group", "a leaves the group")
	alone, shared, back, end := phases[0], phases[1], phases[2], phases[3]

	if a := assignments(alone, "a"); len(a) != 1 || !slices.Equal(a[0], []int32{0, 1, 2, 3}) {
		t.Errorf("a's first assignment: %v, want all four partitions", a)
	}

	// b joins: a gives up some partitions, b gets exactly those and starts
	// each at the offset a committed before the revoke.
	moved, committed := revoke(t, shared, "a")
	if len(moved) == 0 || len(moved) == partitions {
		t.Fatalf("a revoked %v when b joined, want some but not all partitions", moved)
	}
	if b := assignments(shared, "b"); len(b) != 1 || !slices.Equal(b[0], moved) {
		t.Errorf("b was assigned %v, want what a revoked: %v", b, moved)
	}
	checkFirst(t, shared, "b", moved, committed)

	// b leaves: it commits before its revoke; a gets the partitions back and
	// starts them where b stopped.
	returned, committed := revoke(t, back, "b")
	if !slices.Equal(returned, moved) {
		t.Errorf("b revoked %v on leaving, want %v", returned, moved)
	}
	if a := assignments(back, "a"); len(a) != 1 || !slices.Equal(a[0], moved) {
		t.Errorf("a was assigned %v when b left, want %v", a, moved)
	}
	checkFirst(t, back, "a", moved, committed)

	all, committed := revoke(t, end, "a")
	if !slices.Equal(all, []int32{0, 1, 2, 3}) {
		t.Errorf("a revoked %v on leaving, want all partitions", all)
	}
	for p, off := range committed {
		if off != 110 {
			t.Errorf("a's last revoke: partition %d committed %d, want 110", p, off)
		}
	}
	if !strings.Contains(end, "processed 440 distinct records, 0 of them more than once\n") {
		t.Error("records were processed twice, or not all")
	}
	sum := 0
	for _, m := range regexp.MustCompile(`committed events/\d: (\d+) \(end (\d+)\)`).FindAllStringSubmatch(end, -1) {
		if m[1] != m[2] {
			t.Errorf("committed %s, end %s", m[1], m[2])
		}
		n, _ := strconv.Atoi(m[1])
		sum += n
	}
	if sum != 440 {
		t.Errorf("committed offsets add up to %d, want 440", sum)
	}
}

// splitAll cuts s at each marker, in order.
func splitAll(t *testing.T, s string, markers ...string) []string {
	t.Helper()
	var parts []string
	for _, m := range markers {
		before, after, ok := strings.Cut(s, m)
		if !ok {
			t.Fatalf("output lacks %q", m)
		}
		parts = append(parts, before)
		s = after
	}
	return append(parts, s)
}

// assignments returns the partitions assigned to member in s, per callback.
func assignments(s, member string) [][]int32 {
	var out [][]int32
	for _, m := range assignedRe.FindAllStringSubmatch(s, -1) {
		if m[1] == member {
			out = append(out, ints(m[2]))
		}
	}
	return out
}

// revoke returns the partitions of member's one revoke in s, and the
// committed offsets printed with it.
func revoke(t *testing.T, s, member string) ([]int32, map[int32]int64) {
	t.Helper()
	var found [][]string
	for _, m := range revokedRe.FindAllStringSubmatch(s, -1) {
		if m[1] == member {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d revokes of %s, want 1", len(found), member)
	}
	committed := map[int32]int64{}
	for _, c := range committedRe.FindAllStringSubmatch(found[0][3], -1) {
		p, _ := strconv.Atoi(c[1])
		off, _ := strconv.ParseInt(c[2], 10, 64)
		committed[int32(p)] = off
	}
	ps := ints(found[0][2])
	if len(committed) != len(ps) {
		t.Fatalf("%s's revoke of %v printed commits for %v", member, ps, committed)
	}
	return ps, committed
}

// checkFirst checks that member's first record of each partition in ps is at
// the offset committed for it, and that something had been committed.
func checkFirst(t *testing.T, s, member string, ps []int32, committed map[int32]int64) {
	t.Helper()
	first := map[int32]int64{}
	for _, m := range firstRe.FindAllStringSubmatch(s, -1) {
		if m[1] == member {
			p, _ := strconv.Atoi(m[2])
			off, _ := strconv.ParseInt(m[3], 10, 64)
			first[int32(p)] = off
		}
	}
	for _, p := range ps {
		if committed[p] == 0 {
			t.Errorf("nothing committed for partition %d before its revoke", p)
		}
		if off, ok := first[p]; !ok || off != committed[p] {
			t.Errorf("%s's first record of partition %d: offset %d (seen %v), want the committed %d", member, p, off, ok, committed[p])
		}
	}
}

func ints(s string) []int32 {
	var out []int32
	for _, f := range strings.Fields(s) {
		n, _ := strconv.Atoi(f)
		out = append(out, int32(n))
	}
	return out
}
