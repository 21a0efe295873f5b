package kstream_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/kstream"
)

func TestNewGroupStartsAtEarliest(t *testing.T) {
	e := newEnv(t, 1, 3)
	s := e.stream(kstream.Group("fresh"))
	if got := take(t, e.ctx, s, 1)[0].Offset; got != 0 {
		t.Fatalf("a new group starts at %d, want 0", got)
	}
}

func TestResetOffsetLatest(t *testing.T) {
	e := newEnv(t, 1, 5)
	s := e.stream(kstream.Group("late"), kstream.ResetOffset(kstream.Latest))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Keep producing until the stream sees a record: whichever it sees
	// first, it must be one produced after the five already there.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			_ = e.c.Produce(e.ctx, &kgo.Record{Topic: e.topic, Value: []byte("new")})
		}
	}()
	if got := take(t, e.ctx, s, 1)[0]; got.Offset < 5 || got.Value != "new" {
		t.Fatalf("with ResetOffset(Latest) the first record is %d %q, want one produced after the stream started", got.Offset, got.Value)
	}
}

func TestInitialOffsetsAssigned(t *testing.T) {
	e := newEnv(t, 1, 10)
	// The group has committed 8; the initial offset says 5 and wins.
	s0 := e.stream(kstream.Group("g"))
	take(t, e.ctx, s0, 9) // processes 0..7, breaks on 8
	e.wantCommitted("g", map[int32]int64{0: 8})

	s := e.stream(kstream.Group("g"), kstream.InitialOffsets(kstream.TopicPartitionOffset{Topic: e.topic, Partition: 0, Offset: 5}))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := take(t, e.ctx, s, 1)[0].Offset; got != 5 {
		t.Fatalf("first offset %d, want the initial offset 5", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// As the seed page warns, a restart applies it again.
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := take(t, e.ctx, s, 1)[0].Offset; got != 5 {
		t.Fatalf("after a restart the first offset is %d, want 5 again", got)
	}
}

func TestInitialOffsetsUnassignedWarns(t *testing.T) {
	e := newEnv(t, 2, 4)
	logs := &logRecorder{}
	s := e.stream(kstream.Group("g"), kstream.Logger(slogTo(logs)),
		kstream.InitialOffsets(
			kstream.TopicPartitionOffset{Topic: e.topic, Partition: 1, Offset: 1},
			kstream.TopicPartitionOffset{Topic: e.topic, Partition: 7, Offset: 3}, // no such partition here
		))
	recs := take(t, e.ctx, s, 3) // p0: 0, 1; p1: 1
	for _, r := range recs {
		if r.Partition == 1 && r.Offset != 1 {
			t.Fatalf("partition 1 started at %d, want its initial offset 1", r.Offset)
		}
	}
	out := logs.String()
	if !strings.Contains(out, "initial offset ignored") || !strings.Contains(out, "partition=7") {
		t.Fatalf("no warning for the unassigned partition 7 in logs:\n%s", out)
	}
	if strings.Count(out, "initial offset ignored") != 1 {
		t.Fatalf("expected exactly one warning, for partition 7:\n%s", out)
	}
}

func TestInitialOffsetsPastTheEndFallBackToReset(t *testing.T) {
	e := newEnv(t, 1, 4)
	s := e.stream(kstream.Group("g"), kstream.InitialOffsets(kstream.TopicPartitionOffset{Topic: e.topic, Partition: 0, Offset: 1000}))
	if got := take(t, e.ctx, s, 1)[0].Offset; got != 0 {
		t.Fatalf("first offset %d, want 0 (the Earliest reset policy)", got)
	}
}

func TestInitialOffsetsWithoutGroup(t *testing.T) {
	e := newEnv(t, 2, 10)
	s := e.stream(kstream.InitialOffsets(kstream.TopicPartitionOffset{Topic: e.topic, Partition: 0, Offset: 3}))
	ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
	defer cancel()
	var p0 []int64
	n := 0
	for rec, err := range s.Records(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if rec.Partition == 0 {
			p0 = append(p0, rec.Offset)
		}
		if n == 7 { // p0: 3, 4; p1: 0..4
			break
		}
	}
	if len(p0) == 0 || p0[0] != 3 {
		t.Fatalf("partition 0 offsets %v, want them to start at 3", p0)
	}
}
