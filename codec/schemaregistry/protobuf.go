package schemaregistry

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/gokstreams/kstreams/codec"
)

// Protobuf returns a codec of the Protobuf message T (a generated type such
// as *orderpb.Order, or *dynamicpb.Message with [MessageDescriptor]) in the
// Confluent wire format, with the schemas of subject in the registry behind
// cl: after the header, the message indexes of T in its schema, then the
// message in the Protobuf binary encoding.
//
// Decoding reads the writer's schema by the record's schema ID (once per
// ID) and checks that the message indexes name a message with T's full
// name there; then it unmarshals into a new T. Protobuf's own rules carry
// the evolution: fields unknown to T are kept as unknown fields, fields the
// writer did not have read as their zero values. A schema of another
// format, or indexes that name another message, is a decode error wrapping
// ErrSchemaMismatch.
//
// Encoding with [AutoRegister] registers T's .proto file (printed from its
// descriptor, as Confluent's serializers do) under the subject, after the
// files it imports, each under a subject named by its path (the
// google/protobuf/, google/type/ and confluent/ files, which registries
// know, excepted). Without it, encoding uses the subject's latest version
// (or [Version]), which must declare T's message.
//
// Protobuf builds no connection: the first Encode or Decode that needs the
// registry reaches it. Its errors are *Error values; see Avro for their
// kinds. The codec is safe for concurrent use.
func Protobuf[T proto.Message](cl *sr.Client, subject string, opts ...Option) (codec.Codec[T], error) {
	cfg := newConfig(opts)
	fail := func(err error) (codec.Codec[T], error) {
		return nil, &Error{Op: "setup", Format: "Protobuf", Subject: subject, Err: err}
	}
	switch {
	case cfg.err != nil:
		return fail(cfg.err)
	case cl == nil:
		return fail(errNilClient)
	case cfg.schema != nil:
		return fail(fmt.Errorf("Schema is not for Protobuf: the schema is T's descriptor"))
	case cfg.autoRegister && cfg.version != 0:
		return fail(fmt.Errorf("AutoRegister and Version exclude each other"))
	}
	p := &protoCodec[T]{}
	dynamic := reflect.TypeFor[T]() == reflect.TypeFor[*dynamicpb.Message]()
	switch {
	case reflect.TypeFor[T]().Kind() != reflect.Pointer:
		return fail(fmt.Errorf("T is %s: want a pointer to a message type", reflect.TypeFor[T]()))
	case dynamic && cfg.msgDesc == nil:
		return fail(fmt.Errorf("T is *dynamicpb.Message: pass its type with schemaregistry.MessageDescriptor"))
	case dynamic:
		md := cfg.msgDesc
		p.md = md
		p.newT = func() T { return any(dynamicpb.NewMessage(md)).(T) }
	default:
		var zero T
		p.md = zero.ProtoReflect().Descriptor()
		// A generated message is a pointer to its struct: a new zero struct
		// is a new message, without protoreflect's indirections.
		elem := reflect.TypeFor[T]().Elem()
		p.newT = func() T { return reflect.New(elem).Interface().(T) }
		if cfg.msgDesc != nil && cfg.msgDesc.FullName() != p.md.FullName() {
			return fail(fmt.Errorf("MessageDescriptor is %s, T is %s", cfg.msgDesc.FullName(), p.md.FullName()))
		}
	}
	name, err := cfg.subjectName(subject, string(p.md.FullName()))
	if err != nil {
		return fail(err)
	}
	if cfg.autoRegister {
		// Print now, so that a file the printer cannot handle fails here.
		if _, err := printProto(p.md.ParentFile()); err != nil {
			return fail(err)
		}
	}
	p.core = newCore[*protoReader, []byte](cl, "Protobuf", sr.TypeProtobuf, name, cfg)
	p.core.loadReader = p.loadReader
	p.core.loadWriter = p.loadWriter
	p.core.ownSchema = p.ownSchema
	return p, nil
}

type protoCodec[T proto.Message] struct {
	core *core[*protoReader, []byte]
	md   protoreflect.MessageDescriptor
	newT func() T
}

// protoReader is what decoding needs of a writer's schema.
type protoReader struct {
	path []int          // T's message indexes in the schema; nil if absent
	msgs []protoMessage // every message, for errors
}

// Decode decodes a value in the Confluent wire format into a new T.
func (p *protoCodec[T]) Decode(data []byte) (T, error) {
	return p.DecodeContext(context.Background(), data)
}

// DecodeContext is Decode, with ctx bounding the wait for the registry
// (see codec.ContextDecoder).
func (p *protoCodec[T]) DecodeContext(ctx context.Context, data []byte) (T, error) {
	var zero T
	id, rest, err := parseHeader(data)
	if err != nil {
		return zero, p.core.fail("decode", 0, err)
	}
	var buf [8]int
	indexes, payload, err := parseIndexes(rest, buf[:0])
	if err != nil {
		return zero, p.core.fail("decode", id, err)
	}
	r, err := p.core.reader(ctx, id)
	if err != nil {
		return zero, p.core.fail("decode", id, err)
	}
	if !slices.Equal(indexes, r.path) {
		return zero, p.core.fail("decode", id, p.mismatch(id, slices.Clone(indexes), r))
	}
	m := p.newT()
	if err := proto.Unmarshal(payload, m); err != nil {
		return zero, p.core.fail("decode", id, fmt.Errorf("%w: %s: %w", ErrInvalidValue, p.md.FullName(), err))
	}
	return m, nil
}

func (p *protoCodec[T]) mismatch(id int, indexes []int, r *protoReader) error {
	named := "no message"
	for _, m := range r.msgs {
		if slices.Equal(m.path, indexes) {
			named = "message " + m.name
		}
	}
	if r.path == nil {
		return fmt.Errorf("%w: schema %d does not declare %s; message indexes %v name %s there", ErrSchemaMismatch, id, p.md.FullName(), indexes, named)
	}
	return fmt.Errorf("%w: message indexes %v name %s in schema %d, not %s (indexes %v)", ErrSchemaMismatch, indexes, named, id, p.md.FullName(), r.path)
}

// Encode encodes v after the header and T's message indexes.
func (p *protoCodec[T]) Encode(v T) ([]byte, error) {
	return p.AppendEncode(nil, v)
}

// AppendEncode appends the encoding of v to dst.
func (p *protoCodec[T]) AppendEncode(dst []byte, v T) ([]byte, error) {
	w, err := p.core.writerSchema()
	if err != nil {
		return dst, p.core.fail("encode", 0, err)
	}
	m := v.ProtoReflect()
	if got := m.Descriptor().FullName(); got != p.md.FullName() {
		return dst, p.core.fail("encode", w.id, fmt.Errorf("%w: a %s, the codec's message is %s", ErrInvalidValue, got, p.md.FullName()))
	}
	out, err := proto.MarshalOptions{}.MarshalAppend(append(appendHeader(dst, w.id), w.w...), v)
	if err != nil {
		return dst, p.core.fail("encode", w.id, fmt.Errorf("%w: %s: %w", ErrInvalidValue, p.md.FullName(), err))
	}
	return out, nil
}

func (p *protoCodec[T]) loadReader(_ context.Context, id int, s sr.Schema) (*protoReader, error) {
	msgs, err := protoMessages(s.Schema)
	if err != nil {
		return nil, fmt.Errorf("%w: schema %d: %w", ErrSchemaMismatch, id, err)
	}
	r := &protoReader{msgs: msgs}
	for _, m := range msgs {
		if m.name == string(p.md.FullName()) {
			r.path = m.path
		}
	}
	return r, nil
}

// loadWriter finds T's message indexes in the schema the codec writes with
// and returns the header it writes, without the schema ID's bytes.
func (p *protoCodec[T]) loadWriter(_ context.Context, s sr.Schema, _ bool) ([]byte, error) {
	msgs, err := protoMessages(s.Schema)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSchemaMismatch, err)
	}
	for _, m := range msgs {
		if m.name == string(p.md.FullName()) {
			return appendIndexes(nil, m.path), nil
		}
	}
	return nil, fmt.Errorf("%w: the subject's schema does not declare %s", ErrSchemaMismatch, p.md.FullName())
}

// ownSchema prints T's file, registering the files it imports first.
func (p *protoCodec[T]) ownSchema(ctx context.Context) (sr.Schema, error) {
	return p.fileSchema(ctx, p.md.ParentFile(), map[string]sr.SchemaReference{})
}

func (p *protoCodec[T]) fileSchema(ctx context.Context, fd protoreflect.FileDescriptor, done map[string]sr.SchemaReference) (sr.Schema, error) {
	text, err := printProto(fd)
	if err != nil {
		return sr.Schema{}, err
	}
	s := sr.Schema{Schema: text, Type: sr.TypeProtobuf}
	imports := fd.Imports()
	for i := range imports.Len() {
		dep := imports.Get(i).FileDescriptor
		path := dep.Path()
		if knownProtoFile(path) {
			continue
		}
		ref, ok := done[path]
		if !ok {
			ds, err := p.fileSchema(ctx, dep, done)
			if err != nil {
				return sr.Schema{}, err
			}
			if _, err := p.core.cl.RegisterSchema(ctx, path, ds, -1, -1); err != nil {
				return sr.Schema{}, fmt.Errorf("register imported file %s: %w", path, registryError(err))
			}
			ss, err := p.core.cl.LookupSchema(ctx, path, ds)
			if err != nil {
				return sr.Schema{}, fmt.Errorf("look up imported file %s: %w", path, registryError(err))
			}
			ref = sr.SchemaReference{Name: path, Subject: path, Version: ss.Version}
			done[path] = ref
		}
		s.References = append(s.References, ref)
	}
	return s, nil
}

// knownProtoFile reports whether a registry knows an imported file without
// a reference, as Confluent's serializers assume.
func knownProtoFile(path string) bool {
	return strings.HasPrefix(path, "google/protobuf/") || strings.HasPrefix(path, "google/type/") || strings.HasPrefix(path, "confluent/")
}
