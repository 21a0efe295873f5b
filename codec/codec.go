// Package codec turns Kafka record bytes into typed values and back.
//
// A [Decoder] is what a kstream.Stream[T] uses to produce the Value of each
// record; an [Encoder] is what a kstream.Producer[T] uses to produce bytes.
// [Bytes], [String] and [JSON] cover the common cases; [DecoderFunc] and
// [EncoderFunc] adapt plain functions.
//
// Tombstones: a record whose value is nil (a delete marker on a compacted
// topic) is not passed to Decode. The stream yields the zero value of T for
// it, unless the decoder also implements [NilDecoder], in which case
// DecodeNil decides.
package codec

// Decoder turns the bytes of a record value into a T.
//
// Decode must not retain data after it returns unless it owns a copy: the
// bytes belong to the fetched record. Decode may be called from one goroutine
// at a time per stream, but a Decoder shared by several streams must be safe
// for concurrent use (all decoders in this package are).
type Decoder[T any] interface {
	Decode(data []byte) (T, error)
}

// Encoder turns a T into the bytes of a record value.
type Encoder[T any] interface {
	Encode(v T) ([]byte, error)
}

// AppendEncoder is an Encoder that can also append the encoding of v to
// dst and return the extended slice, as strconv.AppendInt does, so that code
// that encodes many values can reuse one buffer. Bytes and String implement
// it.
//
// Nothing in this module checks for it: kstream.Producer calls Encode. A
// producer's value must stay untouched until the brokers acknowledge it,
// so a reused buffer has to live with the record; measured, that saved
// String its one allocation per record but no time, and cost Bytes, whose
// Encode returns the value without copying it, a copy.
type AppendEncoder[T any] interface {
	Encoder[T]
	AppendEncode(dst []byte, v T) ([]byte, error)
}

// Codec is both a Decoder and an Encoder of T.
type Codec[T any] interface {
	Decoder[T]
	Encoder[T]
}

// NilDecoder is implemented by decoders that want to see tombstones (records
// whose value is nil). Without it, a tombstone decodes to the zero value of T.
type NilDecoder[T any] interface {
	DecodeNil() (T, error)
}

// DecoderFunc adapts a function to a Decoder.
type DecoderFunc[T any] func(data []byte) (T, error)

// Decode calls f(data).
func (f DecoderFunc[T]) Decode(data []byte) (T, error) { return f(data) }

// EncoderFunc adapts a function to an Encoder.
type EncoderFunc[T any] func(v T) ([]byte, error)

// Encode calls f(v).
func (f EncoderFunc[T]) Encode(v T) ([]byte, error) { return f(v) }

// New joins a decode and an encode function into a Codec.
func New[T any](decode func([]byte) (T, error), encode func(T) ([]byte, error)) Codec[T] {
	return funcCodec[T]{decode, encode}
}

type funcCodec[T any] struct {
	decode func([]byte) (T, error)
	encode func(T) ([]byte, error)
}

func (c funcCodec[T]) Decode(data []byte) (T, error) { return c.decode(data) }
func (c funcCodec[T]) Encode(v T) ([]byte, error)    { return c.encode(v) }
