// Package nopanic marks decoders that cannot panic, so that kstream calls
// them without a deferred recover on every record.
package nopanic

// Decoder is implemented by the codec package's decoders whose Decode cannot
// panic (it does no more than return or copy its input).
type Decoder interface {
	NoPanicDecode()
}

// BytesDecoder is implemented by codec.Bytes's decoder, whose value is the
// record's bytes, not copied: kstream sets the value without calling Decode.
type BytesDecoder interface {
	Decoder
	BytesDecode()
}
