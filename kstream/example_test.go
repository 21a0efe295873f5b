package kstream_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"time"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// quiet keeps the examples' output to what they print.
var quiet = kstream.Logger(slog.New(slog.DiscardHandler))

// startExample starts an embedded cluster with one topic of one partition
// holding values.
func startExample(topic string, values ...string) *kstreamtest.Cluster {
	c, err := kstreamtest.Start(kstreamtest.Topic(topic, 1))
	if err != nil {
		panic(err)
	}
	if err := kstreamtest.ProduceValues(context.Background(), c, topic, 1, codec.String(), values...); err != nil {
		panic(err)
	}
	return c
}

type Order struct {
	ID     int     `json:"id"`
	Amount float64 `json:"amount"`
}

func ExampleNewStream() {
	_, err := kstream.NewStream(codec.JSON[Order](), kstream.Topics("orders"), kstream.TopicPattern("orders-.*"))
	fmt.Println(errors.Is(err, kstream.ErrInvalidOption))
	fmt.Println(err)

	s, err := kstream.NewStream(codec.JSON[Order](), kstream.Topics("orders"), kstream.Group("billing"), kstream.Name("billing"))
	if err != nil {
		panic(err)
	}
	fmt.Println(s.Name())
	// Output:
	// true
	// kstream: invalid option: Topics ["orders"] and TopicPattern "orders-.*" cannot be combined
	// billing
}

func ExampleStream_Records() {
	c := startExample("greetings", "hello", "bonjour", "hallo")
	defer c.Close()
	brokers := c.Brokers()
	s, err := kstream.NewStream(codec.String(), kstream.Brokers(brokers...), kstream.Topics("greetings"), kstream.Group("example"), quiet)
	if err != nil {
		panic(err)
	}
	// Ranging a stream that was never opened opens it for the loop and
	// closes it after, committing what the loop processed.
	for rec, err := range s.Records(context.Background()) {
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s/%d@%d: %s\n", rec.Topic, rec.Partition, rec.Offset, rec.Value)
		if rec.Value == "hallo" {
			break // "hallo" stays uncommitted: the body did not finish with it
		}
	}
	// Output:
	// greetings/0@0: hello
	// greetings/0@1: bonjour
	// greetings/0@2: hallo
}

func ExampleStream_Use() {
	c := startExample("orders", `{"id":1,"amount":9.5}`, `{"id":2,"amount":20}`, `oops`)
	defer c.Close()
	brokers := c.Brokers()
	orders, err := kstream.NewStream(codec.JSON[Order](), kstream.Brokers(brokers...), kstream.Topics("orders"), kstream.Group("billing"), quiet)
	if err != nil {
		panic(err)
	}
	err = orders.Use(context.Background(), func(records iter.Seq2[kstream.Record[Order], error]) error {
		for rec, err := range records {
			var de *kstream.DecodeError
			if errors.As(err, &de) {
				fmt.Printf("undecodable record at %s/%d@%d\n", de.Topic, de.Partition, de.Offset)
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Printf("order %d: %.2f\n", rec.Value.ID, rec.Value.Amount)
		}
		return nil
	})
	fmt.Println("Use returned", err)
	// Output:
	// order 1: 9.50
	// order 2: 20.00
	// undecodable record at orders/0@2
	// Use returned <nil>
}

func ExampleStream_Commit() {
	c := startExample("payments", "p1", "p2", "p3")
	defer c.Close()
	brokers := c.Brokers()
	ctx := context.Background()
	s, err := kstream.NewStream(codec.String(), kstream.Brokers(brokers...), kstream.Topics("payments"), kstream.Group("ledger"),
		kstream.ManualCommit(), kstream.Listener(kstream.ManualCommitRebalanceListener{}), quiet)
	if err != nil {
		panic(err)
	}
	err = s.Use(ctx, func(records iter.Seq2[kstream.Record[string], error]) error {
		for rec, err := range records {
			if err != nil {
				return err
			}
			fmt.Println("stored", rec.Value)      // store it first...
			if err := s.Commit(ctx); err != nil { // ...then commit it
				return err
			}
			if rec.Value == "p2" {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		panic(err)
	}
	committed, err := c.Committed(ctx, "ledger")
	if err != nil {
		panic(err)
	}
	fmt.Println("committed offset:", committed["payments"][0])
	// Output:
	// stored p1
	// stored p2
	// committed offset: 2
}

func ExampleStream_Batches() {
	c := startExample("clicks", "a", "b", "c", "d", "e")
	defer c.Close()
	brokers := c.Brokers()
	s, err := kstream.NewStream(codec.String(), kstream.Brokers(brokers...), kstream.Topics("clicks"), kstream.Group("counter"), quiet)
	if err != nil {
		panic(err)
	}
	seen := 0
	for batch, err := range s.Batches(context.Background(), 2, 100*time.Millisecond) {
		if err != nil {
			panic(err)
		}
		var vals []string
		for _, rec := range batch {
			vals = append(vals, rec.Value)
		}
		fmt.Println(vals)
		if seen += len(batch); seen == 5 {
			break
		}
	}
	// Output:
	// [a b]
	// [c d]
	// [e]
}

func ExampleStream_Handle() {
	c := startExample("signups", "ada", "grace")
	defer c.Close()
	brokers := c.Brokers()
	eng, err := kstream.NewEngine(kstream.Brokers(brokers...), quiet)
	if err != nil {
		panic(err)
	}
	s, err := kstream.NewStream(codec.String(), kstream.Topics("signups"), kstream.Group("welcome"))
	if err != nil {
		panic(err)
	}
	done := make(chan struct{})
	s.Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		fmt.Println("welcome,", rec.Value)
		if rec.Value == "grace" {
			close(done)
		}
		return nil // processed: it will be committed
	})
	if err := eng.Add(s); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-done; cancel() }()
	fmt.Println("Run returned", eng.Run(ctx))
	// Output:
	// welcome, ada
	// welcome, grace
	// Run returned <nil>
}

func ExampleEngine_Send() {
	c := startExample("audit")
	defer c.Close()
	brokers := c.Brokers()
	ctx := context.Background()
	eng, err := kstream.NewEngine(kstream.Brokers(brokers...), quiet)
	if err != nil {
		panic(err)
	}
	if err := eng.Start(ctx); err != nil {
		panic(err)
	}
	defer eng.Stop(ctx)
	md, err := eng.Send(ctx, "audit", []byte("login"), kstream.WithKey([]byte("user-7")), kstream.WithHeader("source", []byte("web")))
	if err != nil {
		panic(err)
	}
	fmt.Printf("written to %s/%d at offset %d\n", md.Topic, md.Partition, md.Offset)

	orders := kstream.NewProducer(eng, "audit", codec.JSON[Order]())
	md, err = orders.Send(ctx, []byte("order-1"), Order{ID: 1, Amount: 12.5})
	if err != nil {
		panic(err)
	}
	fmt.Printf("order written at offset %d\n", md.Offset)
	// Output:
	// written to audit/0 at offset 0
	// order written at offset 1
}

func ExampleListenerFuncs() {
	c := startExample("inventory", "x")
	defer c.Close()
	brokers := c.Brokers()
	listener := kstream.ListenerFuncs{
		Assigned: func(_ context.Context, s kstream.AnyStream, assigned map[string][]int32) {
			fmt.Println(s.Name(), "assigned", assigned)
		},
		Revoked: func(_ context.Context, s kstream.AnyStream, revoked map[string][]int32) {
			fmt.Println(s.Name(), "revoked", revoked)
		},
	}
	s, err := kstream.NewStream(codec.String(), kstream.Brokers(brokers...), kstream.Topics("inventory"), kstream.Group("stock"),
		kstream.Name("stock"), kstream.Listener(listener), kstream.Listener(kstream.MetricsRebalanceListener{}), quiet)
	if err != nil {
		panic(err)
	}
	for rec := range s.Records(context.Background()) {
		fmt.Println("got", rec.Value)
		break
	}
	// Output:
	// stock assigned map[inventory:[0]]
	// got x
	// stock revoked map[inventory:[0]]
}
