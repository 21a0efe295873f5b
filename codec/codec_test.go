package codec_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/gokstreams/kstreams/codec"
)

type point struct {
	X int `json:"x"`
	Y int `json:"y"`
}

func TestJSONRoundTrip(t *testing.T) {
	c := codec.JSON[point]()
	b, err := c.Encode(point{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"x":1,"y":2}` {
		t.Fatalf("Encode = %s", b)
	}
	got, err := c.Decode(b)
	if err != nil || got != (point{1, 2}) {
		t.Fatalf("Decode = %v, %v", got, err)
	}
}

func TestJSONDecodeErrorNamesTypeAndWraps(t *testing.T) {
	_, err := codec.JSON[point]().Decode([]byte("{"))
	var syn *json.SyntaxError
	if !errors.As(err, &syn) {
		t.Fatalf("err %v does not wrap *json.SyntaxError", err)
	}
	if !strings.Contains(err.Error(), "codec_test.point") {
		t.Fatalf("err %q does not name the target type", err)
	}
	_, err = codec.JSON[point]().Decode([]byte(`{"x":"one"}`))
	var typ *json.UnmarshalTypeError
	if !errors.As(err, &typ) {
		t.Fatalf("err %v does not wrap *json.UnmarshalTypeError", err)
	}
}

func TestJSONEncodeError(t *testing.T) {
	if _, err := codec.JSON[chan int]().Encode(make(chan int)); err == nil || !strings.Contains(err.Error(), "chan int") {
		t.Fatalf("Encode(chan) = %v, want an error naming the type", err)
	}
}

func TestStringAndBytes(t *testing.T) {
	in := []byte("héllo")
	s, err := codec.String().Decode(in)
	if err != nil || s != "héllo" {
		t.Fatalf("String.Decode = %q, %v", s, err)
	}
	in[0] = 'H' // the string is a copy
	if s != "héllo" {
		t.Fatal("String.Decode aliases its input")
	}
	b, err := codec.Bytes().Decode(in)
	if err != nil || &b[0] != &in[0] {
		t.Fatal("Bytes.Decode copies; it should hand the record's bytes over")
	}
	enc, _ := codec.String().Encode("x")
	if string(enc) != "x" {
		t.Fatalf("String.Encode = %q", enc)
	}
	app, _ := codec.String().(codec.AppendEncoder[string]).AppendEncode([]byte("a"), "b")
	if string(app) != "ab" {
		t.Fatalf("AppendEncode = %q", app)
	}
}

func TestFuncAdapters(t *testing.T) {
	errBad := errors.New("bad")
	dec := codec.DecoderFunc[int](func(b []byte) (int, error) {
		if len(b) == 0 {
			return 0, errBad
		}
		return len(b), nil
	})
	if n, err := dec.Decode([]byte("abc")); n != 3 || err != nil {
		t.Fatalf("DecoderFunc = %d, %v", n, err)
	}
	if _, err := dec.Decode(nil); !errors.Is(err, errBad) {
		t.Fatalf("DecoderFunc error = %v", err)
	}
	enc := codec.EncoderFunc[int](func(n int) ([]byte, error) { return []byte(strings.Repeat("x", n)), nil })
	if b, _ := enc.Encode(2); string(b) != "xx" {
		t.Fatalf("EncoderFunc = %q", b)
	}
	c := codec.New(dec.Decode, enc.Encode)
	if b, _ := c.Encode(1); string(b) != "x" {
		t.Fatal("New encode")
	}
	if n, _ := c.Decode([]byte("xy")); n != 2 {
		t.Fatal("New decode")
	}
}

func TestUnavailable(t *testing.T) {
	cause := errors.New("dial tcp 127.0.0.1:8081: connection refused")
	err := codec.Unavailable(cause)
	if !errors.Is(err, codec.ErrUnavailable) || !errors.Is(err, cause) {
		t.Fatalf("Unavailable(%v) = %v: want an error wrapping ErrUnavailable and the cause", cause, err)
	}
	if got, want := err.Error(), "codec: unavailable, retry later: "+cause.Error(); got != want {
		t.Fatalf("Unavailable(...).Error() = %q, want %q", got, want)
	}
	if codec.Unavailable(err) != err {
		t.Fatal("Unavailable wraps an error that is already unavailable again")
	}
	if codec.Unavailable(nil) != nil {
		t.Fatal("Unavailable(nil) != nil")
	}
	// A decode error of the record's own is not unavailable.
	if _, err := codec.JSON[point]().Decode([]byte("{")); errors.Is(err, codec.ErrUnavailable) {
		t.Fatalf("a JSON syntax error %v wraps ErrUnavailable", err)
	}
}
