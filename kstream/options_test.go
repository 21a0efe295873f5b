package kstream_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

func TestNewStreamValidation(t *testing.T) {
	tpo := func(topic string, p int32, off int64) kstream.TopicPartitionOffset {
		return kstream.TopicPartitionOffset{Topic: topic, Partition: p, Offset: off}
	}
	for _, tc := range []struct {
		name string
		opts []kstream.Option
		want string // the option the error must name
	}{
		{"no topics", nil, "Topics or TopicPattern"},
		{"empty topic", []kstream.Option{kstream.Topics("")}, "Topics"},
		{"pattern and topics", []kstream.Option{kstream.Topics("a"), kstream.TopicPattern("b.*")}, "cannot be combined"},
		{"bad regex", []kstream.Option{kstream.TopicPattern("(")}, "TopicPattern"},
		{"initial offset without topic", []kstream.Option{kstream.Topics("a"), kstream.InitialOffsets(tpo("", 0, 1))}, "InitialOffsets"},
		{"initial offset of another topic", []kstream.Option{kstream.Topics("a"), kstream.InitialOffsets(tpo("b", 0, 1))}, "InitialOffsets"},
		{"initial offset not matching pattern", []kstream.Option{kstream.TopicPattern("a.*"), kstream.InitialOffsets(tpo("b", 0, 1))}, "InitialOffsets"},
		{"negative initial offset", []kstream.Option{kstream.Topics("a"), kstream.InitialOffsets(tpo("a", 0, -1))}, "InitialOffsets"},
		{"duplicate initial offset", []kstream.Option{kstream.Topics("a"), kstream.InitialOffsets(tpo("a", 0, 1), tpo("a", 0, 2))}, "given twice"},
		{"max poll zero", []kstream.Option{kstream.Topics("a"), kstream.MaxPollRecords(0)}, "MaxPollRecords"},
		{"empty group", []kstream.Option{kstream.Topics("a"), kstream.Group("")}, "Group"},
		{"no brokers", []kstream.Option{kstream.Topics("a"), kstream.Brokers()}, "Brokers"},
		{"nil listener", []kstream.Option{kstream.Topics("a"), kstream.Listener(nil)}, "Listener"},
		{"bad reset", []kstream.Option{kstream.Topics("a"), kstream.ResetOffset(7)}, "ResetOffset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kstream.NewStream(codec.String(), tc.opts...)
			if !errors.Is(err, kstream.ErrInvalidOption) {
				t.Fatalf("err = %v, want ErrInvalidOption", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %q does not name %q", err, tc.want)
			}
		})
	}
	if _, err := kstream.NewStream[string](nil, kstream.Topics("a")); !errors.Is(err, kstream.ErrInvalidOption) {
		t.Fatalf("nil decoder: %v", err)
	}
}

func TestNewStreamNames(t *testing.T) {
	a, err := kstream.NewStream(codec.String(), kstream.Topics("orders"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := kstream.NewStream(codec.String(), kstream.Topics("orders"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Name() == b.Name() || !strings.HasPrefix(a.Name(), "orders-") {
		t.Fatalf("generated names %q and %q, want unique names from the topic", a.Name(), b.Name())
	}
	c, err := kstream.NewStream(codec.String(), kstream.Topics("orders"), kstream.Name("billing"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name() != "billing" {
		t.Fatalf("Name() = %q", c.Name())
	}
}

// franz-go options that would take the stream's place are rejected or
// overridden, so that the stream's subscription and gating hold.
func TestClientOptionsCannotReplaceSubscription(t *testing.T) {
	e := newEnv(t, 1, 2)
	if err := e.c.CreateTopic(e.ctx, "other", 1); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Produce(e.ctx, &kgo.Record{Topic: "other", Value: []byte("from other")}); err != nil {
		t.Fatal(err)
	}
	s := e.stream(kstream.Group("g"), kstream.ClientOptions(kgo.ConsumeTopics("other")))
	if got := take(t, e.ctx, s, 1)[0]; got.Topic != e.topic {
		t.Fatalf("read %q from topic %q: ClientOptions replaced the stream's Topics", got.Value, got.Topic)
	}
	for _, tc := range []struct {
		opt  kgo.Opt
		want string
	}{
		{kgo.ConsumerGroup("sneaky"), "use the Group option"},
		{kgo.ConsumeRegex(), "use the TopicPattern option"},
	} {
		s := e.stream(kstream.ClientOptions(tc.opt))
		err := s.Open(e.ctx)
		if !errors.Is(err, kstream.ErrInvalidOption) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("Open with %T = %v, want ErrInvalidOption saying %q", tc.opt, err, tc.want)
		}
	}
}
