package schemaregistry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"strconv"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/gokstreams/kstreams/codec"
)

// JSONSchema returns a codec of T as JSON (encoding/json) validated against
// a JSON Schema, in the Confluent wire format, with the schemas of subject
// in the registry behind cl.
//
// Decoding reads the writer's schema by the record's schema ID (once per
// ID), validates the document against it, and unmarshals it into T with
// encoding/json: fields T lacks are dropped, fields the document lacks keep
// their zero values. A document that violates the schema is a decode error
// wrapping ErrInvalidValue and the validator's *jsonschema.ValidationError,
// whose message says which keyword failed where.
//
// Encoding marshals v with encoding/json, validates the result against the
// schema it writes with (T's, [Schema], with [AutoRegister]; else the
// subject's latest version or [Version]) and fails, writing nothing, if it
// does not validate.
//
// The validator loads nothing but the schema and the references the
// registry lists for it: a "$ref" to any other URL fails. JSONSchema builds
// no connection: the first Encode or Decode that needs the registry reaches
// it. Its errors are *Error values; see Avro for their kinds. The codec is
// safe for concurrent use.
func JSONSchema[T any](cl *sr.Client, subject string, opts ...Option) (codec.Codec[T], error) {
	cfg := newConfig(opts)
	fail := func(err error) (codec.Codec[T], error) {
		return nil, &Error{Op: "setup", Format: "JSON Schema", Subject: subject, Err: err}
	}
	if err := cfg.checkSchemaText(cl); err != nil {
		return fail(err)
	}
	var title string
	if cfg.schema != nil {
		var doc struct {
			Title string `json:"title"`
		}
		if err := json.Unmarshal([]byte(cfg.schema.Schema), &doc); err != nil {
			return fail(fmt.Errorf("schemaregistry.Schema: not JSON: %w", err))
		}
		title = doc.Title
	}
	name, err := cfg.subjectName(subject, title)
	if err != nil {
		return fail(err)
	}
	j := &jsonCodec[T]{}
	j.core = newCore[*jsonschema.Schema, *jsonschema.Schema](cl, "JSON Schema", sr.TypeJSON, name, cfg)
	j.core.loadReader = func(ctx context.Context, id int, s sr.Schema) (*jsonschema.Schema, error) {
		return j.compile(ctx, strconv.Itoa(id), s)
	}
	j.core.loadWriter = func(ctx context.Context, s sr.Schema, _ bool) (*jsonschema.Schema, error) {
		return j.compile(ctx, "writer", s)
	}
	j.core.ownSchema = func(context.Context) (sr.Schema, error) { return *cfg.schema, nil }
	if cfg.schema != nil && len(cfg.schema.References) == 0 {
		// Compile now, so that a bad schema fails here.
		if _, err := j.compile(context.Background(), "own", *cfg.schema); err != nil {
			return fail(fmt.Errorf("schemaregistry.Schema: %w", err))
		}
	}
	return j, nil
}

type jsonCodec[T any] struct {
	core *core[*jsonschema.Schema, *jsonschema.Schema]
}

// Decode validates a value in the Confluent wire format against its
// writer's schema and unmarshals it into a T.
func (j *jsonCodec[T]) Decode(data []byte) (T, error) {
	return j.DecodeContext(context.Background(), data)
}

// DecodeContext is Decode, with ctx bounding the wait for the registry
// (see codec.ContextDecoder).
func (j *jsonCodec[T]) DecodeContext(ctx context.Context, data []byte) (T, error) {
	var v T
	id, payload, err := parseHeader(data)
	if err != nil {
		return v, j.core.fail("decode", 0, err)
	}
	sch, err := j.core.reader(ctx, id)
	if err != nil {
		return v, j.core.fail("decode", id, err)
	}
	if err := validateJSON(sch, payload); err != nil {
		return v, j.core.fail("decode", id, err)
	}
	if err := json.Unmarshal(payload, &v); err != nil {
		var zero T
		return zero, j.core.fail("decode", id, fmt.Errorf("%w: into %s: %w", ErrInvalidValue, reflect.TypeFor[T](), err))
	}
	return v, nil
}

// Encode marshals v, validates it and writes it after the header.
func (j *jsonCodec[T]) Encode(v T) ([]byte, error) {
	return j.AppendEncode(nil, v)
}

// AppendEncode appends the encoding of v to dst.
func (j *jsonCodec[T]) AppendEncode(dst []byte, v T) ([]byte, error) {
	w, err := j.core.writerSchema()
	if err != nil {
		return dst, j.core.fail("encode", 0, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return dst, j.core.fail("encode", w.id, fmt.Errorf("%w: %s: %w", ErrInvalidValue, reflect.TypeFor[T](), err))
	}
	if err := validateJSON(w.w, b); err != nil {
		return dst, j.core.fail("encode", w.id, err)
	}
	dst = appendHeader(dst, w.id)
	return append(dst, b...), nil
}

func validateJSON(sch *jsonschema.Schema, doc []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("%w: not JSON: %w", ErrInvalidValue, err)
	}
	if err := sch.Validate(inst); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidValue, err)
	}
	return nil
}

// schemaBase is the base URL schemas are compiled at, so that a
// reference's name, usually a relative URL such as "address.json",
// resolves to where the reference was added.
const schemaBase = "https://schema-registry.invalid/schemas/"

// compile compiles a schema and its references with a compiler that loads
// nothing else.
func (j *jsonCodec[T]) compile(ctx context.Context, name string, s sr.Schema) (*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.UseLoader(refusingLoader{})
	base, _ := url.Parse(schemaBase)
	add := func(name, text string) error {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(text)))
		if err != nil {
			return fmt.Errorf("%w: schema %s is not JSON: %w", ErrSchemaMismatch, name, err)
		}
		loc, err := base.Parse(name)
		if err != nil {
			return fmt.Errorf("%w: reference name %q is not a URL: %w", ErrSchemaMismatch, name, err)
		}
		if err := c.AddResource(loc.String(), doc); err != nil {
			return fmt.Errorf("%w: add schema %s: %w", ErrSchemaMismatch, name, err)
		}
		return nil
	}
	err := j.core.references(ctx, s.References, map[string]bool{}, func(name string, ref sr.SubjectSchema) error {
		if ref.Type != sr.TypeJSON {
			return fmt.Errorf("%w: reference %q is a %s schema", ErrSchemaMismatch, name, ref.Type)
		}
		return add(name, ref.Schema.Schema)
	})
	if err != nil {
		return nil, err
	}
	root := "root-" + name + ".json"
	if err := add(root, s.Schema); err != nil {
		return nil, err
	}
	sch, err := c.Compile(schemaBase + root)
	if err != nil {
		return nil, fmt.Errorf("%w: compile JSON Schema: %w", ErrSchemaMismatch, err)
	}
	return sch, nil
}

type refusingLoader struct{}

func (refusingLoader) Load(u string) (any, error) {
	return nil, fmt.Errorf("%s is not among the schema's registered references", u)
}
