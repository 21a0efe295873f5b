package chaos

import "testing"

// The invariant checker itself, on hand-made histories.
func TestVerify(t *testing.T) {
	end := map[int32]int64{0: 4, 1: 2}
	for _, tc := range []struct {
		name      string
		processed map[int][]pos
		kills     []killRecord
		lost, dup int64
		bound     int64
		explained bool
	}{
		{
			name:      "each once",
			processed: map[int][]pos{1: {{0, 0}, {0, 1}, {1, 0}}, 2: {{0, 2}, {0, 3}, {1, 1}}},
			explained: true,
		},
		{
			name:      "a gap is loss",
			processed: map[int][]pos{1: {{0, 0}, {0, 3}, {1, 0}, {1, 1}}},
			lost:      2, explained: true,
		},
		{
			name:      "a repeat without a kill is unexplained",
			processed: map[int][]pos{1: {{0, 0}, {0, 1}, {0, 2}, {0, 3}, {1, 0}, {1, 1}}, 2: {{0, 2}}},
			dup:       1,
		},
		{
			name: "a repeat at or after the commit the victim died with is explained",
			processed: map[int][]pos{
				1: {{0, 0}, {0, 1}, {0, 2}, {1, 0}},         // killed with 0 committed up to 1
				2: {{0, 1}, {0, 2}, {0, 3}, {1, 0}, {1, 1}}, // took over from the commit
			},
			kills: []killRecord{{victim: 1, committed: map[int32]int64{0: 1, 1: 0}}},
			dup:   3, bound: 3, explained: true,
		},
		{
			name: "a repeat below the commit the victim died with is not",
			processed: map[int][]pos{
				1: {{0, 0}, {0, 1}, {0, 2}, {0, 3}, {1, 0}, {1, 1}},
				2: {{0, 0}},
			},
			kills: []killRecord{{victim: 1, committed: map[int32]int64{0: 2, 1: 2}}},
			dup:   1, bound: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := verify(end, tc.processed, tc.kills)
			if v.produced != 6 || v.lost != tc.lost || v.duplicated != tc.dup || v.bound != tc.bound || (len(v.unexplain) == 0) != tc.explained {
				t.Errorf("verify = produced %d, lost %d, duplicated %d, bound %d, unexplained %q; want 6, %d, %d, %d, explained %v",
					v.produced, v.lost, v.duplicated, v.bound, v.unexplain, tc.lost, tc.dup, tc.bound, tc.explained)
			}
		})
	}
}
