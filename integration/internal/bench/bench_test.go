package bench

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the harness's children: the
// harness starts its own executable again for the broker and for each
// client run.
func TestMain(m *testing.M) {
	MaybeChild()
	os.Exit(m.Run())
}

// TestEveryClientGetsEveryRecord runs the whole harness once, small: every
// consumer must consume exactly the topic's records, each once (the child
// checks offsets per partition), and every producer must have exactly its
// records acknowledged and in its topic (the parent checks end offsets).
func TestEveryClientGetsEveryRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker and a child process per client run")
	}
	const records, syncRecords = 600, 40
	var log strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{
		Records:      records,
		SyncRecords:  syncRecords,
		ScaleRecords: records,
		Sizes:        []int{64},
		Partitions:   3,
		Rounds:       1,
		Batch:        100,
		Timeout:      time.Minute,
		Log:          &log,
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	if len(rep.Tables) != len(Scenarios) {
		t.Fatalf("%d tables, want %d", len(rep.Tables), len(Scenarios))
	}
	for _, tab := range rep.Tables {
		want := records
		if tab.Scenario == scenarioProduceSync {
			want = syncRecords
		}
		ids := clientIDs(tab.Scenario)
		if !kcatAvailable() { // left out, with a note in the table
			ids = slices.DeleteFunc(ids, external)
		}
		if len(tab.Rows) != len(ids) {
			t.Errorf("%s: %d clients ran, want %d", tab.Scenario, len(tab.Rows), len(ids))
		}
		for _, r := range tab.Rows {
			if r.Failed > 0 || r.Runs != 1 {
				t.Errorf("%s %s: %d of %d runs failed: %v", tab.Scenario, r.ID, r.Failed, r.Runs, r.Errors)
				continue
			}
			for _, n := range r.Consumed {
				if n != int64(want) {
					t.Errorf("%s %s: %d records, want %d", tab.Scenario, r.ID, n, want)
				}
			}
			if r.RecPerSec <= 0 || r.RSSMiB <= 0 || (!r.External && (r.AllocsPerRec <= 0 || r.HeapMiB <= 0)) {
				t.Errorf("%s %s: missing measurements: %+v", tab.Scenario, r.ID, r)
			}
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("harness log:\n%s", log.String())
	}
	var md strings.Builder
	rep.WriteMarkdown(&md)
	if !strings.Contains(md.String(), "| kstream Records |") {
		t.Errorf("report lacks the kstream Records row:\n%s", md.String())
	}
}

func TestSelection(t *testing.T) {
	for _, tc := range []struct {
		only []string
		sc   string
		want string
	}{
		{nil, scenarioConsume, "franz-go,franz-go-last,kstream-records,kstream-handle,kafka-go,sarama,kcat,franz-go-count,kstream-records-nogroup,kstream-handle-nogroup,kcat-nogroup"},
		{[]string{"kstream-records-nogroup"}, scenarioConsume, "franz-go,franz-go-count,kstream-records-nogroup"},
		{[]string{"produce-async/kcat"}, scenarioProduceAsync, "franz-go,kcat"},
		{[]string{"consume"}, scenarioProduceSync, ""},
		{[]string{"sarama"}, scenarioConsume, "franz-go,sarama"},
		{[]string{"consume", "sarama"}, scenarioProduceBatch, ""},
		{[]string{"consume", "sarama"}, scenarioConsume, "franz-go,sarama"},
		{[]string{"produce-async/kafka-go"}, scenarioProduceAsync, "franz-go,kafka-go"},
		{[]string{"produce-async/kafka-go"}, scenarioConsume, ""},
		{[]string{"kstream-producer"}, scenarioProduceAsync, "franz-go,kstream-producer"},
		{[]string{"kstream-producer"}, scenarioConsume, ""},
	} {
		sel, err := newSelection(tc.only)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(sel.pick(tc.sc), ","); got != tc.want {
			t.Errorf("-only %v, %s: got %q, want %q", tc.only, tc.sc, got, tc.want)
		}
	}
	if _, err := newSelection([]string{"nope"}); err == nil {
		t.Error("-only nope: no error")
	}
}

// TestMedianCI checks the interval's order statistics against the binomial
// tails worked out by hand: P(B ≤ 3) = 0.018 and P(B ≤ 4) = 0.059 for 15
// rounds, P(B ≤ 5) = 0.021 and P(B ≤ 6) = 0.058 for 20, 1/64 for 6 and
// 1/32 for 5 (too few).
func TestMedianCI(t *testing.T) {
	for _, tc := range []struct {
		n      int
		lo, hi float64
		ok     bool
	}{
		{15, 4, 12, true},
		{20, 6, 15, true},
		{6, 1, 6, true},
		{5, 0, 0, false},
		{0, 0, 0, false},
	} {
		xs := make([]float64, tc.n)
		for i := range xs {
			xs[i] = float64(tc.n - i) // 1..n, reversed: medianCI sorts
		}
		lo, hi, ok := medianCI(xs)
		if lo != tc.lo || hi != tc.hi || ok != tc.ok {
			t.Errorf("n=%d: got %v–%v ok=%v, want %v–%v ok=%v", tc.n, lo, hi, ok, tc.lo, tc.hi, tc.ok)
		}
	}
}

// TestRoundOrder checks that over the rounds every client runs first in
// some round and after more than one neighbour.
func TestRoundOrder(t *testing.T) {
	ids := []string{"a", "b", "c", "d"}
	first := map[string]bool{}
	after := map[string]map[string]bool{}
	for round := range 8 {
		order := roundOrder(ids, round)
		if len(order) != len(ids) {
			t.Fatalf("round %d: order %v", round, order)
		}
		first[order[0]] = true
		for i := 1; i < len(order); i++ {
			if after[order[i]] == nil {
				after[order[i]] = map[string]bool{}
			}
			after[order[i]][order[i-1]] = true
		}
	}
	if len(first) != len(ids) {
		t.Errorf("first in the rounds: %v, want every client", first)
	}
	for _, id := range ids {
		if len(after[id]) < 2 {
			t.Errorf("%s ran after %v only", id, after[id])
		}
	}
}

// TestVerdict checks that a target is met only when the median's interval
// lies at or above it, and missed only when the interval lies below.
func TestVerdict(t *testing.T) {
	rounds := func(from float64) []float64 { // 15 rounds: from, from+0.01, ...
		xs := make([]float64, 15)
		for i := range xs {
			xs[i] = from + float64(i)/100
		}
		return xs
	}
	for _, tc := range []struct {
		rs   []float64
		want string
	}{
		{rounds(0.95), "MET"},          // interval 0.98–1.06
		{rounds(0.80), "NOT MET"},      // 0.83–0.91
		{rounds(0.88), "AT THE LINE"},  // 0.91–0.99
		{[]float64{0.96, 0.97}, "MET"}, // no interval: the median decides
		{[]float64{0.90, 0.91}, "NOT MET"},
	} {
		if got := verdict(tc.rs, 0.95); !strings.HasPrefix(got, tc.want) { // "NOT MET" does not begin with "MET"
			t.Errorf("verdict(%v) = %q, want %s", tc.rs, got, tc.want)
		}
	}
}

// TestClientIDsIsACopy checks that a caller changing the slice clientIDs
// returned does not change the next call's.
func TestClientIDsIsACopy(t *testing.T) {
	ids := clientIDs(scenarioConsume)
	want := strings.Join(ids, ",")
	ids[0] = "changed"
	if got := strings.Join(clientIDs(scenarioConsume), ","); got != want {
		t.Errorf("clientIDs after a caller changed its slice: %s, want %s", got, want)
	}
}
