package kstream_test

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/gokstreams/kstreams/kstream"
)

// An authorization failure on fetch is fatal: yielded once, as the last
// value of the range, and again by the next range.
func TestFatalFetchError(t *testing.T) {
	e := newEnv(t, 1, 3)
	fake := e.c.Fake()
	if fake == nil {
		t.Fatal("this test injects broker errors and needs the in-process cluster; unset KAFKA_BROKERS")
	}
	fake.ControlKey(kmsg.Fetch.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		fake.KeepControl()
		r := req.(*kmsg.FetchRequest)
		resp := r.ResponseKind().(*kmsg.FetchResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewFetchResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	s := e.stream(kstream.Group("g"))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 2 {
		var errs []error
		for rec, err := range s.Records(e.ctx) {
			if err == nil {
				t.Fatalf("yielded record %d despite the authorization failure", rec.Offset)
			}
			errs = append(errs, err)
		}
		var fe *kstream.FetchError
		if len(errs) != 1 || !errors.As(errs[0], &fe) || !fe.Fatal || !errors.Is(fe, kerr.TopicAuthorizationFailed) {
			t.Fatalf("range yielded %v, want one fatal FetchError wrapping TopicAuthorizationFailed", errs)
		}
		if fe.Topic != e.topic {
			t.Fatalf("FetchError names topic %q, want %q", fe.Topic, e.topic)
		}
	}
}
