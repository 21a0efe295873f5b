package kstream_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

func TestSeveralTopics(t *testing.T) {
	checkNoGoroutineLeak(t)
	c := kstreamtest.NewCluster(t, kstreamtest.Topic("local--kstreams", 2), kstreamtest.Topic("local--hello-world", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kstreamtest.ProduceValues(ctx, c, "local--kstreams", 2, codec.String(), "a", "b"); err != nil {
		t.Fatal(err)
	}
	if err := kstreamtest.ProduceValues(ctx, c, "local--hello-world", 1, codec.String(), "c"); err != nil {
		t.Fatal(err)
	}
	s, err := kstream.NewStream(codec.String(), kstream.Brokers(c.Brokers()...),
		kstream.Topics("local--kstreams", "local--hello-world"), kstream.Group("example-group"), kstream.Logger(testLogger(t)), groupProtocol())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rec, err := range s.Records(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec.Topic+":"+rec.Value)
		if len(got) == 3 {
			break
		}
	}
	sort.Strings(got)
	if want := []string{"local--hello-world:c", "local--kstreams:a", "local--kstreams:b"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestTopicPatternPicksUpNewTopic(t *testing.T) {
	checkNoGoroutineLeak(t)
	c := kstreamtest.NewCluster(t, kstreamtest.Topic("events-a", 1), kstreamtest.Topic("other", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tp := range []string{"events-a", "other"} {
		if err := kstreamtest.ProduceValues(ctx, c, tp, 1, codec.String(), tp+"-1"); err != nil {
			t.Fatal(err)
		}
	}
	s, err := kstream.NewStream(codec.String(), kstream.Brokers(c.Brokers()...),
		kstream.TopicPattern("events-.*"), kstream.Group("pattern"), kstream.Logger(testLogger(t)), groupProtocol(),
		kstream.ClientOptions(kgo.MetadataMinAge(50*time.Millisecond), kgo.MetadataMaxAge(200*time.Millisecond), kgo.HeartbeatInterval(100*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []string
	for rec, err := range s.Records(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec.Value)
		if len(got) == 1 {
			// Created after the stream subscribed.
			if err := c.CreateTopic(ctx, "events-b", 1); err != nil {
				t.Fatal(err)
			}
			if err := kstreamtest.ProduceValues(ctx, c, "events-b", 1, codec.String(), "events-b-1"); err != nil {
				t.Fatal(err)
			}
		}
		if len(got) == 2 {
			break
		}
	}
	if fmt.Sprint(got) != "[events-a-1 events-b-1]" {
		t.Fatalf("got %v, want events-a-1 then events-b-1 (and nothing from other)", got)
	}
	if a := s.Assignment(); len(a["events-b"]) != 1 || len(a["other"]) != 0 {
		t.Fatalf("Assignment() = %v", a)
	}
}
