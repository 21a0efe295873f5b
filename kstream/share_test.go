package kstream_test

import (
	"context"
	"fmt"
	"slices"
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
// want (a value), and returns what it saw, in order, accepting each (want
// included).
func (e *env) drainShare(group, want string) []delivery {
	e.t.Helper()
	s := e.shareStream(group)
	defer s.Close()
	var out []delivery
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	for rec, err := range s.Records(ctx) {
		if err != nil {
			e.t.Fatalf("drain: %v", err)
		}
		out = append(out, delivery{rec.Value, rec.DeliveryCount})
		if rec.Value == want {
			cancel() // the range ends once want is accepted
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

// TestShareLoopControl: break, return and panic keep the record in hand,
// which the next range yields again first (the same delivery); a record
// the body finished with is accepted; a range ended by its ctx finishes
// the record in hand, which is accepted.
func TestShareLoopControl(t *testing.T) {
	for _, exit := range []string{"break", "return", "panic"} {
		t.Run(exit, func(t *testing.T) {
			e := newEnv(t, 1, 10)
			s := e.shareStream("g")
			if err := s.Open(e.ctx); err != nil {
				t.Fatal(err)
			}
			first := func() (got []delivery) {
				defer func() {
					if p := recover(); p != nil && p != "exit" {
						panic(p)
					}
				}()
				for rec, err := range s.Records(e.ctx) {
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, delivery{rec.Value, rec.DeliveryCount})
					if rec.Value == "v3" {
						switch exit {
						case "break":
							break
						case "return":
							return got
						case "panic":
							panic("exit")
						}
						break
					}
				}
				return got
			}
			got := first()
			if !slices.Equal(vals(got), []string{"v0", "v1", "v2", "v3"}) {
				t.Fatalf("first range got %v", got)
			}
			// The second range ends by its ctx, canceled in the body.
			ctx, cancel := context.WithCancel(e.ctx)
			defer cancel()
			got = nil
			for rec, err := range s.Records(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, delivery{rec.Value, rec.DeliveryCount})
				if rec.Value == "v9" {
					cancel() // the range ends at the next boundary; v9 finishes
				}
			}
			want := []delivery{{"v3", 1}, {"v4", 1}, {"v5", 1}, {"v6", 1}, {"v7", 1}, {"v8", 1}, {"v9", 1}}
			if !slices.Equal(got, want) {
				t.Fatalf("second range got %v, want %v (v3 again first, the same delivery)", got, want)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			e.produce(10, 11)
			if got := e.drainShare("g", "v10"); !slices.Equal(vals(got), []string{"v10"}) {
				t.Fatalf("a new member got %v, want only v10: every record the bodies finished was accepted", got)
			}
		})
	}
}

// TestShareCloseReleasesRecordInHand: Close from another goroutine
// releases the record in hand at once: another member gets it while the
// body is still blocked on it.
func TestShareCloseReleasesRecordInHand(t *testing.T) {
	e := newEnv(t, 1, 3)
	s := e.shareStream("g")
	inBody := make(chan struct{})
	unblock := make(chan struct{})
	ranged := make(chan []delivery)
	go func() {
		var got []delivery
		for rec, err := range s.Records(e.ctx) {
			if err != nil {
				t.Error(err)
				break
			}
			got = append(got, delivery{rec.Value, rec.DeliveryCount})
			if rec.Value == "v1" {
				close(inBody)
				<-unblock
			}
		}
		ranged <- got
	}()
	<-inBody
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// Another member takes v1 (and v2, released from the buffer) while the
	// body still holds v1.
	got := e.drainShare("g", "v2")
	if !slices.Equal(got, []delivery{{"v1", 2}, {"v2", 2}}) {
		t.Fatalf("the other member got %v, want v1 and v2, each delivered a second time", got)
	}
	close(unblock)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if got := <-ranged; !slices.Equal(vals(got), []string{"v0", "v1"}) {
		t.Fatalf("the closed stream's range got %v, want v0 v1 then the end", got)
	}
	e.produce(3, 4)
	if got := e.drainShare("g", "v3"); !slices.Equal(vals(got), []string{"v3"}) {
		t.Fatalf("a new member got %v, want only v3: v1 finished after Close was not accepted twice nor released again", got)
	}
}

// TestShareAck: Ack decides ahead of loop control; a rejected record never
// comes back, a released one comes back with its delivery count one
// higher, an accepted one in hand at a break is not yielded again.
func TestShareAck(t *testing.T) {
	e := newEnv(t, 1, 10)
	s := e.shareStream("g")
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	for rec, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Value == "v1" {
			if err := s.Ack(rec, kstream.AckReject); err != nil {
				t.Fatal(err)
			}
		}
		if rec.Value == "v2" {
			if err := s.Ack(rec, kstream.AckRelease); err != nil {
				t.Fatal(err)
			}
			if err := s.Ack(rec, kstream.AckAccept); err == nil {
				t.Fatal("a second Ack of a record succeeded")
			}
			break
		}
	}
	var got []delivery
	for rec, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, delivery{rec.Value, rec.DeliveryCount})
		if err := s.Ack(rec, kstream.AckAccept); err != nil {
			t.Fatal(err)
		}
		break
	}
	if !slices.Equal(got, []delivery{{"v3", 1}}) {
		t.Fatalf("the range after breaking on a released record began with %v, want v3", got)
	}
	got = nil
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	for rec, err := range s.Records(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, delivery{rec.Value, rec.DeliveryCount})
		if rec.Value == "v2" {
			cancel()
		}
	}
	want := []delivery{{"v4", 1}, {"v5", 1}, {"v6", 1}, {"v7", 1}, {"v8", 1}, {"v9", 1}, {"v2", 2}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v (v3 accepted by Ack, v2 released and delivered again)", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	e.produce(10, 11)
	if got := e.drainShare("g", "v10"); !slices.Equal(vals(got), []string{"v10"}) {
		t.Fatalf("a new member got %v, want only v10: the rejected v1 never comes back", got)
	}
}

// TestShareDeliveryCount: each release delivers the record again with its
// count one higher, up to the group's limit (5), which archives it.
func TestShareDeliveryCount(t *testing.T) {
	e := newEnv(t, 1, 2)
	s := e.shareStream("g")
	var counts []int32
	for rec, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Value != "v0" {
			if err := s.Ack(rec, kstream.AckAccept); err != nil {
				t.Fatal(err)
			}
			continue
		}
		counts = append(counts, rec.DeliveryCount)
		if err := s.Ack(rec, kstream.AckRelease); err != nil {
			t.Fatal(err)
		}
		if len(counts) == 5 {
			break
		}
	}
	if !slices.Equal(counts, []int32{1, 2, 3, 4, 5}) {
		t.Fatalf("delivery counts of a record released each time = %v, want 1..5", counts)
	}
	e.produce(2, 3)
	if got := e.drainShare("g", "v2"); !slices.Equal(vals(got), []string{"v2"}) {
		t.Fatalf("a new member got %v, want only v2: v0 reached the delivery limit and was archived", got)
	}
}

// TestShareDeliveryCountOutsideShareGroups: 0 outside share groups.
func TestShareDeliveryCountOutsideShareGroups(t *testing.T) {
	e := newEnv(t, 1, 1)
	for _, s := range []*kstream.Stream[string]{e.stream(), e.stream(kstream.Group("g"))} {
		rec := take(t, e.ctx, s, 1)[0]
		if rec.DeliveryCount != 0 {
			t.Fatalf("DeliveryCount = %d outside share groups, want 0", rec.DeliveryCount)
		}
		s.Close()
	}
}
