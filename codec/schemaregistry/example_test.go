package schemaregistry_test

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/codec/schemaregistry"
)

// An Avro codec that registers its schema, and a newer version of the
// program reading what the older wrote.
func ExampleAvro() {
	registry := srfake.New() // in a program: the registry's URL
	defer registry.Close()
	cl, _ := sr.NewClient(sr.URLs(registry.URL()))

	type OrderV1 struct {
		ID     int64   `avro:"id"`
		Amount float64 `avro:"amount"`
	}
	type OrderV2 struct {
		ID       int64   `avro:"id"`
		Amount   float64 `avro:"amount"`
		Currency string  `avro:"currency"`
	}
	v1, _ := schemaregistry.Avro[OrderV1](cl, "orders",
		schemaregistry.Strategy(schemaregistry.TopicName),
		schemaregistry.Schema(`{"type":"record","name":"Order","fields":[
			{"name":"id","type":"long"},{"name":"amount","type":"double"}]}`),
		schemaregistry.AutoRegister())
	v2, _ := schemaregistry.Avro[OrderV2](cl, "orders",
		schemaregistry.Strategy(schemaregistry.TopicName),
		schemaregistry.Schema(`{"type":"record","name":"Order","fields":[
			{"name":"id","type":"long"},{"name":"amount","type":"double"},
			{"name":"currency","type":"string","default":"EUR"}]}`),
		schemaregistry.AutoRegister())

	b, _ := v1.Encode(OrderV1{ID: 7, Amount: 12.5})
	fmt.Printf("header % x\n", b[:5])
	o, _ := v2.Decode(b)
	fmt.Printf("%+v\n", o)

	_, err := v2.Decode([]byte(`{"id": 7}`))
	fmt.Println(err)
	fmt.Println(errors.Is(err, schemaregistry.ErrMagicByte), errors.Is(err, codec.ErrUnavailable))
	// Output:
	// header 00 00 00 00 01
	// {ID:7 Amount:12.5 Currency:EUR}
	// schemaregistry: Avro decode, subject "orders-value": wrong magic byte: first byte is 0x7b, want 0x00 (was this value written through a schema registry?)
	// true false
}
