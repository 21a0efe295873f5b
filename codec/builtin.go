package codec

import (
	"encoding/json"
	"fmt"
	"reflect"
)

// Bytes returns the identity codec: the value is the record's bytes, not
// copied. A tombstone decodes to nil.
func Bytes() Codec[[]byte] { return bytesCodec{} }

type bytesCodec struct{}

func (bytesCodec) Decode(data []byte) ([]byte, error) { return data, nil }

// NoPanicDecode marks Decode as one kstream need not guard (internal/nopanic).
func (bytesCodec) NoPanicDecode() {}

// IdentityCodec marks Decode and Encode as the identity (internal/nopanic).
func (bytesCodec) IdentityCodec()                  {}
func (bytesCodec) Encode(v []byte) ([]byte, error) { return v, nil }
func (bytesCodec) AppendEncode(dst, v []byte) ([]byte, error) {
	return append(dst, v...), nil
}

// String returns a codec for values that are text. Decoding copies the bytes
// into a string; it does not check that they are valid UTF-8, because Kafka
// does not either.
func String() Codec[string] { return stringCodec{} }

type stringCodec struct{}

func (stringCodec) Decode(data []byte) (string, error) { return string(data), nil }

// NoPanicDecode marks Decode as one kstream need not guard (internal/nopanic).
func (stringCodec) NoPanicDecode()                  {}
func (stringCodec) Encode(v string) ([]byte, error) { return []byte(v), nil }
func (stringCodec) AppendEncode(dst []byte, v string) ([]byte, error) {
	return append(dst, v...), nil
}

// JSON returns a codec that uses encoding/json. A decode error names the
// target type and wraps encoding/json's error, so errors.As finds a
// *json.SyntaxError or *json.UnmarshalTypeError.
func JSON[T any]() Codec[T] { return jsonCodec[T]{} }

type jsonCodec[T any] struct{}

func (jsonCodec[T]) Decode(data []byte) (T, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("codec: JSON decode into %s: %w", typeName[T](), err)
	}
	return v, nil
}

func (jsonCodec[T]) Encode(v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("codec: JSON encode %s: %w", typeName[T](), err)
	}
	return b, nil
}

func typeName[T any]() string {
	return reflect.TypeFor[T]().String()
}
