package schemaregistry_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/gokstreams/kstreams/codec/schemaregistry"
)

const personSchema = `{
	"$schema": "https://json-schema.org/draft/2020-12/schema",
	"title": "Person",
	"type": "object",
	"properties": {
		"name": {"type": "string", "minLength": 1},
		"age": {"type": "integer", "minimum": 0},
		"address": {"$ref": "address.json"}
	},
	"required": ["name"]
}`

const addressSchema = `{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}`

type address struct {
	City string `json:"city"`
}

type person struct {
	Name    string   `json:"name"`
	Age     int      `json:"age,omitempty"`
	Address *address `json:"address,omitempty"`
}

func TestJSONSchemaRoundTripWithReference(t *testing.T) {
	reg := newRegistry(t)
	cl := reg.client(t)
	reg.register(t, "address", sr.Schema{Schema: addressSchema, Type: sr.TypeJSON})
	ref := sr.SchemaReference{Name: "address.json", Subject: "address", Version: 1}
	c, err := schemaregistry.JSONSchema[person](cl, "people", schemaregistry.Strategy(schemaregistry.TopicName),
		schemaregistry.Schema(personSchema, ref), schemaregistry.AutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	in := person{Name: "ada", Age: 36, Address: &address{City: "London"}}
	b, err := c.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	ss, ok := reg.GetSchema("people-value", 1)
	if !ok || ss.Type != sr.TypeJSON {
		t.Fatalf("people-value version 1: %+v", ss)
	}
	// By hand: header, then the document encoding/json writes.
	want, _ := json.Marshal(in)
	if b[0] != 0 || int(binary.BigEndian.Uint32(b[1:5])) != ss.ID || string(b[5:]) != string(want) {
		t.Fatalf("value %q, want header with ID %d then %s", b, ss.ID, want)
	}
	var serde sr.Serde
	serde.Register(ss.ID, person{}, sr.DecodeFn(func(b []byte, v any) error { return json.Unmarshal(b, v) }))
	var viaSerde person
	if err := serde.Decode(b, &viaSerde); err != nil {
		t.Fatal(err)
	}
	got, err := c.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, got); diff != "" {
		t.Fatalf("round trip (-sent +decoded):\n%s", diff)
	}
	if diff := cmp.Diff(in, viaSerde); diff != "" {
		t.Fatalf("sr.Serde (-sent +decoded):\n%s", diff)
	}
}

func TestJSONSchemaViolations(t *testing.T) {
	reg := newRegistry(t)
	cl := reg.client(t)
	reg.register(t, "address", sr.Schema{Schema: addressSchema, Type: sr.TypeJSON})
	ref := sr.SchemaReference{Name: "address.json", Subject: "address", Version: 1}
	id := reg.register(t, "people-value", sr.Schema{Schema: personSchema, Type: sr.TypeJSON, References: []sr.SchemaReference{ref}})
	c, err := schemaregistry.JSONSchema[person](cl, "people-value")
	if err != nil {
		t.Fatal(err)
	}
	hdr := []byte{0, 0, 0, 0, byte(id)}
	for _, tc := range []struct {
		name, doc string
		want      error
	}{
		{"missing required", `{"age": 3}`, schemaregistry.ErrInvalidValue},
		{"below minimum", `{"name": "a", "age": -1}`, schemaregistry.ErrInvalidValue},
		{"violates the referenced schema", `{"name": "a", "address": {}}`, schemaregistry.ErrInvalidValue},
		{"not JSON", `{"name": `, schemaregistry.ErrInvalidValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Decode(append(hdr, tc.doc...))
			badInput(t, err, "people-value", id, tc.want)
			if tc.name != "not JSON" {
				var ve *jsonschema.ValidationError
				if !errors.As(err, &ve) {
					t.Fatalf("error %v does not wrap a *jsonschema.ValidationError", err)
				}
			}
		})
	}
	if got, err := c.Decode(append(hdr, `{"name":"ok","extra":true}`...)); err != nil || got.Name != "ok" {
		t.Fatalf("a valid document with a field T lacks: %+v, %v", got, err)
	}
	// Encoding validates too, and writes nothing when it fails.
	b, err := c.Encode(person{Name: ""})
	badInput(t, err, "people-value", id, schemaregistry.ErrInvalidValue)
	if b != nil {
		t.Fatalf("failed Encode returned %q", b)
	}
}

// A $ref to anything but a registered reference is not loaded.
func TestJSONSchemaLoadsNothingElse(t *testing.T) {
	reg := newRegistry(t)
	id := reg.register(t, "s", sr.Schema{Type: sr.TypeJSON, Schema: `{"$ref": "file:///etc/passwd"}`})
	c, err := schemaregistry.JSONSchema[map[string]any](reg.client(t), "s")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Decode(append([]byte{0, 0, 0, 0, byte(id)}, `{}`...))
	badInput(t, err, "s", id, schemaregistry.ErrSchemaMismatch)
	if !contains(err, "not among the schema's registered references") {
		t.Fatalf("error %q does not say why", err)
	}
}
