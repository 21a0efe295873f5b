package kstream_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// Two streams get client IDs of their own, containing their names, without
// Metrics.
func TestClientIDsUniqueWithoutMetrics(t *testing.T) {
	e := newEnv(t, 2, 0)
	a := e.stream(kstream.Group("cid"), kstream.Name("alpha"))
	b := e.stream(kstream.Group("cid"), kstream.Name("beta"))
	for _, s := range []*kstream.Stream[string]{a, b} {
		if err := s.Open(e.ctx); err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		go func() {
			for range s.Records(e.ctx) {
			}
		}()
	}
	g := e.c.WaitGroupStable(t, "cid", 2, 20*time.Second)
	ids := map[string]bool{}
	for _, m := range g.Members {
		ids[m.ClientID] = true
	}
	if len(ids) != 2 {
		t.Fatalf("client IDs %v: want two distinct", ids)
	}
	for _, name := range []string{"alpha", "beta"} {
		found := false
		for id := range ids {
			if strings.Contains(id, name) && strings.HasPrefix(id, "kstreams-") {
				found = true
			}
		}
		if !found {
			t.Errorf("no client ID names stream %q: %v", name, ids)
		}
	}
}

// A static member (InstanceID) stays in its group when it closes, and the
// same instance opening again takes its place at once, with its partitions,
// long before the session timeout (20 s here) would have let a new member
// in.
func TestInstanceIDRestartWithoutRebalanceWait(t *testing.T) {
	e := newEnv(t, 2, 4)
	open := func() *kstream.Stream[string] {
		s := e.stream(kstream.Group("static"), kstream.Name("pod-0"), kstream.InstanceID("pod-0"),
			kstream.ClientOptions(kgo.SessionTimeout(20*time.Second)))
		if err := s.Open(e.ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	take(t, e.ctx, s, 2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if g, err := e.c.DescribeGroup(e.ctx, "static"); err != nil || len(g.Members) != 1 {
		t.Fatalf("after the static member closed: %v (err %v), want it still in the group", g, err)
	}
	start := time.Now()
	s = open()
	defer s.Close()
	take(t, e.ctx, s, 3) // the record broken on, and two more
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the restarted static member got records after %v, want well within the session timeout", took)
	}
	if g, err := e.c.DescribeGroup(e.ctx, "static"); err != nil || len(g.Members) != 1 {
		t.Fatalf("after the restart: %v (err %v), want one member", g, err)
	}
}

func TestInstanceIDNeedsGroup(t *testing.T) {
	for _, opts := range [][]kstream.Option{
		{kstream.Topics("t"), kstream.InstanceID("i")},
		{kstream.Topics("t"), kstream.Group("g"), kstream.InstanceID(" ")},
	} {
		if _, err := kstream.NewStream(codec.String(), opts...); !errors.Is(err, kstream.ErrInvalidOption) {
			t.Errorf("NewStream: %v, want ErrInvalidOption", err)
		}
	}
	if _, err := kstream.NewEngine(kstream.InstanceID("i")); !errors.Is(err, kstream.ErrInvalidOption) {
		t.Errorf("NewEngine(InstanceID): %v, want ErrInvalidOption", err)
	}
}
