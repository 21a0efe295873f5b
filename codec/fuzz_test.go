package codec_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gokstreams/kstreams/codec"
)

// Fuzz targets for the built-in codecs. `go test ./codec` runs them over
// their seed corpora (testdata/fuzz/<FuzzName>/); `make fuzz` fuzzes each for
// a bounded time.

// fuzzOrder is a small struct with the field kinds JSON values map to.
type fuzzOrder struct {
	ID     int64      `json:"id"`
	Name   string     `json:"name"`
	Tags   []string   `json:"tags"`
	Blob   []byte     `json:"blob"`
	OK     bool       `json:"ok"`
	Amount float64    `json:"amount"`
	Next   *fuzzOrder `json:"next"`
}

// FuzzJSONDecode: decoding never panics, agrees with encoding/json about
// what is valid, returns the zero value with an error that names the type
// and wraps encoding/json's, and what decodes survives an encode/decode
// round trip unchanged.
func FuzzJSONDecode(f *testing.F) {
	f.Add([]byte(`{"id":1,"name":"a","tags":["x"],"blob":"AQI=","ok":true,"amount":1.5,"next":{"id":2}}`))
	f.Add([]byte(`{"id":`))
	f.Add([]byte(`null`))
	c := codec.JSON[fuzzOrder]()
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := c.Decode(data)
		var want fuzzOrder
		werr := json.Unmarshal(data, &want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("codec.JSON: %v; encoding/json: %v", err, werr)
		}
		if err != nil {
			if !reflect.DeepEqual(v, fuzzOrder{}) {
				t.Fatalf("failed decode returned %+v, want the zero value", v)
			}
			if !strings.HasPrefix(err.Error(), "codec: JSON decode into codec_test.fuzzOrder: ") || !strings.HasSuffix(err.Error(), werr.Error()) {
				t.Fatalf("error %q does not name the type and wrap %q", err, werr)
			}
			if errors.Unwrap(err) == nil || reflect.TypeOf(errors.Unwrap(err)) != reflect.TypeOf(werr) {
				t.Fatalf("error %q unwraps to %T, want %T", err, errors.Unwrap(err), werr)
			}
			return
		}
		if !reflect.DeepEqual(v, want) {
			t.Fatalf("decoded %+v, encoding/json decoded %+v", v, want)
		}
		b, err := c.Encode(v)
		if err != nil {
			t.Fatalf("encoding a decoded value: %v", err)
		}
		v2, err := c.Decode(b)
		if err != nil {
			t.Fatalf("decoding %q, which the codec encoded: %v", b, err)
		}
		if !reflect.DeepEqual(v, v2) {
			t.Fatalf("round trip changed %+v into %+v (via %q)", v, v2, b)
		}
	})
}

// FuzzJSONRoundTrip: any value of the struct encodes and decodes back to
// itself, except that strings are made valid UTF-8 (encoding/json writes
// U+FFFD for each invalid byte) and NaN and infinities, which JSON cannot
// hold, fail to encode with an error that names the type.
func FuzzJSONRoundTrip(f *testing.F) {
	f.Add(int64(7), "name", "tag", []byte{1, 2, 3}, true, 2.5, false)
	f.Add(int64(-1), "\xff\xfe", "", []byte(nil), false, math.Inf(1), true)
	c := codec.JSON[fuzzOrder]()
	f.Fuzz(func(t *testing.T, id int64, name, tag string, blob []byte, ok bool, amount float64, nested bool) {
		in := fuzzOrder{ID: id, Name: name, Tags: []string{tag}, Blob: blob, OK: ok, Amount: amount}
		if nested {
			in.Next = &fuzzOrder{ID: -id, Name: tag, Tags: []string{}, Blob: []byte{}}
		}
		b, err := c.Encode(in)
		if math.IsNaN(amount) || math.IsInf(amount, 0) {
			var uve *json.UnsupportedValueError
			if err == nil || !errors.As(err, &uve) || !strings.Contains(err.Error(), "codec_test.fuzzOrder") {
				t.Fatalf("encoding amount %v returned %v, want a *json.UnsupportedValueError naming the type", amount, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("encode %+v: %v", in, err)
		}
		out, err := c.Decode(b)
		if err != nil {
			t.Fatalf("decode %q: %v", b, err)
		}
		want := in
		want.Name, want.Tags = coerceUTF8(name), []string{coerceUTF8(tag)}
		if nested {
			want.Next = &fuzzOrder{ID: -id, Name: coerceUTF8(tag), Tags: []string{}, Blob: []byte{}}
		}
		if len(blob) == 0 && blob != nil {
			want.Blob = []byte{}
		}
		if !reflect.DeepEqual(out, want) {
			t.Fatalf("round trip of %+v gave %+v, want %+v (via %q)", in, out, want, b)
		}
	})
}

// coerceUTF8 replaces each byte of s that is not part of a valid UTF-8
// sequence with U+FFFD, as encoding/json does when it writes a string.
func coerceUTF8(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// FuzzString: String decodes any bytes, valid UTF-8 or not, into a copy
// (the record's buffer may be reused), and encodes back byte-exact, also
// appending.
func FuzzString(f *testing.F) {
	f.Add([]byte("hello"))
	f.Add([]byte{0xff, 0x00, 0xc3})
	c := codec.String()
	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		s, err := c.Decode(data)
		if err != nil || s != string(orig) {
			t.Fatalf("Decode(%q) = %q, %v", orig, s, err)
		}
		for i := range data {
			data[i] ^= 0xff
		}
		if s != string(orig) {
			t.Fatalf("the decoded string shares memory with the record's bytes")
		}
		b, err := c.Encode(s)
		if err != nil || !bytes.Equal(b, orig) {
			t.Fatalf("Encode(%q) = %q, %v", s, b, err)
		}
		ae, ok := c.(codec.AppendEncoder[string])
		if !ok {
			t.Fatal("String is not an AppendEncoder")
		}
		b, err = ae.AppendEncode([]byte("prefix"), s)
		if err != nil || !bytes.Equal(b, append([]byte("prefix"), orig...)) {
			t.Fatalf("AppendEncode = %q, %v", b, err)
		}
	})
}

// FuzzBytes: Bytes is the identity, without a copy.
func FuzzBytes(f *testing.F) {
	f.Add([]byte("hello"))
	f.Add([]byte{})
	c := codec.Bytes()
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := c.Decode(data)
		if err != nil || !bytes.Equal(b, data) || len(b) != len(data) {
			t.Fatalf("Decode(%q) = %q, %v", data, b, err)
		}
		if len(data) > 0 && &b[0] != &data[0] {
			t.Fatalf("Decode copied the bytes; it is documented not to")
		}
		e, err := c.Encode(data)
		if err != nil || !bytes.Equal(e, data) {
			t.Fatalf("Encode(%q) = %q, %v", data, e, err)
		}
		ae := c.(codec.AppendEncoder[[]byte])
		a, err := ae.AppendEncode([]byte{9}, data)
		if err != nil || !bytes.Equal(a, append([]byte{9}, data...)) {
			t.Fatalf("AppendEncode = %q, %v", a, err)
		}
	})
}
