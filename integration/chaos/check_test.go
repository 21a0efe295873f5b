package chaos

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// killRecord is what the suite knew when it killed a member: which member,
// and the group's committed offsets read just before the kill. The member
// committed nothing after it died, and offsets never go backwards (the
// commit monitor checks it), so the member that takes over a partition
// starts at or after that commit: a record the dead member processed below
// it cannot be processed again.
type killRecord struct {
	victim    int
	committed map[int32]int64
}

// verdict is what the invariant check found.
type verdict struct {
	produced   int64
	lost       int64
	duplicated int64 // extra processings: a record processed 3 times counts 2
	bound      int64 // records the killed members had processed at or after the commit before their kill
	lostList   []string
	dupList    []string
	unexplain  []string // duplicates no kill accounts for
}

// verify checks what the members processed against what was produced.
//
// end holds, per partition, the offset after the last record: every offset
// below it must have been processed (no loss). A record processed more than
// once is a duplicate; each extra processing must be accounted for by a
// kill whose victim had processed the record at or after the offset
// committed before the kill (so the kill left it uncommitted). With no
// kills, that means no duplicate at all.
func verify(end map[int32]int64, processed map[int][]pos, kills []killRecord) verdict {
	var v verdict
	count := make(map[pos]int)
	for _, recs := range processed {
		for _, r := range recs {
			count[r]++
		}
	}
	for _, p := range slices.Sorted(maps.Keys(end)) {
		v.produced += end[p]
		var gapStart int64 = -1
		flush := func(to int64) {
			if gapStart >= 0 {
				v.lostList = append(v.lostList, fmt.Sprintf("%d@%d-%d", p, gapStart, to))
				gapStart = -1
			}
		}
		for o := int64(0); o < end[p]; o++ {
			if count[pos{p, o}] == 0 {
				v.lost++
				if gapStart < 0 {
					gapStart = o
				}
				continue
			}
			flush(o - 1)
		}
		flush(end[p] - 1)
	}

	// For each kill, the victim's records at or after the commit it died
	// with: what the kill may make the group process again.
	uncommitted := make(map[pos]int)
	for _, k := range kills {
		for _, r := range processed[k.victim] {
			if c, ok := k.committed[r.p]; !ok || r.o >= c {
				uncommitted[r]++
				v.bound++
			}
		}
	}
	dups := make([]pos, 0)
	for r, n := range count {
		if n > 1 {
			dups = append(dups, r)
		}
	}
	slices.SortFunc(dups, func(a, b pos) int {
		if a.p != b.p {
			return int(a.p - b.p)
		}
		return int(a.o - b.o)
	})
	for _, r := range dups {
		extra := count[r] - 1
		v.duplicated += int64(extra)
		if len(v.dupList) < 20 {
			v.dupList = append(v.dupList, fmt.Sprintf("%d@%d×%d", r.p, r.o, count[r]))
		}
		if extra > uncommitted[r] && len(v.unexplain) < 20 {
			v.unexplain = append(v.unexplain, fmt.Sprintf("%d@%d processed %d times by members %v; kills leaving it uncommitted: %d",
				r.p, r.o, count[r], whoProcessed(processed, r), uncommitted[r]))
		}
	}
	return v
}

func whoProcessed(processed map[int][]pos, r pos) []int {
	var ids []int
	for _, id := range slices.Sorted(maps.Keys(processed)) {
		if slices.Contains(processed[id], r) {
			ids = append(ids, id)
		}
	}
	return ids
}

// assert reports the verdict on t: loss always fails; duplicates fail when
// graceful (no kills) or when no kill accounts for them.
func (v verdict) assert(t testing.TB, graceful bool) {
	t.Helper()
	if v.lost > 0 {
		t.Errorf("LOSS: %d of %d produced records never processed: %s", v.lost, v.produced, firstN(v.lostList, 20))
	}
	if graceful && v.duplicated > 0 {
		t.Errorf("DUPLICATES with graceful leaves only: %d extra processings: %s", v.duplicated, strings.Join(v.dupList, " "))
	}
	if !graceful && len(v.unexplain) > 0 {
		t.Errorf("DUPLICATES not accounted for by a kill (%d extra processings in all, bound %d):\n%s",
			v.duplicated, v.bound, strings.Join(v.unexplain, "\n"))
	}
}

func firstN(list []string, n int) string {
	if len(list) > n {
		return strings.Join(list[:n], " ") + fmt.Sprintf(" ... (%d ranges)", len(list))
	}
	return strings.Join(list, " ")
}
