package kstream_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// TestShareMetrics: acknowledgements are counted by status, and the
// delivery count of every record fetched is observed.
func TestShareMetrics(t *testing.T) {
	e := newEnv(t, 1, 4)
	reg := prometheus.NewRegistry()
	s := e.shareStream("g", kstream.Name("sm"), kstream.Metrics(reg))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	released := false
	for rec, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case rec.Value == "v1":
			if err := s.Ack(rec, kstream.AckReject); err != nil {
				t.Fatal(err)
			}
		case rec.Value == "v2" && !released:
			released = true
			if err := s.Ack(rec, kstream.AckRelease); err != nil {
				t.Fatal(err)
			}
		}
		if rec.Value == "v3" {
			break // in hand: released by Close
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got := series(t, reg, "kstreams_share_acks_total", map[string]string{"stream": "sm"})
	want := map[string]float64{"status=accept": 1, "status=release": 2, "status=reject": 1}
	// v2 released once may have been fetched again before v3 was reached,
	// and then released by Close.
	if got["status=release"] == 3 {
		want["status=release"] = 3
	}
	if !maps.Equal(got, want) {
		t.Fatalf("share_acks_total = %v, want %v", got, want)
	}
	if n := series(t, reg, "kstreams_share_delivery_count", map[string]string{"stream": "sm"})[""]; n < 4 {
		t.Fatalf("share_delivery_count observed %v records, want at least 4", n)
	}
	if n := series(t, reg, "kstreams_records_processed_total", map[string]string{"stream": "sm"}); n["topic="+e.topic] != 1 {
		t.Fatalf("records_processed_total = %v, want 1 (v0, accepted)", n)
	}
}

// TestShareResetOffset: the SDK sets the group's share.auto.offset.reset
// (earliest by default: records produced before the group started are
// delivered); ResetOffset(Latest) sets latest; a value the group has set
// stays, with a warning, unless ResetOffset is given.
func TestShareResetOffset(t *testing.T) {
	e := newEnv(t, 1, 2)
	if got := vals(e.drainShare("early", "v1")); !slices.Equal(got, []string{"v0", "v1"}) {
		t.Fatalf("default: got %v, want v0 v1", got)
	}

	latest := e.shareStream("late", kstream.ResetOffset(kstream.Latest))
	if err := latest.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		for rec, err := range latest.Records(e.ctx) {
			if err == nil {
				got <- rec.Value
			}
			break
		}
	}()
	// The group starts at the end when it first reads the partition: keep
	// producing until a record arrives, which must be a new one.
	n := 2
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case v := <-got:
			if v == "v0" || v == "v1" {
				t.Fatalf("ResetOffset(Latest): got %s, produced before the group started", v)
			}
			break wait
		case <-tick.C:
			e.produce(n, n+1)
			n++
		case <-e.ctx.Done():
			t.Fatal(e.ctx.Err())
		}
	}
	latest.Close()

	// A value set on the group stays; the stream warns.
	if err := e.c.SetShareAutoOffsetReset(e.ctx, "kept", "latest", true); err != nil {
		t.Fatal(err)
	}
	var logs logRecorder
	s := e.shareStream("kept", kstream.Logger(slogTo(&logs)))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "share.auto.offset.reset") {
		t.Fatalf("no warning about the group's own share.auto.offset.reset; logs:\n%s", logs.String())
	}
}

// TestShareTopicPattern: a share stream subscribes by pattern.
func TestShareTopicPattern(t *testing.T) {
	e := newEnv(t, 1, 3)
	s, err := kstream.NewStream(codec.String(), kstream.Brokers(e.c.Brokers()...), kstream.TopicPattern(e.topic[:len(e.topic)-3]+".*"),
		kstream.ShareGroup("p"), kstream.Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := offsets(take(t, e.ctx, s, 3)); !slices.Equal(got, []int64{0, 1, 2}) {
		t.Fatalf("got offsets %v", got)
	}
}

// TestSharePauseIgnored: Pause and Resume do nothing on a share stream
// (they warn): records of every partition keep coming.
func TestSharePauseIgnored(t *testing.T) {
	e := newEnv(t, 1, 2)
	var logs logRecorder
	s := e.shareStream("g", kstream.Logger(slogTo(&logs)))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	s.Pause(map[string][]int32{e.topic: {0}})
	if p := s.Paused(); len(p) != 0 {
		t.Fatalf("Paused() = %v after an ignored Pause", p)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if got := offsets(take(t, ctx, s, 2)); !slices.Equal(got, []int64{0, 1}) {
		t.Fatalf("got %v", got)
	}
	if !strings.Contains(logs.String(), "Pause ignored") {
		t.Fatalf("no warning; logs:\n%s", logs.String())
	}
}

// TestShareResetOffsetNotAllowed: when the broker refuses to alter the
// group's configs (here: GROUP_AUTHORIZATION_FAILED), the stream still opens
// and consumes, and logs a warning saying the group keeps its own
// share.auto.offset.reset.
func TestShareResetOffsetNotAllowed(t *testing.T) {
	e := newEnv(t, 1, 0)
	// kfake checks no permission on group configs: answer the alter as a
	// broker that refuses it does.
	var refused atomic.Int32
	e.c.Fake().ControlKey(int16(kmsg.IncrementalAlterConfigs), func(req kmsg.Request) (kmsg.Response, error, bool) {
		areq := req.(*kmsg.IncrementalAlterConfigsRequest)
		resp := areq.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
		for _, r := range areq.Resources {
			rr := kmsg.NewIncrementalAlterConfigsResponseResource()
			rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
			rr.ErrorCode = kerr.GroupAuthorizationFailed.Code
			resp.Resources = append(resp.Resources, rr)
		}
		refused.Add(1)
		return resp, nil, true
	})
	var logs logRecorder
	s := e.shareStream("sg", kstream.Logger(slogTo(&logs)))
	if err := s.Open(e.ctx); err != nil {
		t.Fatalf("Open when the group's configs may not be altered: %v", err)
	}
	defer s.Close()
	if refused.Load() != 1 {
		t.Fatalf("the alter request was not refused (%d); logs:\n%s", refused.Load(), logs.String())
	}
	if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "cannot set the share group's share.auto.offset.reset") || !strings.Contains(l, "GROUP_AUTHORIZATION_FAILED") {
		t.Fatalf("no warning naming the error; logs:\n%s", l)
	}
	// The group starts at Kafka's default, latest: a record produced now
	// is delivered.
	// The producing goroutine ends before the test does (it used to run
	// until the env's ctx was canceled at cleanup, failing the test with
	// a produce canceled by that).
	pctx, stopProducing := context.WithCancel(e.ctx)
	var producing sync.WaitGroup
	producing.Add(1)
	go func() {
		defer producing.Done()
		for pctx.Err() == nil {
			if err := e.c.Produce(pctx, &kgo.Record{Topic: e.topic, Value: []byte("v0")}); err != nil && pctx.Err() == nil {
				t.Errorf("produce: %v", err)
				return
			}
			select {
			case <-pctx.Done():
			case <-time.After(100 * time.Millisecond): // the pace of production, not synchronization
			}
		}
	}()
	defer func() { stopProducing(); producing.Wait() }()
	if got := take(t, e.ctx, s, 1); got[0].Value != "v0" {
		t.Fatalf("got %v", got)
	}
}

// TestShareConcurrentStopReleasesQueued: records handed to a concurrent
// stream's lanes and not started when the stream stops are released, not
// accepted; the record whose handler was running finishes and is accepted.
func TestShareConcurrentStopReleasesQueued(t *testing.T) {
	e := newEnv(t, 1, 10)
	started := make(chan struct{})
	unblock := make(chan struct{})
	var once sync.Once
	s := e.shareStream("g", kstream.Name("share"), kstream.PartitionConcurrency(2)).Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		once.Do(func() {
			close(started)
			<-unblock
		})
		return nil
	})
	eng := e.shareEngine(s)
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- eng.Stop(e.ctx) }()
	eventually(t, 10*time.Second, "the stream stopping", func() bool {
		h, _ := eng.StreamHealth("share")
		return h.State != kstream.StreamRunning
	})
	close(unblock)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	e.produce(10, 11)
	got := e.drainShare("g", "v10")
	want := []delivery{{"v1", 2}, {"v2", 2}, {"v3", 2}, {"v4", 2}, {"v5", 2}, {"v6", 2}, {"v7", 2}, {"v8", 2}, {"v9", 2}, {"v10", 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("a new member got %v, want %v: v0 accepted, the queued records released", got, want)
	}
}

// TestShareMiddlewarePassesDecisions: Retry does not retry a Release or a
// Reject, and DeadLetter does not dead-letter them: they are decisions.
func TestShareMiddlewarePassesDecisions(t *testing.T) {
	e := newEnv(t, 1, 2)
	if err := e.c.CreateTopic(e.ctx, e.topic+"-dlq", 1); err != nil {
		t.Fatal(err)
	}
	eng := e.engine()
	var calls atomic.Int32
	var seen deliveries
	s := e.shareStream("g", kstream.Name("share")).Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		calls.Add(1)
		seen.add(rec.Value, rec.DeliveryCount)
		switch {
		case rec.Value == "v0":
			return kstream.Reject(errBoom)
		case rec.DeliveryCount == 1:
			return kstream.Release(errBoom)
		}
		return nil
	}, kstream.DeadLetter[string](eng, e.topic+"-dlq"), kstream.Retry[string](3, time.Millisecond))
	if err := eng.Add(s); err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "v1 delivered again", func() bool { return seen.has("v1", 2) })
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("handler called %d times (%v), want 3: v0 rejected once, v1 released once then accepted", n, seen.get())
	}
	ends, err := e.c.EndOffsets(e.ctx, e.topic+"-dlq")
	if err != nil {
		t.Fatal(err)
	}
	if ends[0] != 0 {
		t.Fatalf("the dead-letter topic holds %d records, want 0", ends[0])
	}
}
