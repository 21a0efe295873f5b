// Package schemaregistry provides codecs for values kept in a Confluent
// schema registry: Avro, Protobuf and JSON Schema, in the Confluent wire
// format, on franz-go's registry client (github.com/twmb/franz-go/pkg/sr).
// Each returns a codec.Codec[T] for kstream's streams and producers.
//
//	cl, err := sr.NewClient(sr.URLs(os.Getenv("SCHEMA_REGISTRY_URL")))
//	if err != nil {
//		return err
//	}
//	orders, err := schemaregistry.Avro[Order](cl, "orders",
//		schemaregistry.Strategy(schemaregistry.TopicName), // subject "orders-value"
//		schemaregistry.Schema(orderSchema),                 // T's Avro schema
//		schemaregistry.AutoRegister(),                      // register it at the first Encode
//	)
//	if err != nil {
//		return err
//	}
//	stream, err := kstream.NewStream(orders, kstream.Topics("orders"), kstream.Group("billing"))
//	...
//	producer := kstream.NewProducer(eng, "orders", orders)
//
// # Wire format
//
// Every value is the magic byte 0, the schema ID as 4 big-endian bytes, for
// Protobuf the message indexes (zigzag varints), then the value in the
// format's binary (Avro, Protobuf) or text (JSON) encoding: what Confluent's
// serializers in every language write and read.
//
// # Schemas and evolution
//
// A decoder reads each writer's schema by ID, once (a schema ID never
// changes meaning), and resolves it against T's. Avro follows Avro's
// resolution rules: a record written with an older or newer schema decodes
// into T when the two are compatible (fields T's schema adds take their
// defaults, fields it dropped are skipped). Protobuf follows Protobuf's
// (unknown fields kept, missing fields zero), after checking that the
// record's message is T's. JSON Schema validates against the writer's
// schema and unmarshals with encoding/json.
//
// An encoder writes with one schema, found at its first Encode: T's own,
// registered by [AutoRegister]; else the subject's latest version, or the
// version [Version] names. Subjects are named as given, or by Confluent's
// strategies ([Strategy] with [TopicName], [RecordName], [TopicRecordName]).
//
// # Errors
//
// Errors are *Error values naming the operation, the subject and the schema
// ID, wrapping the cause. A bad record (wrong magic byte, truncated value,
// unknown schema ID, a schema that does not resolve, a document that
// violates its JSON Schema) gives an error a stream yields as a
// *kstream.DecodeError. A registry that cannot be reached (connection
// refused, timeout, 5xx) gives an error wrapping codec.ErrUnavailable,
// which a stream never yields as a decode error: it retries the record.
//
// # Connections and concurrency
//
// The constructors validate their options and build no connection. The
// codecs are safe for concurrent use and start no goroutines; they hold
// their caches in memory and nothing to close. Besides codec.Codec[T] they
// implement codec.AppendEncoder[T] and codec.ContextDecoder[T], whose
// DecodeContext stops waiting for the registry when its context ends.
package schemaregistry
