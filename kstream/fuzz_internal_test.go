package kstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
)

// Fuzz targets for the record conversion (a fetched *kgo.Record into a
// Record[T], through the stream's decoder) and for the classification of
// fetch errors. `go test ./kstream` runs them over their seed corpora
// (testdata/fuzz/<FuzzName>/); `make fuzz` fuzzes each for a bounded time.

var errFuzzDecode = errors.New("fuzz: bad value")

// fuzzDecoder decodes a value as a string, fails, or panics, as mode says;
// with nils it also implements codec.NilDecoder, with the same behaviour
// for tombstones.
type fuzzDecoder struct {
	mode  uint8
	calls int
}

func (d *fuzzDecoder) behave(b []byte, tombstone bool) (string, error) {
	d.calls++
	switch d.mode % 6 {
	case 0:
		if tombstone {
			return "<tombstone>", nil
		}
		return string(b), nil
	case 1:
		return "partial", fmt.Errorf("decoding %d bytes: %w", len(b), errFuzzDecode)
	case 2:
		panic(string(b))
	case 3:
		panic(fmt.Errorf("wrapped: %w", errFuzzDecode))
	case 4:
		panic(nil) // a *runtime.PanicNilError since Go 1.21
	default:
		var m map[string]int
		m[string(b)]++ // a runtime error
		return "", nil
	}
}

func (d *fuzzDecoder) Decode(b []byte) (string, error) { return d.behave(b, false) }

type fuzzNilDecoder struct{ *fuzzDecoder }

func (d fuzzNilDecoder) DecodeNil() (string, error) { return d.behave(nil, true) }

// FuzzDecodeInto checks the conversion of any fetched record with any
// decoder behaviour: the Record carries the fetched metadata, key, headers
// and raw record as they are; a tombstone is the zero value unless the
// decoder implements NilDecoder; a decoder's error or panic becomes a
// *DecodeError naming the position, with the zero value, and never escapes
// as a panic. decodeInto reuses the Record of the previous record (the hot
// loop does), so the result must not depend on what was in it.
func FuzzDecodeInto(f *testing.F) {
	f.Add(uint8(0), false, []byte("value"), false, []byte("key"), "h", []byte("hv"), "orders", int32(3), int64(42))
	f.Add(uint8(1), false, []byte("{bad"), false, []byte(nil), "", []byte(nil), "t", int32(0), int64(0))
	f.Add(uint8(2), true, []byte(nil), true, []byte{0xff}, "\xff", []byte{}, "t", int32(-1), int64(-1))
	f.Fuzz(func(t *testing.T, mode uint8, nils bool, value []byte, tombstone bool, key []byte, hkey string, hval []byte, topic string, partition int32, offset int64) {
		fd := &fuzzDecoder{mode: mode}
		var dec codec.Decoder[string] = fd
		if nils {
			dec = fuzzNilDecoder{fd}
		}
		s, err := NewStream(dec, Topics("t"))
		if err != nil {
			t.Fatal(err)
		}
		if tombstone {
			value = nil
		} else if value == nil {
			value = []byte{}
		}
		r := &kgo.Record{
			Topic: topic, Partition: partition, Offset: offset, Key: key, Value: value,
			Headers:   []kgo.RecordHeader{{Key: hkey, Value: hval}},
			Timestamp: time.Unix(0, offset).UTC(),
		}

		// A dirty Record, as left by the record before.
		rec := Record[string]{Topic: "old", Partition: 99, Offset: 99, Key: []byte("old"), Value: "old value",
			Headers: []Header{{Key: "old"}}, Timestamp: time.Unix(1, 0), Raw: &kgo.Record{}}
		derr := s.decodeInto(&rec, r)

		if rec.Topic != topic || rec.Partition != partition || rec.Offset != offset || rec.Raw != r ||
			!rec.Timestamp.Equal(r.Timestamp) || !reflect.DeepEqual(rec.Key, key) || !reflect.DeepEqual(rec.Headers, r.Headers) {
			t.Fatalf("record metadata %+v does not match the fetched record %+v", rec, r)
		}
		if rec.Tombstone() != tombstone {
			t.Fatalf("Tombstone() = %v for value nil = %v", rec.Tombstone(), tombstone)
		}
		calledDecoder := !tombstone || nils
		if calledDecoder != (fd.calls == 1) {
			t.Fatalf("decoder called %d time(s), want %v (tombstone %v, NilDecoder %v)", fd.calls, calledDecoder, tombstone, nils)
		}
		if !calledDecoder || mode%6 == 0 {
			if derr != nil {
				t.Fatalf("decodeInto: %v, want no error", derr)
			}
			want := string(value)
			switch {
			case tombstone && nils:
				want = "<tombstone>"
			case tombstone:
				want = ""
			}
			if rec.Value != want {
				t.Fatalf("value %q, want %q", rec.Value, want)
			}
			return
		}

		var de *DecodeError
		if !errors.As(derr, &de) {
			t.Fatalf("decoder mode %d: decodeInto returned %v (%T), want a *DecodeError", mode%6, derr, derr)
		}
		if de.Topic != topic || de.Partition != partition || de.Offset != offset || de.Record != r {
			t.Fatalf("DecodeError %+v does not name the record's position", de)
		}
		if rec.Value != "" {
			t.Fatalf("value %q after a decode error, want the zero value", rec.Value)
		}
		msg := de.Error()
		if !strings.HasPrefix(msg, "kstream: decode record topic ") || !strings.Contains(msg, fmt.Sprintf("partition %d offset %d: ", partition, offset)) {
			t.Fatalf("error %q does not say where", msg)
		}
		if mode%6 == 1 {
			if !errors.Is(derr, errFuzzDecode) {
				t.Fatalf("error %q does not wrap the decoder's", derr)
			}
			return
		}
		want := "decoder panicked: "
		if tombstone {
			want = "decoder panicked on a tombstone: "
		}
		if !strings.HasPrefix(de.Err.Error(), want) {
			t.Fatalf("panic became %q, want it to start with %q", de.Err, want)
		}
	})
}

type fuzzJSON struct {
	ID   int               `json:"id"`
	Tags map[string]string `json:"tags"`
	Next *fuzzJSON         `json:"next"`
}

// FuzzDecodeIntoJSON runs the JSON codec through the record conversion:
// what encoding/json accepts is the value, what it rejects is a *DecodeError
// through which errors.As finds encoding/json's error.
func FuzzDecodeIntoJSON(f *testing.F) {
	f.Add([]byte(`{"id":1,"tags":{"a":"b"},"next":{"id":2}}`))
	f.Add([]byte(`{"id":"x"}`))
	f.Add([]byte(``))
	s, err := NewStream(codec.JSON[fuzzJSON](), Topics("t"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		r := &kgo.Record{Topic: "t", Partition: 1, Offset: 7, Value: value}
		var rec Record[fuzzJSON]
		derr := s.decodeInto(&rec, r)
		var want fuzzJSON
		werr := json.Unmarshal(value, &want)
		if werr == nil {
			if derr != nil || !reflect.DeepEqual(rec.Value, want) {
				t.Fatalf("decodeInto = %+v, %v; encoding/json = %+v", rec.Value, derr, want)
			}
			return
		}
		var de *DecodeError
		if !errors.As(derr, &de) || de.Offset != 7 || !reflect.DeepEqual(rec.Value, fuzzJSON{}) {
			t.Fatalf("decodeInto = %+v, %v; want a *DecodeError and the zero value (encoding/json: %v)", rec.Value, derr, werr)
		}
		target := reflect.New(reflect.TypeOf(werr)).Interface()
		if !errors.As(derr, target) {
			t.Fatalf("errors.As does not find encoding/json's %T in %v", werr, derr)
		}
	})
}

// fatalCodes are the Kafka errors that end a stream, as documented on
// FetchError: authorization, unsupported version, topic recreated, and a
// group the member cannot be in.
var fatalCodes = map[*kerr.Error]bool{
	kerr.TopicAuthorizationFailed: true, kerr.GroupAuthorizationFailed: true,
	kerr.ClusterAuthorizationFailed: true, kerr.SaslAuthenticationFailed: true,
	kerr.UnsupportedSaslMechanism: true, kerr.UnsupportedVersion: true,
	kerr.UnknownTopicID: true, kerr.InconsistentTopicID: true,
	kerr.InvalidGroupID: true, kerr.InconsistentGroupProtocol: true,
}

// FuzzClassifyFetchError classifies every Kafka error code, wrapped in
// layers of fmt.Errorf, joined with unrelated errors and inside a franz-go
// group session error: wrapping never changes the class (except that a
// group session error that is not fatal is left to franz-go, which
// rejoins), the fatal set is exactly the documented one, retriable errors
// are never yielded, and a closed client ends the range quietly whatever
// wraps it.
func FuzzClassifyFetchError(f *testing.F) {
	for _, c := range []int16{kerr.TopicAuthorizationFailed.Code, kerr.NotLeaderForPartition.Code, kerr.UnknownServerError.Code, kerr.UnknownTopicID.Code, kerr.OffsetOutOfRange.Code} {
		f.Add(c, uint8(2), uint8(0))
	}
	f.Add(int16(0), uint8(0), uint8(7))
	f.Fuzz(func(t *testing.T, code int16, depth uint8, shape uint8) {
		base := kerr.ErrorForCode(code)
		var ke *kerr.Error
		if !errors.As(base, &ke) {
			return // code 0: no error
		}
		err := base
		for i := range int(depth % 8) {
			err = fmt.Errorf("layer %d: %w", i, err)
		}
		if shape&1 != 0 {
			err = errors.Join(errors.New("unrelated"), err)
		}
		session := shape&2 != 0
		if session {
			err = &kgo.ErrGroupSession{Err: err}
		}
		closed := shape&4 != 0
		if closed {
			err = errors.Join(err, fmt.Errorf("poll: %w", kgo.ErrClientClosed))
		}

		got := classifyFetchError(err)
		want := errNonFatal
		switch {
		case closed:
			want = errEnd
		case fatalCodes[ke]:
			want = errFatal
		case ke.Retriable, session:
			want = errRetried
		}
		if got != want {
			t.Fatalf("classifyFetchError(%v) = %d, want %d (base %s retriable=%v, depth %d, shape %03b)", err, got, want, ke.Message, ke.Retriable, depth%8, shape%8)
		}
		if direct := classifyFetchError(base); !closed && !session && direct != got {
			t.Fatalf("wrapping changed the class of %s from %d to %d", ke.Message, direct, got)
		}
	})
}
