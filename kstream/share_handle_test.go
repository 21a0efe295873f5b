package kstream_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// shareEngine runs s on an engine of the env's cluster.
func (e *env) shareEngine(s *kstream.Stream[string], opts ...kstream.Option) *kstream.Engine {
	e.t.Helper()
	eng := e.engine(opts...)
	if err := eng.Add(s); err != nil {
		e.t.Fatal(err)
	}
	if err := eng.Start(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	return eng
}

// deliveries collects what handlers saw, from any goroutine.
type deliveries struct {
	mu sync.Mutex
	ds []delivery
}

func (d *deliveries) add(v string, c int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ds = append(d.ds, delivery{v, c})
}

func (d *deliveries) get() []delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.ds)
}

func (d *deliveries) has(v string, c int32) bool {
	return slices.Contains(d.get(), delivery{v, c})
}

func (d *deliveries) times(v string) int {
	n := 0
	for _, x := range d.get() {
		if x.val == v {
			n++
		}
	}
	return n
}

// TestShareHandleReleaseReject: a Handle function's Release and Reject
// act on the record and the stream goes on, healthy, without an error.
func TestShareHandleReleaseReject(t *testing.T) {
	e := newEnv(t, 1, 10)
	var seen deliveries
	s := e.shareStream("g", kstream.Name("share")).Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		seen.add(rec.Value, rec.DeliveryCount)
		switch {
		case rec.Value == "v1" && rec.DeliveryCount == 1:
			return kstream.Release(errBoom)
		case rec.Value == "v2":
			return kstream.Reject(fmt.Errorf("poison: %w", errBoom))
		}
		return nil
	})
	eng := e.shareEngine(s)
	eventually(t, 20*time.Second, "v1 delivered again and v9 handled", func() bool {
		return seen.has("v1", 2) && seen.has("v9", 1)
	})
	h, _ := eng.StreamHealth("share")
	if h.State != kstream.StreamRunning || !h.Healthy || h.LastErr != nil || h.Restarts != 0 {
		t.Fatalf("health after Release and Reject = %+v, want running, healthy, no error", h)
	}
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.produce(10, 11)
	if got := e.drainShare("g", "v10"); !slices.Equal(vals(got), []string{"v10"}) {
		t.Fatalf("a new member got %v, want only v10 (v2 rejected, never delivered again)", got)
	}
	if n := seen.times("v2"); n != 1 {
		t.Fatalf("the rejected v2 was handled %d times, want 1", n)
	}
}

// TestShareHandleError: any other error releases the record, then the
// error policy applies (here: restart), and the record comes back.
func TestShareHandleError(t *testing.T) {
	e := newEnv(t, 1, 5)
	var seen deliveries
	s := e.shareStream("g", kstream.Name("share"), kstream.OnError(kstream.ErrorPolicyRestart)).Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		seen.add(rec.Value, rec.DeliveryCount)
		if rec.Value == "v3" && rec.DeliveryCount == 1 {
			return errBoom
		}
		return nil
	})
	eng := e.shareEngine(s)
	eventually(t, 20*time.Second, "v3 delivered again and v4 handled", func() bool {
		return seen.has("v3", 2) && seen.has("v4", 1) || seen.has("v4", 2)
	})
	h, _ := eng.StreamHealth("share")
	if h.Restarts != 1 || !errors.Is(h.LastErr, errBoom) {
		t.Fatalf("health = %+v, want one restart after errBoom", h)
	}
	if got := seen.get(); got[3] != (delivery{"v3", 1}) {
		t.Fatalf("handled %v", got)
	}
}

// TestShareHandleBatches: a batch handler's nil accepts the batch, Release
// gives the whole batch back. Polls of 2 records make batches of 3 cross
// polls, which a share stream must not do: franz-go's next poll would
// accept the records the batch holds.
func TestShareHandleBatches(t *testing.T) {
	e := newEnv(t, 1, 6)
	var seen deliveries
	var calls atomic.Int32
	s := e.shareStream("g", kstream.Name("share"), kstream.MaxPollRecords(2)).HandleBatches(3, 200*time.Millisecond, func(ctx context.Context, recs []kstream.Record[string]) error {
		for _, r := range recs {
			seen.add(r.Value, r.DeliveryCount)
		}
		if calls.Add(1) == 1 {
			return kstream.Release(nil)
		}
		return nil
	})
	eng := e.shareEngine(s)
	eventually(t, 20*time.Second, "every record handled, the first batch twice", func() bool {
		return seen.has("v0", 2) && seen.has("v5", 1)
	})
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	want := []delivery{{"v0", 1}, {"v1", 1}, {"v0", 2}, {"v1", 2}, {"v2", 1}, {"v3", 1}, {"v4", 1}, {"v5", 1}}
	got := seen.get()
	byVal := func(a, b delivery) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) }
	slices.SortFunc(got, byVal)
	slices.SortFunc(want, byVal)
	if !slices.Equal(got, want) {
		t.Fatalf("handled %v, want %v (in any order): the first batch released, the others accepted", got, want)
	}
	e.produce(6, 7)
	if got := e.drainShare("g", "v6"); !slices.Equal(vals(got), []string{"v6"}) {
		t.Fatalf("a new member got %v, want only v6", got)
	}
}

// TestShareBatchesBreak: a batch broken on is yielded again first.
func TestShareBatchesBreak(t *testing.T) {
	e := newEnv(t, 1, 6)
	s := e.shareStream("g")
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	var first []string
	for b, err := range s.Batches(e.ctx, 3, time.Second) {
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range b {
			first = append(first, r.Value)
		}
		break
	}
	var again []string
	for b, err := range s.Batches(e.ctx, 3, time.Second) {
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range b {
			again = append(again, r.Value)
		}
		break
	}
	if len(first) == 0 || !slices.Equal(first, again) {
		t.Fatalf("batch broken on %v, next range's first batch %v: want the same", first, again)
	}
}

// TestShareConcurrency: PartitionConcurrency and KeyConcurrency handle a
// share stream's records in parallel, each acknowledged on its own.
func TestShareConcurrency(t *testing.T) {
	for _, opt := range []struct {
		name string
		o    kstream.Option
	}{{"partition", kstream.PartitionConcurrency(4)}, {"key", kstream.KeyConcurrency(4)}} {
		t.Run(opt.name, func(t *testing.T) {
			e := newEnv(t, 2, 0)
			recs := make([]*kgo.Record, 40)
			for i := range recs {
				recs[i] = &kgo.Record{Topic: e.topic, Partition: int32(i % 2), Key: []byte(fmt.Sprint(i % 8)), Value: []byte(fmt.Sprintf("v%d", i))}
			}
			if err := e.c.Produce(e.ctx, recs...); err != nil {
				t.Fatal(err)
			}
			var seen deliveries
			var running, most atomic.Int32
			s := e.shareStream("g", kstream.Name("share"), opt.o).Handle(func(ctx context.Context, rec kstream.Record[string]) error {
				n := running.Add(1)
				defer running.Add(-1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(5 * time.Millisecond)
				seen.add(rec.Value, rec.DeliveryCount)
				if rec.DeliveryCount == 1 && rec.Offset%5 == 0 {
					return kstream.Release(nil)
				}
				return nil
			})
			eng := e.shareEngine(s)
			eventually(t, 30*time.Second, "every record handled", func() bool {
				for i := range 40 {
					v := fmt.Sprintf("v%d", i)
					if !seen.has(v, 1) {
						return false
					}
					if off := i / 2; off%5 == 0 && !seen.has(v, 2) {
						return false
					}
				}
				return true
			})
			if err := eng.Stop(e.ctx); err != nil {
				t.Fatal(err)
			}
			if most.Load() < 2 {
				t.Fatalf("at most %d handlers ran at once, want parallel handling", most.Load())
			}
			e.produce(100, 102)
			got := vals(e.drainShare("g", "v100"))
			got = append(got, vals(e.drainShare("g", "v101"))...)
			slices.Sort(got)
			if !slices.Equal(got, []string{"v100", "v101"}) {
				t.Fatalf("new members got %v, want only v100 and v101: every record was accepted", got)
			}
		})
	}
}

// TestShareMoreMembersThanPartitions: three members on one partition all
// get work, and together handle every record.
func TestShareMoreMembersThanPartitions(t *testing.T) {
	const n = 300
	e := newEnv(t, 1, n)
	var seen deliveries
	var per [3]atomic.Int32
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 3 {
		s := e.shareStream("g", kstream.MaxPollRecords(10))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rec, err := range s.Records(ctx) {
				if err != nil {
					t.Error(err)
					return
				}
				seen.add(rec.Value, rec.DeliveryCount)
				per[i].Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	eventually(t, 30*time.Second, "every record handled", func() bool {
		for i := range n {
			if seen.times(fmt.Sprintf("v%d", i)) == 0 {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()
	for i := range per {
		if per[i].Load() == 0 {
			t.Fatalf("member %d got no record (counts %d %d %d)", i, per[0].Load(), per[1].Load(), per[2].Load())
		}
	}
	t.Logf("records per member: %d %d %d", per[0].Load(), per[1].Load(), per[2].Load())
}

// TestShareOptionsThatFail: the options of consumer groups fail with
// ShareGroup, naming the option.
func TestShareOptionsThatFail(t *testing.T) {
	for name, o := range map[string]kstream.Option{
		"Group":          kstream.Group("g"),
		"ManualCommit":   kstream.ManualCommit(),
		"InitialOffsets": kstream.InitialOffsets(kstream.TopicPartitionOffset{Topic: "t", Partition: 0, Offset: 1}),
		"Listener":       kstream.Listener(kstream.MetricsRebalanceListener{}),
		"InstanceID":     kstream.InstanceID("i"),
		"StartAt":        kstream.StartAt(time.Now()),
		"StopAtEnd":      kstream.StopAtEnd(),
		"ExactlyOnce":    kstream.ExactlyOnce(),
		"CommitInterval": kstream.CommitInterval(time.Second),
		"ReadCommitted":  kstream.ReadCommitted(),
	} {
		_, err := kstream.NewStream(codec.String(), kstream.Topics("t"), kstream.ShareGroup("s"), o)
		if !errors.Is(err, kstream.ErrInvalidOption) || !strings.Contains(err.Error(), name) {
			t.Errorf("ShareGroup with %s: err = %v, want ErrInvalidOption naming %s", name, err, name)
		}
	}
	if _, err := kstream.NewStream(codec.String(), kstream.Topics("t"), kstream.ShareGroup("")); !errors.Is(err, kstream.ErrInvalidOption) {
		t.Errorf("ShareGroup(\"\"): err = %v", err)
	}
	if _, err := kstream.NewStream(codec.String(), kstream.TopicPattern("t.*"), kstream.ShareGroup("s")); err != nil {
		t.Errorf("ShareGroup with TopicPattern: %v", err)
	}
	e := newEnv(t, 1, 0)
	s := e.stream(kstream.ClientOptions(kgo.ShareGroup("s")))
	if err := s.Open(e.ctx); !errors.Is(err, kstream.ErrInvalidOption) || !strings.Contains(err.Error(), "ShareGroup") {
		t.Errorf("kgo.ShareGroup in ClientOptions: Open err = %v, want ErrInvalidOption naming ShareGroup", err)
	}
}

// TestShareCallsThatFail: Commit, CommitRecords, Seek and SeekToTime on a
// share stream, and Ack on other streams, return errors.
func TestShareCallsThatFail(t *testing.T) {
	e := newEnv(t, 1, 1)
	s := e.shareStream("g")
	rec := take(t, e.ctx, s, 1)[0] // opens and closes s; open it again
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(e.ctx); !errors.Is(err, kstream.ErrNoGroup) || !strings.Contains(err.Error(), "share group") {
		t.Errorf("Commit: %v", err)
	}
	if err := s.CommitRecords(e.ctx, rec); !errors.Is(err, kstream.ErrNoGroup) {
		t.Errorf("CommitRecords: %v", err)
	}
	if err := s.Seek(e.ctx, kstream.TopicPartitionOffset{Topic: e.topic}); err == nil || !strings.Contains(err.Error(), "share group") {
		t.Errorf("Seek: %v", err)
	}
	if err := s.SeekToTime(e.ctx, time.Now()); err == nil || !strings.Contains(err.Error(), "share group") {
		t.Errorf("SeekToTime: %v", err)
	}
	if err := s.Ack(rec, kstream.AckAccept); err == nil {
		t.Error("Ack of a record of an earlier Open succeeded")
	}
	if err := s.Ack(rec, kstream.AckStatus(0)); err == nil {
		t.Error("Ack with AckStatus(0) succeeded")
	}
	g := e.stream(kstream.Group("cg"))
	grec := take(t, e.ctx, g, 1)[0]
	if err := g.Ack(grec, kstream.AckAccept); err == nil || !strings.Contains(err.Error(), "share group") {
		t.Errorf("Ack on a consumer group stream: %v", err)
	}
}

// TestShareCloseInBody: Close from the loop body releases the record in
// hand (and the buffer), and the range ends.
func TestShareCloseInBody(t *testing.T) {
	e := newEnv(t, 1, 5)
	s := e.shareStream("g")
	var got []string
	for rec, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec.Value)
		if rec.Value == "v2" {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !slices.Equal(got, []string{"v0", "v1", "v2"}) {
		t.Fatalf("got %v, want v0 v1 v2 then the end", got)
	}
	e.produce(5, 6)
	want := []delivery{{"v2", 2}, {"v3", 2}, {"v4", 2}, {"v5", 1}}
	if got := e.drainShare("g", "v5"); !slices.Equal(got, want) {
		t.Fatalf("a new member got %v, want %v: v2 in hand and the buffer released", got, want)
	}
}
