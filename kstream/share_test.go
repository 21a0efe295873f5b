package kstream_test

import (
	_ "context"
	_ "errors"
	"fmt"
	"slices"
	_ "sync"
	_ "sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// shareStream is a stream of the env's topic in the share group group.
func (e *env) shareStream(group string, opts ...kstream.Option) *kstream.Stream[string] {
	e.t.Helper()
	base := []kstream.Option{
		kstream.Brokers(e.c.Brokers()...),
		kstream.Topics(e.topic),
		kstream.ShareGroup(group),
		kstream.Logger(testLogger(e.t)),
		kstream.ClientOptions(kgo.FetchMaxWait(100 * time.Millisecond)),
	}
	s, err := kstream.NewStream(codec.String(), append(base, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

// delivery is a record as a share stream saw it.
type delivery struct {
	val   string
	count int32
}

// drainShare opens a new member of group, takes records until it has seen
// want (a value), and returns what it saw, in order, accepting each.
func (e *env) drainShare(group, want string) []delivery {
	e.t.Helper()
	s := e.shareStream(group)
	defer s.Close()
	var out []delivery
	for rec, err := range s.Records(e.ctx) {
		if err != nil {
			e.t.Fatalf("drain: %v", err)
		}
		out = append(out, delivery{rec.Value, rec.DeliveryCount})
		if rec.Value == want {
			break
		}
	}
	return out
}

func vals(ds []delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.val
	}
	return out
}

func TestShareFinishedRecordsAreAccepted(t *testing.T) {
	e := newEnv(t, 1, 10)
	s := e.shareStream("g")
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	var got []delivery
	for rec, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, delivery{rec.Value, rec.DeliveryCount})
		if len(got) == 10 {
			break // the tenth stays in hand: released by Close
		}
	}
	for i, d := range got {
		if d.val != fmt.Sprintf("v%d", i) || d.count != 1 {
			t.Fatalf("record %d = %+v, want v%d delivered once", i, d, i)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	e.produce(10, 11)
	// v0..v8 were accepted; v9, broken on and released by Close, comes back.
	if got := e.drainShare("g", "v10"); !slices.Equal(vals(got), []string{"v9", "v10"}) || got[0].count != 2 || got[1].count != 1 {
		t.Fatalf("after close a new member got %+v, want v9 (delivered twice) then v10", got)
	}
}
