package codec_test

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gokstreams/kstreams/codec"
)

func ExampleJSON() {
	type Order struct {
		ID     int     `json:"id"`
		Amount float64 `json:"amount"`
	}
	c := codec.JSON[Order]()
	b, _ := c.Encode(Order{ID: 7, Amount: 12.5})
	fmt.Println(string(b))
	o, _ := c.Decode(b)
	fmt.Printf("%+v\n", o)
	_, err := c.Decode([]byte(`{"id":"seven"}`))
	fmt.Println(err)
	// Output:
	// {"id":7,"amount":12.5}
	// {ID:7 Amount:12.5}
	// codec: JSON decode into codec_test.Order: json: cannot unmarshal string into Go struct field Order.id of type int
}

func ExampleDecoderFunc() {
	type Person struct {
		Name string
		Age  int
	}
	// A custom decoder for "name:age" values, as kstreams' deserializer.
	dec := codec.DecoderFunc[Person](func(b []byte) (Person, error) {
		name, age, ok := strings.Cut(string(b), ":")
		if !ok {
			return Person{}, fmt.Errorf("want name:age, got %q", b)
		}
		n, err := strconv.Atoi(age)
		if err != nil {
			return Person{}, fmt.Errorf("age: %w", err)
		}
		return Person{name, n}, nil
	})
	p, err := dec.Decode([]byte("ada:36"))
	fmt.Println(p, err)
	_, err = dec.Decode([]byte("grace"))
	fmt.Println(err)
	// Output:
	// {ada 36} <nil>
	// want name:age, got "grace"
}

func ExampleString() {
	v, _ := codec.String().Decode([]byte("héllo"))
	b, _ := codec.String().Encode("wörld")
	fmt.Println(v, string(b))
	// Output: héllo wörld
}
