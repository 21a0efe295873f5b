package kstream_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// deadlineBound is how long a send with a 300ms deadline may take to give
// up in these tests: generous, so that a slow machine does not fail them,
// yet far below what a send that waits for the stalled broker takes.
const deadlineBound = 5 * time.Second

// stallBehindBackground stalls the env's only broker with a record in
// flight whose context cannot end, the head of its partition: franz-go fails
// a batch by the context of its first record only, so the records sent
// after it are never failed by franz-go for their own context. It returns
// the stall and a channel that receives the held record's outcome once the
// stall is healed.
func stallBehindBackground(t *testing.T, e *env, eng *kstream.Engine) (*kstreamtest.Stall, <-chan outcome) {
	t.Helper()
	if _, err := eng.Send(e.ctx, e.topic, []byte("before")); err != nil { // the producer knows the topic
		t.Fatal(err)
	}
	stall := e.c.StallBroker(t, -1)
	done, ch := doneOnce(t)
	eng.SendAsync(context.Background(), e.topic, []byte("held"), done)
	eventually(t, 10*time.Second, "the held record's request to reach the stalled broker", func() bool { return stall.Held() > 0 })
	return stall, ch
}

// Every kind of send with a 300ms deadline, made behind a record whose
// context cannot end on a broker that stops answering, gives up with the
// deadline's error by its deadline. SendBatch waited until Stop, and
// SendAsync's done until the broker answered again: franz-go fails records
// by the context of the first record of their batch only.
func TestSendsHonourDeadlineBehindRecordWithoutDeadline(t *testing.T) {
	for _, tc := range []struct {
		name string
		send func(ctx context.Context, eng *kstream.Engine, topic string) error
	}{
		{"Engine.Send", func(ctx context.Context, eng *kstream.Engine, topic string) error {
			_, err := eng.Send(ctx, topic, []byte("behind"))
			return err
		}},
		{"Engine.SendBatch", func(ctx context.Context, eng *kstream.Engine, topic string) error {
			_, err := eng.SendBatch(ctx, topic, kstream.Message[[]byte]{Value: []byte("b1")}, kstream.Message[[]byte]{Value: []byte("b2")})
			return err
		}},
		{"Producer.SendBatch", func(ctx context.Context, eng *kstream.Engine, topic string) error {
			_, err := kstream.NewProducer(eng, topic, codec.String()).SendBatch(ctx,
				kstream.Message[string]{Value: "b1"}, kstream.Message[string]{Value: "b2"})
			return err
		}},
		{"Engine.SendAsync", func(ctx context.Context, eng *kstream.Engine, topic string) error {
			ch := make(chan error, 1)
			eng.SendAsync(ctx, topic, []byte("behind"), func(_ kstream.RecordMetadata, err error) { ch <- err })
			return <-ch
		}},
		{"Producer.SendAsync", func(ctx context.Context, eng *kstream.Engine, topic string) error {
			ch := make(chan error, 1)
			kstream.NewProducer(eng, topic, codec.String()).SendAsync(ctx, nil, "behind", func(_ kstream.RecordMetadata, err error) { ch <- err })
			return <-ch
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1, 0)
			eng := e.engine()
			if err := eng.Start(e.ctx); err != nil {
				t.Fatal(err)
			}
			stall, held := stallBehindBackground(t, e, eng)
			ctx, cancel := context.WithTimeout(e.ctx, 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			res := make(chan error, 1)
			go func() { res <- tc.send(ctx, eng, e.topic) }()
			var err error
			select {
			case err = <-res:
			case <-time.After(deadlineBound):
				stall.Heal() // so that the send returns, and the test ends cleanly
				<-res
				t.Fatalf("%s with a 300ms deadline had not given up after %v", tc.name, deadlineBound)
			}
			took := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), e.topic) {
				t.Fatalf("%s = %v after %v, want the deadline's error naming the topic", tc.name, err, took)
			}
			t.Logf("%s gave up after %v", tc.name, took)
			stall.Heal()
			if o := waitOutcome(t, held, 20*time.Second, "the held record"); o.err != nil {
				t.Fatalf("the held record, once the broker answered: %v", o.err)
			}
			if err := eng.Flush(e.ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// SendBatch returns the metadata of its records in the order of its
// messages, also when they go to several partitions, whose
// acknowledgements may come in any order.
func TestSendBatchMetadataInMessageOrder(t *testing.T) {
	const n = 60
	e := newEnv(t, 3, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	msgs := make([]kstream.Message[[]byte], n)
	for i := range msgs {
		msgs[i] = kstream.Message[[]byte]{Key: []byte("k" + strconv.Itoa(i)), Value: []byte(strconv.Itoa(i))}
	}
	mds, err := eng.SendBatch(e.ctx, e.topic, msgs...)
	if err != nil {
		t.Fatal(err)
	}
	if len(mds) != n {
		t.Fatalf("%d metadata for %d messages", len(mds), n)
	}
	type at struct {
		p int32
		o int64
	}
	values := map[at]string{}
	for _, r := range kstreamtest.ReadRecords(t, e.c, e.topic, codec.String(), n, 20*time.Second) {
		values[at{r.Partition, r.Offset}] = r.Value
	}
	parts := map[int32]bool{}
	for i, md := range mds {
		parts[md.Partition] = true
		if got := values[at{md.Partition, md.Offset}]; got != strconv.Itoa(i) {
			t.Errorf("metadata %d is %d@%d, which holds %q, want %q", i, md.Partition, md.Offset, got, strconv.Itoa(i))
		}
	}
	if len(parts) < 2 {
		t.Fatalf("the batch went to partitions %v: the test needs several", parts)
	}
}

// Records sent with SendAsync under one context, waiting behind a record
// whose context cannot end: canceling the context fails each of them once,
// at once, with context.Canceled, in the order they were sent; when the
// broker answers again, none of their done functions is called again, and
// the engine goes on sending.
func TestSendAsyncCancelFailsWaitingRecordsOnce(t *testing.T) {
	const n = 50
	e := newEnv(t, 1, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	stall, held := stallBehindBackground(t, e, eng)
	ctx, cancel := context.WithCancel(e.ctx)
	var got outcomes
	for i := range n {
		eng.SendAsync(ctx, e.topic, []byte(strconv.Itoa(i)), got.done(i), kstream.WithKey([]byte("k")))
	}
	if l := got.get(); len(l) != 0 {
		t.Fatalf("%d done functions called before the context ended: %+v", len(l), l[0])
	}
	cancel()
	eventually(t, deadlineBound, "every done function to be called", func() bool { return len(got.get()) == n })
	for j, o := range got.get() {
		if o.i != j || !errors.Is(o.err, context.Canceled) || !strings.Contains(o.err.Error(), e.topic) {
			t.Fatalf("done call %d: send %d with %v, want send %d with context.Canceled naming the topic", j, o.i, o.err, j)
		}
	}
	stall.Heal()
	if o := waitOutcome(t, held, 20*time.Second, "the held record"); o.err != nil {
		t.Fatalf("the held record, once the broker answered: %v", o.err)
	}
	if err := eng.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	if l := got.get(); len(l) != n {
		t.Fatalf("done called %d times for %d sends", len(l), n)
	}
	// The sendOps of the failed records are reused: later sends are whole.
	var later outcomes
	for i := range n {
		eng.SendAsync(e.ctx, e.topic, []byte("later"+strconv.Itoa(i)), later.done(i))
	}
	if err := eng.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	l := later.get()
	if len(l) != n {
		t.Fatalf("done called %d times for %d later sends", len(l), n)
	}
	for _, o := range l {
		if o.err != nil || o.md.Topic != e.topic {
			t.Fatalf("later send %d: %+v", o.i, o)
		}
	}
	eventually(t, 5*time.Second, "the context watches to be gone", func() bool { return eng.ContextWatches() == 0 })
}

// Contexts that end while their records are being acknowledged, on a broker
// that answers: each done is called exactly once, with the metadata or the
// context's error, and Flush returns only once every done has returned.
// Under the race detector this checks the hand-over between the context's
// watch and franz-go's callback.
func TestSendAsyncContextsEndingDuringAcknowledgement(t *testing.T) {
	const rounds, each = 40, 25
	e := newEnv(t, 3, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Send(e.ctx, e.topic, []byte("before")); err != nil { // the producer knows the topic
		t.Fatal(err)
	}
	var got outcomes
	for r := range rounds {
		// From 100µs to 25.6ms: some records are acknowledged first,
		// some fail first, some meet their context's end on the way.
		ctx, cancel := context.WithTimeout(e.ctx, time.Duration(1<<(r%9))*100*time.Microsecond)
		for j := range each {
			eng.SendAsync(ctx, e.topic, []byte("x"), got.done(r*each+j), kstream.WithKey([]byte{byte(j)}))
		}
		if r%5 == 0 {
			cancel() // at once, while the records are in flight
		} else {
			defer cancel()
		}
		if r%2 == 1 { // let the records of two rounds be acknowledged
			eventually(t, 10*time.Second, "the records of two rounds to be done", func() bool { return len(got.get()) == (r+1)*each })
		}
	}
	// A context that ended before the send.
	ended, cancel := context.WithCancel(e.ctx)
	cancel()
	eng.SendAsync(ended, e.topic, []byte("late"), got.done(rounds*each))
	if err := eng.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	list := got.get()
	if len(list) != rounds*each+1 {
		t.Fatalf("%d done functions returned before Flush did, want %d", len(list), rounds*each+1)
	}
	seen := map[int]bool{}
	var ok, expired int
	for _, o := range list {
		if seen[o.i] {
			t.Fatalf("done of send %d called twice", o.i)
		}
		seen[o.i] = true
		switch {
		case o.err == nil:
			ok++
		case errors.Is(o.err, context.DeadlineExceeded) || errors.Is(o.err, context.Canceled):
			expired++
		default:
			t.Fatalf("send %d: %v", o.i, o.err)
		}
	}
	if o := list[len(list)-1]; !seen[rounds*each] {
		t.Fatalf("no done for the send under an ended context; last: %+v", o)
	}
	t.Logf("%d acknowledged, %d failed by their context", ok, expired)
	eventually(t, 5*time.Second, "the context watches to be gone", func() bool { return eng.ContextWatches() == 0 })
}
