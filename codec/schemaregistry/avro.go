package schemaregistry

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/gokstreams/kstreams/codec"
)

// Avro returns a codec of T in Avro, in the Confluent wire format, with the
// schemas of subject in the registry behind cl. Values are mapped to the
// schema by github.com/hamba/avro/v2: struct fields by their `avro` tag
// (or name), a nullable union to a pointer, and so on.
//
// Decoding reads the writer's schema by the record's schema ID (once per
// ID) and resolves it against T's schema, the reader's: [Schema] when
// given, else the subject's latest version (or [Version]), fetched once. So
// a record written with an older or a newer compatible schema decodes into
// T: fields the writer did not have take the reader's defaults, fields T's
// schema does not have are dropped. A writer's schema that does not resolve
// is a decode error wrapping ErrSchemaMismatch.
//
// Encoding writes with T's schema when [AutoRegister] registers it, else
// with the subject's latest version (or [Version]); T's values must fit
// that schema.
//
// Avro builds no connection: the first Encode or Decode that needs the
// registry reaches it. Its errors are *Error values: see ErrMagicByte and
// the other causes for bad input, and codec.ErrUnavailable for a registry
// that cannot be reached. The codec is safe for concurrent use. A nil
// record value (a tombstone) is never passed to Decode: a stream yields the
// zero T for it.
func Avro[T any](cl *sr.Client, subject string, opts ...Option) (codec.Codec[T], error) {
	cfg := newConfig(opts)
	fail := func(err error) (codec.Codec[T], error) {
		return nil, &Error{Op: "setup", Format: "Avro", Subject: subject, Err: err}
	}
	if err := cfg.checkSchemaText(cl); err != nil {
		return fail(err)
	}
	var recordName string
	if cfg.schema != nil {
		name, err := avroFullName(cfg.schema.Schema)
		if err != nil {
			return fail(fmt.Errorf("schemaregistry.Schema: %w", err))
		}
		recordName = name
	}
	name, err := cfg.subjectName(subject, recordName)
	if err != nil {
		return fail(err)
	}
	a := &avroCodec[T]{}
	a.core = newCore[avro.Schema, avro.Schema](cl, "Avro", sr.TypeAvro, name, cfg)
	a.core.loadReader = a.loadReader
	a.core.loadWriter = a.loadWriter
	a.core.ownSchema = func(context.Context) (sr.Schema, error) { return *cfg.schema, nil }
	if cfg.schema != nil && len(cfg.schema.References) == 0 {
		// Parse now, so that a bad schema fails here and not at the first
		// record.
		s, err := parseAvro(cfg.schema.Schema, nil)
		if err != nil {
			return fail(fmt.Errorf("schemaregistry.Schema: %w", err))
		}
		a.own = s
	}
	return a, nil
}

type avroCodec[T any] struct {
	core *core[avro.Schema, avro.Schema]

	ownMu sync.Mutex
	own   avro.Schema // T's schema, the reader's; nil until known
}

// Decode decodes a value in the Confluent wire format into a T.
func (a *avroCodec[T]) Decode(data []byte) (T, error) {
	return a.DecodeContext(context.Background(), data)
}

// DecodeContext is Decode, with ctx bounding the wait for the registry
// (see codec.ContextDecoder).
func (a *avroCodec[T]) DecodeContext(ctx context.Context, data []byte) (T, error) {
	var v T
	id, payload, err := parseHeader(data)
	if err != nil {
		return v, a.core.fail("decode", 0, err)
	}
	s, err := a.core.reader(ctx, id)
	if err != nil {
		return v, a.core.fail("decode", id, err)
	}
	if err := avro.Unmarshal(s, payload, &v); err != nil {
		var zero T
		return zero, a.core.fail("decode", id, fmt.Errorf("%w: %w", ErrInvalidValue, err))
	}
	return v, nil
}

// Encode encodes v with the codec's writer schema, after the header.
func (a *avroCodec[T]) Encode(v T) ([]byte, error) {
	return a.AppendEncode(nil, v)
}

// AppendEncode appends the encoding of v to dst.
func (a *avroCodec[T]) AppendEncode(dst []byte, v T) ([]byte, error) {
	w, err := a.core.writerSchema()
	if err != nil {
		return dst, a.core.fail("encode", 0, err)
	}
	b, err := avro.Marshal(w.w, v)
	if err != nil {
		return dst, a.core.fail("encode", w.id, fmt.Errorf("%w: %s: %w", ErrInvalidValue, reflect.TypeFor[T](), err))
	}
	dst = appendHeader(dst, w.id)
	return append(dst, b...), nil
}

// readerSchema returns T's schema: the Schema option, else the subject's
// version, fetched once.
func (a *avroCodec[T]) readerSchema(ctx context.Context) (avro.Schema, error) {
	a.ownMu.Lock()
	defer a.ownMu.Unlock()
	if a.own != nil {
		return a.own, nil
	}
	var s sr.Schema
	if a.core.cfg.schema != nil {
		s = *a.core.cfg.schema
	} else {
		ss, err := a.core.subjectVersion(ctx)
		if err != nil {
			return nil, fmt.Errorf("T's schema: %w", err)
		}
		if ss.Type != sr.TypeAvro {
			return nil, fmt.Errorf("T's schema: %w: version %d of the subject is a %s schema", ErrSchemaMismatch, ss.Version, ss.Type)
		}
		s = ss.Schema
	}
	parsed, err := a.parseWithReferences(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("T's schema: %w", err)
	}
	a.own = parsed
	return parsed, nil
}

func (a *avroCodec[T]) loadReader(ctx context.Context, id int, s sr.Schema) (avro.Schema, error) {
	writer, err := a.parseWithReferences(ctx, s)
	if err != nil {
		return nil, err
	}
	reader, err := a.readerSchema(ctx)
	if err != nil {
		return nil, err
	}
	if writer.Fingerprint() == reader.Fingerprint() {
		return reader, nil
	}
	resolved, err := avro.NewSchemaCompatibility().Resolve(reader, writer)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSchemaMismatch, err)
	}
	return resolved, nil
}

func (a *avroCodec[T]) loadWriter(ctx context.Context, s sr.Schema, registered bool) (avro.Schema, error) {
	if !registered {
		return a.readerSchema(ctx)
	}
	return a.parseWithReferences(ctx, s)
}

// parseWithReferences parses a schema after the named types it references,
// all in a cache of its own: named types of other schemas (or of other
// versions of this one) never leak in.
func (a *avroCodec[T]) parseWithReferences(ctx context.Context, s sr.Schema) (avro.Schema, error) {
	cache := &avro.SchemaCache{}
	err := a.core.references(ctx, s.References, map[string]bool{}, func(name string, ref sr.SubjectSchema) error {
		if ref.Type != sr.TypeAvro {
			return fmt.Errorf("%w: reference %q is a %s schema", ErrSchemaMismatch, name, ref.Type)
		}
		if _, err := parseAvro(ref.Schema.Schema, cache); err != nil {
			return fmt.Errorf("reference %q: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return parseAvro(s.Schema, cache)
}

func parseAvro(text string, cache *avro.SchemaCache) (avro.Schema, error) {
	if cache == nil {
		cache = &avro.SchemaCache{}
	}
	s, err := avro.ParseWithCache(text, "", cache)
	if err != nil {
		return nil, fmt.Errorf("%w: parse Avro schema: %w", ErrSchemaMismatch, err)
	}
	return s, nil
}

// avroFullName returns the full name of a named schema's top-level type,
// for the record subject strategies; "" for a schema without a name.
func avroFullName(text string) (string, error) {
	var top struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	}
	if err := json.Unmarshal([]byte(text), &top); err != nil {
		var str string
		if json.Unmarshal([]byte(text), &str) == nil {
			return "", nil // a primitive type name such as "string"
		}
		if strings.HasPrefix(strings.TrimSpace(text), "[") {
			return "", nil // a union
		}
		return "", fmt.Errorf("not an Avro schema: %w", err)
	}
	if top.Namespace != "" && !strings.Contains(top.Name, ".") {
		return top.Namespace + "." + top.Name, nil
	}
	return top.Name, nil
}
