package schemaregistry

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/gokstreams/kstreams/codec"
)

// Causes of a bad record or value, wrapped by an *Error. Test for them with
// errors.Is. Each describes the record (or, encoding, the value or the
// codec's configuration): trying again gives the same error. A registry
// that cannot be reached is not among them: that error wraps
// codec.ErrUnavailable instead.
var (
	// ErrMagicByte: the value does not start with the magic byte 0, so it
	// was not written in the Confluent wire format (most often: written
	// without a schema registry, as plain JSON or text).
	ErrMagicByte = errors.New("wrong magic byte")

	// ErrTruncated: the value ends before its header (magic byte and
	// 4-byte schema ID) or its Protobuf message indexes do.
	ErrTruncated = errors.New("truncated value")

	// ErrBadIndexes: the Protobuf message indexes after the header are not
	// a valid list (a negative or overflowing count or index).
	ErrBadIndexes = errors.New("malformed Protobuf message indexes")

	// ErrUnknownSchema: the registry answered that it has no schema with
	// the value's schema ID.
	ErrUnknownSchema = errors.New("unknown schema ID")

	// ErrSchemaMismatch: the writer's schema does not resolve against the
	// reader's: an Avro schema incompatible with T's, a schema of another
	// format, a Protobuf message index that names another message than
	// T's, or a registered schema the codec cannot parse.
	ErrSchemaMismatch = errors.New("writer's schema does not resolve against the reader's")

	// ErrInvalidValue: the value does not match its schema: bytes that do
	// not decode with the writer's schema, or (JSON Schema) a document that
	// violates it, decoding or encoding.
	ErrInvalidValue = errors.New("value does not match its schema")
)

// Error is the error every codec of this package returns: it names the
// operation, the format, the subject and the schema ID, and wraps the cause
// (one of the Err... causes above, codec.ErrUnavailable, or the error of
// the registry client or of the format's library, such as a
// *jsonschema.ValidationError).
//
// A decode error reaches a stream's loop as the Err of a
// *kstream.DecodeError, unless it wraps codec.ErrUnavailable: the stream
// retries those (see codec.ErrUnavailable).
type Error struct {
	Op      string // "setup" (a constructor), "decode" or "encode"
	Format  string // "Avro", "Protobuf" or "JSON Schema"
	Subject string // the codec's subject
	ID      int    // the schema ID, 0 when the failure came before one was known
	Err     error  // the cause
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "schemaregistry: %s %s, subject %q", e.Format, e.Op, e.Subject)
	if e.ID != 0 {
		fmt.Fprintf(&b, ", schema ID %d", e.ID)
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Unavailable reports whether err says that the registry could not be
// reached (so that retrying later may succeed) rather than that the record
// is bad. It is errors.Is(err, codec.ErrUnavailable).
func Unavailable(err error) bool { return errors.Is(err, codec.ErrUnavailable) }

// registryError sorts an error of the registry client into the record's
// fault (returned as it is, or wrapping ErrUnknownSchema when the registry
// says it has no such schema) and everything else, which wraps
// codec.ErrUnavailable.
//
// The record's fault is only a definite answer from a schema registry: a
// 4xx status carrying a registry error code, except 401/403 (credentials),
// 408 and 429 (try later). Everything else wraps codec.ErrUnavailable: a
// connection refused or reset, a timeout, a 5xx, a 404 without a registry
// error code (a proxy, or a URL that is not a registry's), a body that is
// not a registry's. When in doubt, unavailable: a stream retries it and
// says so in its logs and health, where the other mistake would let a loop
// skip good records.
func registryError(err error) error {
	var re *sr.ResponseError
	if !errors.As(err, &re) {
		return codec.Unavailable(err)
	}
	switch {
	case re.ErrorCode == 0,
		re.StatusCode < 400 || re.StatusCode >= 500,
		re.StatusCode == http.StatusUnauthorized, re.StatusCode == http.StatusForbidden,
		re.StatusCode == http.StatusRequestTimeout, re.StatusCode == http.StatusTooManyRequests:
		return codec.Unavailable(fmt.Errorf("registry answered %d %s: %w", re.StatusCode, http.StatusText(re.StatusCode), err))
	case re.ErrorCode == sr.ErrSchemaNotFound.Code:
		return fmt.Errorf("%w: registry answered %d: %w", ErrUnknownSchema, re.ErrorCode, err)
	default:
		return fmt.Errorf("registry answered %d (error code %d): %w", re.StatusCode, re.ErrorCode, err)
	}
}

// notFound reports whether err is the registry's definite "no such subject
// or version".
func notFound(err error) bool {
	var re *sr.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound && sr.IsNotFoundError(re.ErrorCode)
}
