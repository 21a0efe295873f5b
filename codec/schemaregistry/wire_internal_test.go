package schemaregistry

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
)

func TestParseHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		id   int
		rest []byte
		err  error
	}{
		{"empty", nil, 0, nil, ErrTruncated},
		{"magic byte only", []byte{0}, 0, nil, ErrTruncated},
		{"four bytes", []byte{0, 1, 2, 3}, 0, nil, ErrTruncated},
		{"wrong magic byte", []byte{1, 0, 0, 0, 1}, 0, nil, ErrMagicByte},
		{"wrong magic byte, short", []byte{'{'}, 0, nil, ErrMagicByte},
		{"header only", []byte{0, 0, 0, 0, 7}, 7, []byte{}, nil},
		{"big endian", []byte{0, 1, 2, 3, 4, 9}, 0x01020304, []byte{9}, nil},
		{"largest ID", []byte{0, 0xff, 0xff, 0xff, 0xff}, math.MaxUint32, []byte{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, rest, err := parseHeader(tc.in)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if id != tc.id || !bytes.Equal(rest, tc.rest) {
				t.Fatalf("parseHeader = %d, % x; want %d, % x", id, rest, tc.id, tc.rest)
			}
		})
	}
}

func TestIndexes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		indexes []int
		wire    []byte
	}{
		{"first message", []int{0}, []byte{0}},
		{"second message", []int{1}, []byte{2, 2}},
		{"nested", []int{0, 2}, []byte{4, 0, 4}},
		{"deep", []int{3, 1, 70}, []byte{6, 6, 2, 0x8c, 0x01}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := appendIndexes(nil, tc.indexes)
			if !bytes.Equal(got, tc.wire) {
				t.Fatalf("appendIndexes(%v) = % x, want % x", tc.indexes, got, tc.wire)
			}
			var ch sr.ConfluentHeader
			ref, _ := ch.AppendEncode(nil, 1, tc.indexes)
			if !bytes.Equal(ref[5:], tc.wire) {
				t.Fatalf("sr.ConfluentHeader writes % x, want % x", ref[5:], tc.wire)
			}
			back, rest, err := parseIndexes(append(got, 'x'), nil)
			if err != nil || !slices.Equal(back, tc.indexes) || string(rest) != "x" {
				t.Fatalf("parseIndexes = %v, %q, %v", back, rest, err)
			}
		})
	}
	// The long form of [0] reads as [0] too.
	if got, _, err := parseIndexes([]byte{2, 0}, nil); err != nil || !slices.Equal(got, []int{0}) {
		t.Fatalf("parseIndexes(02 00) = %v, %v", got, err)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		err  error
	}{
		{"nothing", nil, ErrTruncated},
		{"count without indexes", []byte{4, 0}, ErrTruncated},
		{"negative count", []byte{1}, ErrBadIndexes},
		{"huge count", binary.AppendVarint(nil, 1<<40), ErrBadIndexes},
		{"negative index", []byte{2, 3}, ErrBadIndexes},
		{"index past int32", append([]byte{2}, binary.AppendVarint(nil, 1<<40)...), ErrBadIndexes},
		{"overflowing varint", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, ErrBadIndexes},
		{"cut varint", []byte{0x80}, ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, _, err := parseIndexes(tc.in, nil); !errors.Is(err, tc.err) {
				t.Fatalf("parseIndexes(% x) = %v, %v; want %v", tc.in, got, err, tc.err)
			}
		})
	}
}

// parseIndexes into a caller's buffer does not allocate.
func TestParseIndexesAllocs(t *testing.T) {
	in := []byte{4, 0, 4, 'x'}
	allocs := testing.AllocsPerRun(100, func() {
		var buf [8]int
		if _, _, err := parseIndexes(in, buf[:0]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per parse", allocs)
	}
}

// Fuzz targets for the wire header. `go test` runs them over their seeds;
// `make fuzz` fuzzes each for a bounded time.

// FuzzHeader: parseHeader agrees with franz-go's ConfluentHeader on every
// input, and says why it refuses one.
func FuzzHeader(f *testing.F) {
	for _, s := range [][]byte{{}, {0}, {0, 0, 0, 0, 1}, {0, 0, 0, 0, 1, 2, 3}, {1, 0, 0, 0, 1}, []byte(`{"a":1}`)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		id, rest, err := parseHeader(b)
		var ch sr.ConfluentHeader
		wid, wrest, werr := ch.DecodeID(b)
		if (err == nil) != (werr == nil) {
			t.Fatalf("parseHeader(% x) err %v; sr: %v", b, err, werr)
		}
		if err != nil {
			want := ErrTruncated
			if len(b) > 0 && b[0] != 0 {
				want = ErrMagicByte
			}
			if !errors.Is(err, want) {
				t.Fatalf("parseHeader(% x) = %v, want %v", b, err, want)
			}
			return
		}
		if id != wid || !bytes.Equal(rest, wrest) {
			t.Fatalf("parseHeader(% x) = %d, % x; sr: %d, % x", b, id, rest, wid, wrest)
		}
		if again := appendHeader(nil, id); !bytes.Equal(again, b[:5]) {
			t.Fatalf("appendHeader(%d) = % x, want % x", id, again, b[:5])
		}
	})
}

// FuzzIndexes: what parseIndexes accepts, franz-go's ConfluentHeader
// reads the same; what it refuses, it refuses for a reason (or
// ConfluentHeader would read past the bounds this codec sets: more than
// maxIndexDepth indexes, a negative index, one past int32). It never
// allocates for a count the input cannot hold.
func FuzzIndexes(f *testing.F) {
	for _, s := range [][]byte{{0}, {2, 2}, {4, 0, 4}, {1}, {4, 0}, {0x80}, binary.AppendVarint(nil, 1<<40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, rest, err := parseIndexes(b, nil)
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrBadIndexes) {
				t.Fatalf("parseIndexes(% x): %v is neither truncated nor bad indexes", b, err)
			}
		}
		n, l := binary.Varint(b)
		if l <= 0 || n > int64(len(b)) {
			return // ConfluentHeader would allocate n ints: not fed to it
		}
		var ch sr.ConfluentHeader
		want, wrest, werr := ch.DecodeIndex(b, 0)
		if err == nil {
			if werr != nil || !slices.Equal(got, want) || !bytes.Equal(rest, wrest) {
				t.Fatalf("parseIndexes(% x) = %v, % x; sr: %v, % x, %v", b, got, rest, want, wrest, werr)
			}
			return
		}
		if werr == nil && len(want) <= maxIndexDepth && !slices.ContainsFunc(want, func(i int) bool { return i < 0 || i > math.MaxInt32 }) {
			t.Fatalf("parseIndexes(% x) refused (%v) what sr reads as %v", b, err, want)
		}
	})
}

// FuzzHeaderRoundTrip: a header written by appendHeader and appendIndexes
// is byte for byte ConfluentHeader's, and reads back to the same ID and
// indexes.
func FuzzHeaderRoundTrip(f *testing.F) {
	f.Add(uint32(1), []byte{0})
	f.Add(uint32(0x01020304), []byte{1, 0, 200})
	f.Add(uint32(math.MaxUint32), []byte{})
	f.Fuzz(func(t *testing.T, id uint32, raw []byte) {
		indexes := []int{0} // a Protobuf value has at least one index
		if len(raw) > 0 {
			indexes = indexes[:0]
		}
		for _, b := range raw[:min(len(raw), maxIndexDepth)] {
			indexes = append(indexes, int(b)*1000)
		}
		b := appendIndexes(appendHeader(nil, int(id)), indexes)
		var ch sr.ConfluentHeader
		want, _ := ch.AppendEncode(nil, int(id), indexes)
		if !bytes.Equal(b, want) {
			t.Fatalf("header % x, sr writes % x", b, want)
		}
		gid, rest, err := parseHeader(append(b, 'v'))
		if err != nil || gid != int(id) {
			t.Fatalf("parseHeader = %d, %v; want %d", gid, err, id)
		}
		gi, rest, err := parseIndexes(rest, nil)
		if err != nil || !slices.Equal(gi, indexes) || string(rest) != "v" {
			t.Fatalf("parseIndexes = %v, %q, %v; want %v", gi, rest, err, indexes)
		}
	})
}
