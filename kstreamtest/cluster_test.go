package kstreamtest_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstreamtest"
)

func TestClusterProduceAndReadBack(t *testing.T) {
	c := kstreamtest.NewCluster(t, kstreamtest.Topic("a", 3))
	if c.Fake() == nil && len(c.Brokers()) == 0 {
		t.Fatal("no brokers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := kstreamtest.ProduceValues(ctx, c, "a", 3, codec.String(), "x", "y", "z", "w"); err != nil {
		t.Fatal(err)
	}
	end, err := c.EndOffsets(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int32]int64{0: 2, 1: 1, 2: 1}; !maps.Equal(end, want) {
		t.Fatalf("end offsets %v, want %v (value i on partition i%%3)", end, want)
	}
	// A group's commits read back through Committed.
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: "a", Partition: 1, At: 1, LeaderEpoch: -1})
	if _, err := c.Admin().CommitOffsets(ctx, "g", offs); err != nil {
		t.Fatal(err)
	}
	got, err := c.Committed(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got["a"], map[int32]int64{1: 1}) {
		t.Fatalf("Committed = %v", got)
	}
}

func TestStartClusterForPrograms(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	brokers, stop, err := kstreamtest.StartCluster(kstreamtest.Topic("b", 1), kstreamtest.NumBrokers(2))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if len(brokers) != 2 {
		t.Fatalf("brokers %v, want 2", brokers)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "b", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatalf("produce to the started cluster: %v", err)
	}
}
