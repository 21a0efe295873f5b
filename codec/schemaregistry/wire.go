package schemaregistry

import (
	"encoding/binary"
	"fmt"
	"math"
)

// The Confluent wire format: a magic byte 0, the schema ID as a 4-byte
// big-endian integer, for Protobuf the message indexes (zigzag varints: a
// count, then each index; the single byte 0 stands for the common case of
// the first message, [0]), then the value in the schema's own encoding.
//
// https://docs.confluent.io/platform/current/schema-registry/fundamentals/serdes-develop/index.html#wire-format
const (
	magicByte  = 0
	headerSize = 5
)

// appendHeader appends the magic byte and the schema ID.
func appendHeader(dst []byte, id int) []byte {
	return append(dst, magicByte, byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
}

// appendIndexes appends Protobuf message indexes as Confluent's serializers
// write them: the single byte 0 for [0], else the count and each index.
func appendIndexes(dst []byte, indexes []int) []byte {
	if len(indexes) == 1 && indexes[0] == 0 {
		return append(dst, 0)
	}
	dst = binary.AppendVarint(dst, int64(len(indexes)))
	for _, i := range indexes {
		dst = binary.AppendVarint(dst, int64(i))
	}
	return dst
}

// parseHeader splits a record value into its schema ID and the rest. A
// first byte that is not the magic byte is reported before a short value, as
// it is the more telling of the two: it is most often data written without a
// registry.
func parseHeader(b []byte) (id int, rest []byte, err error) {
	if len(b) == 0 {
		return 0, nil, fmt.Errorf("%w: the value is empty, the header needs %d bytes", ErrTruncated, headerSize)
	}
	if b[0] != magicByte {
		return 0, nil, fmt.Errorf("%w: first byte is 0x%02x, want 0x00 (was this value written through a schema registry?)", ErrMagicByte, b[0])
	}
	if len(b) < headerSize {
		return 0, nil, fmt.Errorf("%w: the value has %d bytes, the header needs %d", ErrTruncated, len(b), headerSize)
	}
	return int(binary.BigEndian.Uint32(b[1:headerSize])), b[headerSize:], nil
}

// maxIndexDepth bounds how deep a Protobuf message index path may be: the
// nesting depth of a message declaration. protoc refuses far less deep
// nesting than this.
const maxIndexDepth = 100

// parseIndexes reads Protobuf message indexes from the bytes after the
// header. buf, if it has room, holds the result, so that the common case
// does not allocate. The count is checked against the bytes left before
// anything is allocated: every index takes at least one byte.
func parseIndexes(b []byte, buf []int) (indexes []int, rest []byte, err error) {
	n, l := binary.Varint(b)
	switch {
	case l == 0:
		return nil, nil, fmt.Errorf("%w: the value ends before its Protobuf message indexes", ErrTruncated)
	case l < 0:
		return nil, nil, fmt.Errorf("%w: the count of Protobuf message indexes overflows", ErrBadIndexes)
	}
	b = b[l:]
	if n == 0 { // the one-byte form of [0]
		return append(buf[:0], 0), b, nil
	}
	if n < 0 || n > maxIndexDepth {
		return nil, nil, fmt.Errorf("%w: %d Protobuf message indexes (want 1 to %d)", ErrBadIndexes, n, maxIndexDepth)
	}
	if n > int64(len(b)) {
		return nil, nil, fmt.Errorf("%w: %d Protobuf message indexes announced, %d bytes left", ErrTruncated, n, len(b))
	}
	indexes = buf[:0]
	for range n {
		i, l := binary.Varint(b)
		switch {
		case l == 0:
			return nil, nil, fmt.Errorf("%w: the value ends inside its Protobuf message indexes", ErrTruncated)
		case l < 0:
			return nil, nil, fmt.Errorf("%w: a Protobuf message index overflows", ErrBadIndexes)
		case i < 0 || i > math.MaxInt32:
			return nil, nil, fmt.Errorf("%w: Protobuf message index %d", ErrBadIndexes, i)
		}
		indexes = append(indexes, int(i))
		b = b[l:]
	}
	return indexes, b, nil
}
