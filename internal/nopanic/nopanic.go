// Package nopanic marks decoders that cannot panic, so that kstream calls
// them without a deferred recover on every record.
package nopanic

// Decoder is implemented by the codec package's decoders whose Decode cannot
// panic (it does no more than return or copy its input).
type Decoder interface {
	NoPanicDecode()
}

// Identity is implemented by codec.Bytes, whose Decode and Encode return
// their input, not copied: kstream sets a record's value without calling
// Decode, and a Producer[[]byte] sends a batch's values without calling
// Encode.
type Identity interface {
	Decoder
	IdentityCodec()
}
