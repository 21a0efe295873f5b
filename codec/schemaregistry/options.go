package schemaregistry

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Option configures a codec. Options are shared by Avro, Protobuf and
// JSONSchema; one that does not apply to a format makes its constructor
// fail with an error naming it.
type Option func(*config)

// SubjectStrategy says how a codec names its subject: Confluent's subject
// name strategies, for a codec bound to one topic.
type SubjectStrategy int

const (
	// SubjectAsGiven uses the constructor's subject argument as the
	// subject's name. It is the default.
	SubjectAsGiven SubjectStrategy = iota

	// TopicName is Confluent's TopicNameStrategy (its serializers'
	// default): the subject argument is a topic, and the subject is
	// "<topic>-value", or "<topic>-key" with [Key]. One schema (and its
	// versions) per topic.
	TopicName

	// RecordName is Confluent's RecordNameStrategy: the subject is the
	// fully qualified name of the record type (the Avro record's full
	// name, the Protobuf message's full name, the JSON Schema's "title"),
	// and the subject argument is not used (pass ""). One schema per type,
	// shared by every topic that carries it.
	RecordName

	// TopicRecordName is Confluent's TopicRecordNameStrategy: the subject
	// argument is a topic, and the subject is "<topic>-<record name>".
	// Several types per topic, each with its own versions.
	TopicRecordName
)

func (s SubjectStrategy) String() string {
	switch s {
	case SubjectAsGiven:
		return "SubjectAsGiven"
	case TopicName:
		return "TopicName"
	case RecordName:
		return "RecordName"
	case TopicRecordName:
		return "TopicRecordName"
	}
	return fmt.Sprintf("SubjectStrategy(%d)", int(s))
}

type config struct {
	strategy     SubjectStrategy
	key          bool
	schema       *sr.Schema
	autoRegister bool
	version      int // 0: latest
	timeout      time.Duration
	cacheSize    int
	msgDesc      protoreflect.MessageDescriptor

	err error // the first bad option
}

const (
	defaultTimeout   = 10 * time.Second
	defaultCacheSize = 1000
)

// checkSchemaText checks the options of a codec whose schema is text (Avro,
// JSON Schema) and its client.
func (c *config) checkSchemaText(cl *sr.Client) error {
	switch {
	case c.err != nil:
		return c.err
	case cl == nil:
		return errNilClient
	case c.msgDesc != nil:
		return fmt.Errorf("MessageDescriptor is a Protobuf option")
	case c.autoRegister && c.version != 0:
		return fmt.Errorf("AutoRegister and Version exclude each other")
	case c.autoRegister && c.schema == nil:
		return fmt.Errorf("AutoRegister needs T's schema: pass schemaregistry.Schema")
	}
	return nil
}

func newConfig(opts []Option) config {
	c := config{timeout: defaultTimeout, cacheSize: defaultCacheSize}
	for _, o := range opts {
		o(&c)
	}
	return c
}

func (c *config) fail(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf(format, args...)
	}
}

// Strategy sets how the codec names its subject from the constructor's
// subject argument, overriding SubjectAsGiven (the argument is the
// subject). See [TopicName], [RecordName] and [TopicRecordName].
func Strategy(s SubjectStrategy) Option {
	return func(c *config) {
		if s < SubjectAsGiven || s > TopicRecordName {
			c.fail("schemaregistry.Strategy: unknown strategy %d", int(s))
		}
		c.strategy = s
	}
}

// Key makes the codec one for record keys: under the TopicName strategy its
// subject is "<topic>-key" instead of "<topic>-value". It changes nothing
// else.
func Key() Option {
	return func(c *config) { c.key = true }
}

// Schema gives T's schema: the Avro schema (JSON) or the JSON Schema
// document, with the references it needs (each naming a subject and
// version already registered). For Avro it is the reader's schema that
// records written with other versions resolve against, and the schema
// AutoRegister registers; for JSON Schema the schema AutoRegister
// registers. Without it, the codec uses the subject's schema (its latest
// version, or [Version]) for both, and AutoRegister has nothing to
// register. Protobuf takes its schema from T's descriptor and refuses this
// option.
func Schema(text string, references ...sr.SchemaReference) Option {
	return func(c *config) {
		if text == "" {
			c.fail("schemaregistry.Schema: empty schema")
		}
		c.schema = &sr.Schema{Schema: text, References: references}
	}
}

// AutoRegister makes Encode register T's schema under the subject (once,
// at the first Encode) and write its ID, as Confluent's serializers do with
// auto.register.schemas=true. Registering a schema that is already there
// returns its ID; one the subject's compatibility rules refuse makes Encode
// fail with the registry's answer. Without AutoRegister, Encode writes with
// the subject's latest version (or [Version]) and never registers: the
// schemas are managed outside the program, as production registries
// usually are. Decoding is not affected.
func AutoRegister() Option {
	return func(c *config) { c.autoRegister = true }
}

// Version makes the codec use version v of its subject (fetched once) as
// the schema it encodes with and, for Avro without [Schema], the reader's
// schema, instead of the subject's latest version (fetched once, at the
// first Encode or Decode that needs it; later versions are not picked up
// until the codec is built again). It cannot be combined with
// AutoRegister.
func Version(v int) Option {
	return func(c *config) {
		if v < 1 {
			c.fail("schemaregistry.Version: version %d, want 1 or more", v)
		}
		c.version = v
	}
}

// RequestTimeout bounds each call to the registry made by Encode or Decode
// (a schema lookup by ID, a registration), overriding 10s. A call that
// times out is unavailable (its error wraps codec.ErrUnavailable). The sr
// client's own HTTP timeout (5s by default) bounds each attempt within it.
func RequestTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.fail("schemaregistry.RequestTimeout: %v, want a positive duration", d)
		}
		c.timeout = d
	}
}

// CacheSize bounds how many writer schemas (by schema ID) the codec keeps
// parsed and resolved against T's, overriding 1000. A schema ID never
// changes meaning in a registry, so entries never go stale; the bound is
// for memory. When full, the entry cached first is dropped. A topic
// usually carries a handful of IDs.
func CacheSize(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.fail("schemaregistry.CacheSize: %d, want 1 or more", n)
		}
		c.cacheSize = n
	}
}

// MessageDescriptor gives the message type of a Protobuf codec whose T is
// *dynamicpb.Message, which carries no type of its own: Decode returns
// dynamicpb.NewMessage(md) filled in, and Encode requires values of that
// type. For generated message types it is not needed (and must match T if
// given).
func MessageDescriptor(md protoreflect.MessageDescriptor) Option {
	return func(c *config) {
		if md == nil {
			c.fail("schemaregistry.MessageDescriptor: nil descriptor")
		}
		c.msgDesc = md
	}
}

var errNilClient = errors.New("nil *sr.Client")

// subjectName applies the strategy.
func (c *config) subjectName(arg, recordName string) (string, error) {
	suffix := "-value"
	if c.key {
		suffix = "-key"
	}
	switch c.strategy {
	case TopicName:
		if arg == "" {
			return "", errors.New("the TopicName strategy needs a topic as the subject argument")
		}
		return arg + suffix, nil
	case RecordName:
		if recordName == "" {
			return "", errors.New("the RecordName strategy needs the record's name, and the schema has none")
		}
		return recordName, nil
	case TopicRecordName:
		if arg == "" {
			return "", errors.New("the TopicRecordName strategy needs a topic as the subject argument")
		}
		if recordName == "" {
			return "", errors.New("the TopicRecordName strategy needs the record's name, and the schema has none")
		}
		return arg + "-" + recordName, nil
	default:
		if arg == "" {
			return "", errors.New("empty subject")
		}
		return arg, nil
	}
}
