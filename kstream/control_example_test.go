package kstream_test

import (
	"context"
	"fmt"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

func ExampleStopAtEnd() {
	c := startExample("audit", "a", "b", "c")
	defer c.Close()
	s, err := kstream.NewStream(codec.String(), kstream.Brokers(c.Brokers()...), kstream.Topics("audit"), kstream.StopAtEnd(), quiet)
	if err != nil {
		panic(err)
	}
	// The loop ends by itself after the last record the topic had when the
	// range opened the stream.
	for rec, err := range s.Records(context.Background()) {
		if err != nil {
			panic(err)
		}
		fmt.Println(rec.Offset, rec.Value)
	}
	fmt.Println("done")
	// Output:
	// 0 a
	// 1 b
	// 2 c
	// done
}

func ExampleStream_Seek() {
	c := startExample("ledger", "a", "b", "c", "d")
	defer c.Close()
	s, err := kstream.NewStream(codec.String(), kstream.Brokers(c.Brokers()...), kstream.Topics("ledger"), kstream.Group("ledger-replay"), kstream.StopAtEnd(), quiet)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := s.Open(ctx); err != nil {
		panic(err)
	}
	defer s.Close()
	replayed := false
	for rec, err := range s.Records(ctx) {
		if err != nil {
			panic(err)
		}
		fmt.Println(rec.Offset, rec.Value)
		if rec.Value == "c" && !replayed {
			replayed = true
			// From the next record on, the partition is read again from
			// offset 1; commits follow it back.
			if err := s.Seek(ctx, kstream.TopicPartitionOffset{Topic: "ledger", Partition: 0, Offset: 1}); err != nil {
				panic(err)
			}
		}
	}
	// Output:
	// 0 a
	// 1 b
	// 2 c
	// 1 b
	// 2 c
	// 3 d
}
