package kstream_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

type order struct {
	ID     int     `json:"id"`
	Amount float64 `json:"amount"`
}

func TestDecodeErrorJSON(t *testing.T) {
	for _, tc := range []struct {
		name          string
		stopOnError   bool
		wantCommitted int64
	}{
		{"continue", false, 2}, // the bad record (offset 1) counts as handled
		{"break", true, 1},     // the bad record stays uncommitted
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1, 0)
			if err := e.c.Produce(e.ctx,
				&kgo.Record{Topic: e.topic, Value: []byte(`{"id":1,"amount":2.5}`)},
				&kgo.Record{Topic: e.topic, Key: []byte("k"), Value: []byte(`not json`), Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}},
				&kgo.Record{Topic: e.topic, Value: []byte(`{"id":3}`)},
			); err != nil {
				t.Fatal(err)
			}
			s, err := kstream.NewStream(codec.JSON[order](), kstream.Brokers(e.c.Brokers()...), kstream.Topics(e.topic), kstream.Group("g"), kstream.Logger(testLogger(t)))
			if err != nil {
				t.Fatal(err)
			}
			var ids []int
			var decErr *kstream.DecodeError
			for rec, err := range s.Records(e.ctx) {
				if err != nil {
					if !errors.As(err, &decErr) {
						t.Fatalf("error %v, want a *DecodeError", err)
					}
					if rec.Offset != 1 || string(rec.Key) != "k" || len(rec.Headers) != 1 || string(rec.Raw.Value) != "not json" || rec.Value != (order{}) {
						t.Fatalf("record with the decode error = %+v, want its metadata, key, headers, raw value and a zero value", rec)
					}
					if tc.stopOnError {
						break
					}
					continue
				}
				ids = append(ids, rec.Value.ID)
				if rec.Value.ID == 3 {
					break
				}
			}
			if decErr == nil {
				t.Fatal("no DecodeError yielded")
			}
			if decErr.Topic != e.topic || decErr.Partition != 0 || decErr.Offset != 1 || string(decErr.Record.Value) != "not json" {
				t.Fatalf("DecodeError = %+v", decErr)
			}
			var syn *json.SyntaxError
			if !errors.As(err2(decErr), &syn) {
				t.Fatalf("DecodeError does not wrap the JSON syntax error: %v", decErr)
			}
			for _, want := range []string{e.topic, "partition 0", "offset 1", "order"} {
				if !strings.Contains(decErr.Error(), want) {
					t.Errorf("DecodeError message %q does not name %q", decErr.Error(), want)
				}
			}
			// The first loop body finished with id 1, then the bad record
			// was continued past (or broken on), then id 3 was broken on.
			e.wantCommitted("g", map[int32]int64{0: tc.wantCommitted})
			if ids[0] != 1 {
				t.Fatalf("ids %v", ids)
			}
		})
	}
}

func err2(e *kstream.DecodeError) error { return e }

func TestDecoderPanicIsADecodeError(t *testing.T) {
	e := newEnv(t, 1, 2)
	dec := codec.DecoderFunc[string](func(b []byte) (string, error) {
		if string(b) == "v1" {
			panic("cannot handle v1")
		}
		return string(b), nil
	})
	s, err := kstream.NewStream(dec, kstream.Brokers(e.c.Brokers()...), kstream.Topics(e.topic), kstream.Group("g"), kstream.Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	var got []error
	for rec, err := range s.Records(e.ctx) {
		got = append(got, err)
		if rec.Offset == 1 {
			break
		}
	}
	var de *kstream.DecodeError
	if len(got) != 2 || got[0] != nil || !errors.As(got[1], &de) || !strings.Contains(de.Error(), "panicked") || de.Offset != 1 {
		t.Fatalf("errors %v, want nil then a DecodeError at offset 1 saying the decoder panicked", got)
	}
}

type nilAware struct{ codec.Codec[string] }

func (nilAware) DecodeNil() (string, error) { return "<deleted>", nil }

func TestTombstones(t *testing.T) {
	e := newEnv(t, 1, 0)
	if err := e.c.Produce(e.ctx, &kgo.Record{Topic: e.topic, Key: []byte("k"), Value: nil}); err != nil {
		t.Fatal(err)
	}
	plain := e.stream()
	rec := take(t, e.ctx, plain, 1)[0]
	if !rec.Tombstone() || rec.Value != "" {
		t.Fatalf("tombstone decoded as %q (Tombstone()=%v), want the zero value", rec.Value, rec.Tombstone())
	}
	aware, err := kstream.NewStream[string](nilAware{codec.String()}, kstream.Brokers(e.c.Brokers()...), kstream.Topics(e.topic), kstream.Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	if got := take(t, e.ctx, aware, 1)[0].Value; got != "<deleted>" {
		t.Fatalf("NilDecoder decoded a tombstone as %q", got)
	}
}
