package codec

import "context"

// ContextDecoder is a Decoder whose Decode may wait on something outside
// the record (a schema registry, say) and that can be cut short. It is
// optional: a stream checks for it and, when the decoder has it, calls
// DecodeContext with a context that ends when the stream is closed or its
// loop's context ends, instead of Decode, so that closing never waits for
// a registry that does not answer.
//
// An error caused by ctx ending wraps ErrUnavailable and ctx's error: the
// record was not found bad, it was not decoded. The schema-registry codecs
// implement it.
type ContextDecoder[T any] interface {
	Decoder[T]
	DecodeContext(ctx context.Context, data []byte) (T, error)
}
