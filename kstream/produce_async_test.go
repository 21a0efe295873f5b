package kstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// outcome is one call of a SendAsync done function.
type outcome struct {
	i   int // which send
	md  kstream.RecordMetadata
	err error
}

// outcomes collects done calls, in the order they come.
type outcomes struct {
	mu   sync.Mutex
	list []outcome
}

func (o *outcomes) done(i int) func(kstream.RecordMetadata, error) {
	return func(md kstream.RecordMetadata, err error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.list = append(o.list, outcome{i, md, err})
	}
}

func (o *outcomes) get() []outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]outcome(nil), o.list...)
}

// doneOnce returns a done function that hands its outcome to the returned
// channel, and fails t if it is called more than once.
func doneOnce(t *testing.T) (func(kstream.RecordMetadata, error), <-chan outcome) {
	ch := make(chan outcome, 1)
	var calls sync.Mutex
	n := 0
	return func(md kstream.RecordMetadata, err error) {
		calls.Lock()
		defer calls.Unlock()
		n++
		if n > 1 {
			t.Errorf("done called %d times", n)
			return
		}
		ch <- outcome{md: md, err: err}
	}, ch
}

// waitOutcome waits for a done call, failing t after timeout.
func waitOutcome(t *testing.T, ch <-chan outcome, timeout time.Duration, what string) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(timeout):
		t.Fatalf("done of %s not called within %v", what, timeout)
		return outcome{}
	}
}

// SendAsync delivers every record; done is called once per record, per
// partition in the order of sending, with the metadata of the record as it
// reads back.
func TestSendAsyncDeliversInOrderWithMetadata(t *testing.T) {
	const n = 600
	e := newEnv(t, 3, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	var got outcomes
	manual := map[int]int32{}
	for i := range n {
		var opts []kstream.SendOption
		opts = append(opts, kstream.WithKey([]byte("k"+strconv.Itoa(i%10))), kstream.WithHeader("i", []byte(strconv.Itoa(i))))
		if i%25 == 0 {
			manual[i] = int32(i / 25 % 3)
			opts = append(opts, kstream.ToPartition(manual[i]))
		}
		eng.SendAsync(e.ctx, e.topic, []byte("v"+strconv.Itoa(i)), got.done(i), opts...)
	}
	if err := eng.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	list := got.get()
	if len(list) != n {
		t.Fatalf("done called %d times after Flush, want %d", len(list), n)
	}
	byIndex := make(map[int]kstream.RecordMetadata, n)
	lastIndex := map[int32]int{}
	nextOffset := map[int32]int64{}
	for _, o := range list {
		if o.err != nil {
			t.Fatalf("send %d: %v", o.i, o.err)
		}
		if _, dup := byIndex[o.i]; dup {
			t.Fatalf("done of send %d called twice", o.i)
		}
		byIndex[o.i] = o.md
		p := o.md.Partition
		if last, ok := lastIndex[p]; ok && o.i < last {
			t.Errorf("partition %d: done of send %d after done of send %d", p, o.i, last)
		}
		lastIndex[p] = o.i
		if o.md.Offset != nextOffset[p] {
			t.Errorf("partition %d: done of send %d has offset %d, want %d", p, o.i, o.md.Offset, nextOffset[p])
		}
		nextOffset[p] = o.md.Offset + 1
		if o.md.Topic != e.topic {
			t.Errorf("send %d: topic %q", o.i, o.md.Topic)
		}
		if want, ok := manual[o.i]; ok && p != want {
			t.Errorf("send %d with ToPartition(%d) went to partition %d", o.i, want, p)
		}
	}
	if len(lastIndex) != 3 {
		t.Errorf("records went to partitions %v, want all three", lastIndex)
	}

	recs := kstreamtest.ReadRecords(t, e.c, e.topic, codec.String(), n, 20*time.Second)
	if len(recs) != n {
		t.Fatalf("read back %d records, want %d", len(recs), n)
	}
	for _, r := range recs {
		i, err := strconv.Atoi(strings.TrimPrefix(r.Value, "v"))
		if err != nil {
			t.Fatalf("read back value %q", r.Value)
		}
		md := byIndex[i]
		if md.Partition != r.Partition || md.Offset != r.Offset || !md.Timestamp.Equal(r.Timestamp) {
			t.Errorf("send %d: done had %d@%d (%v), read back at %d@%d (%v)", i, md.Partition, md.Offset, md.Timestamp, r.Partition, r.Offset, r.Timestamp)
		}
		if string(r.Key) != "k"+strconv.Itoa(i%10) || len(r.Headers) != 1 || string(r.Headers[0].Value) != strconv.Itoa(i) {
			t.Errorf("send %d read back with key %q and headers %v", i, r.Key, r.Headers)
		}
	}
}

func TestSendAsyncNotStarted(t *testing.T) {
	e := newEnv(t, 1, 0)
	eng := e.engine()
	p := kstream.NewProducer(eng, e.topic, codec.String())
	check := func(when string) {
		t.Helper()
		for name, send := range map[string]func(func(kstream.RecordMetadata, error)){
			"Engine.SendAsync":   func(d func(kstream.RecordMetadata, error)) { eng.SendAsync(e.ctx, e.topic, []byte("x"), d) },
			"Producer.SendAsync": func(d func(kstream.RecordMetadata, error)) { p.SendAsync(e.ctx, nil, "x", d) },
		} {
			done, ch := doneOnce(t)
			send(done)
			select {
			case o := <-ch: // given before SendAsync returned
				if !errors.Is(o.err, kstream.ErrEngineNotStarted) {
					t.Errorf("%s %s: done got %v, want ErrEngineNotStarted", name, when, o.err)
				}
			default:
				t.Errorf("%s %s: done not called before SendAsync returned", name, when)
			}
		}
		if err := eng.Flush(e.ctx); !errors.Is(err, kstream.ErrEngineNotStarted) {
			t.Errorf("Flush %s = %v, want ErrEngineNotStarted", when, err)
		}
	}
	check("before Start")
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	done, ch := doneOnce(t)
	eng.SendAsync(e.ctx, e.topic, []byte("x"), done)
	if o := waitOutcome(t, ch, 10*time.Second, "a send while running"); o.err != nil || o.md.Offset != 0 {
		t.Fatalf("send while running: %+v", o)
	}
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	check("after Stop")
}

// With a nil done function, a failed send is logged at error level with its
// topic, and counted.
func TestSendAsyncNilDoneLogsAndCountsFailures(t *testing.T) {
	e := newEnv(t, 1, 0)
	var logs logRecorder
	reg := prometheus.NewRegistry()
	eng := e.engine(kstream.Logger(slogTo(&logs)), kstream.Metrics(reg), kstream.Name("nil-done"))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	eng.SendAsync(e.ctx, e.topic, []byte("fine"), nil)
	eng.SendAsync(e.ctx, e.topic, []byte("no such partition"), nil, kstream.ToPartition(9))
	bad := kstream.NewProducer(eng, e.topic, codec.JSON[chan int]())
	bad.SendAsync(e.ctx, nil, make(chan int), nil)
	if err := eng.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	var failures []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "send failed") {
			failures = append(failures, line)
		}
	}
	if len(failures) != 2 {
		t.Fatalf("%d send failures logged, want 2; log:\n%s", len(failures), out)
	}
	for _, line := range failures {
		if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, "topic="+e.topic) {
			t.Errorf("failure logged without error level or topic: %s", line)
		}
	}
	if !strings.Contains(out, "partition") || !strings.Contains(out, "encode") {
		t.Errorf("the log does not say what failed:\n%s", out)
	}
	labels := map[string]string{"engine": "nil-done", "topic": e.topic}
	if c := series(t, reg, "kstreams_send_errors_total", labels)[""]; c != 2 {
		t.Errorf("send errors = %v, want 2", c)
	}
	if c := series(t, reg, "kstreams_records_sent_total", labels)[""]; c != 1 {
		t.Errorf("records sent = %v, want 1", c)
	}
}

// A broker that stops answering: SendAsync's done gets the context's error
// by its deadline.
func TestSendAsyncHonoursDeadlineWhenBrokerStalls(t *testing.T) {
	e := newEnv(t, 1, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Send(e.ctx, e.topic, []byte("before")); err != nil { // the producer knows the topic
		t.Fatal(err)
	}
	stall := e.c.StallBroker(t, -1)
	ctx, cancel := context.WithTimeout(e.ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	done, ch := doneOnce(t)
	eng.SendAsync(ctx, e.topic, []byte("stalled"), done)
	o := waitOutcome(t, ch, 10*time.Second, "a send to a stalled broker")
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("done called after %v, deadline was 300ms", took)
	}
	if !errors.Is(o.err, context.DeadlineExceeded) || !strings.Contains(o.err.Error(), e.topic) {
		t.Fatalf("done got %v, want the deadline, naming the topic", o.err)
	}
	if stall.Held() == 0 {
		t.Error("the stall held no request: the test did not stall the send")
	}
	stall.Heal()
}

// Flush waits until the records sent are acknowledged.
func TestFlushWaitsForAcknowledgement(t *testing.T) {
	e := newEnv(t, 1, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Send(e.ctx, e.topic, []byte("before")); err != nil {
		t.Fatal(err)
	}
	stall := e.c.StallBroker(t, -1)
	done, ch := doneOnce(t)
	eng.SendAsync(e.ctx, e.topic, []byte("held"), done)
	short, cancel := context.WithTimeout(e.ctx, 300*time.Millisecond)
	defer cancel()
	if err := eng.Flush(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with the broker stalled = %v, want the deadline", err)
	}
	select {
	case o := <-ch:
		t.Fatalf("done called while the broker was stalled: %+v", o)
	default:
	}
	stall.Heal()
	if err := eng.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-ch:
		if o.err != nil || o.md.Offset != 1 {
			t.Fatalf("done after Flush: %+v", o)
		}
	default:
		t.Fatal("Flush returned before done was called")
	}
}

func TestProducerSendAsync(t *testing.T) {
	e := newEnv(t, 1, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	p := kstream.NewProducer(eng, e.topic, codec.JSON[order]())
	done, ch := doneOnce(t)
	p.SendAsync(e.ctx, []byte("o1"), order{ID: 1, Amount: 2.5}, done, kstream.WithHeader("h", []byte("x")))
	if o := waitOutcome(t, ch, 10*time.Second, "a typed send"); o.err != nil || o.md.Offset != 0 || o.md.Topic != e.topic {
		t.Fatalf("typed send: %+v", o)
	}
	r := readBack(t, e, e.topic, 0, 0)
	var got order
	if err := json.Unmarshal(r.Value, &got); err != nil || got != (order{ID: 1, Amount: 2.5}) || string(r.Key) != "o1" || len(r.Headers) != 1 {
		t.Fatalf("read back %+v (%v)", r, err)
	}

	// A value that does not encode: done gets the encoding error at once.
	bad := kstream.NewProducer(eng, e.topic, codec.JSON[chan int]())
	done, ch = doneOnce(t)
	bad.SendAsync(e.ctx, nil, make(chan int), done)
	select {
	case o := <-ch:
		var jerr *json.UnsupportedTypeError
		if !errors.As(o.err, &jerr) || !strings.Contains(o.err.Error(), e.topic) {
			t.Fatalf("done got %v, want the JSON encoding error naming the topic", o.err)
		}
	default:
		t.Fatal("done of an unencodable value not called before SendAsync returned")
	}
}

// A handler that sends with SendAsync while the engine stops: Stop flushes
// the record and its done is called before Stop returns.
func TestSendAsyncDuringStopIsFlushed(t *testing.T) {
	e := newEnv(t, 1, 1)
	if err := e.c.CreateTopic(e.ctx, "out", 1); err != nil {
		t.Fatal(err)
	}
	eng := e.engine()
	stopping := make(chan struct{})
	eng.OnStop(func(context.Context) error { close(stopping); return nil })
	inHandler := make(chan struct{})
	done, ch := doneOnce(t)
	s := e.engineStream(e.topic, "stop-send").Handle(func(ctx context.Context, rec kstream.Record[string]) error {
		close(inHandler)
		<-stopping // the engine is stopping
		eng.SendAsync(ctx, "out", []byte("from "+rec.Value), done)
		return nil
	})
	if err := eng.Add(s); err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inHandler:
	case <-e.ctx.Done():
		t.Fatal("the handler never got the record")
	}
	if err := eng.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-ch:
		if o.err != nil || o.md.Topic != "out" || o.md.Offset != 0 {
			t.Fatalf("send during stop: %+v (err %v)", o, o.err)
		}
	default:
		t.Fatal("Stop returned before the done of a send made while stopping was called")
	}
	if got := kstreamtest.ReadRecords(t, e.c, "out", codec.String(), 1, 10*time.Second); got[0].Value != "from v0" {
		t.Fatalf("read back %q", got[0].Value)
	}
	done, ch = doneOnce(t)
	eng.SendAsync(e.ctx, "out", []byte("late"), done)
	select {
	case o := <-ch:
		if !errors.Is(o.err, kstream.ErrEngineNotStarted) {
			t.Fatalf("SendAsync after Stop: %v", o.err)
		}
	default:
		t.Fatal("done of a send after Stop not called")
	}
}

// Sends from many goroutines at once, with and without waiting: every done
// is called once and every Send returns, under the race detector.
func TestSendAndSendAsyncConcurrently(t *testing.T) {
	const workers, each = 4, 100
	e := newEnv(t, 3, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	var got outcomes
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for j := range each {
				i := w*each + j
				if j%2 == 0 {
					eng.SendAsync(e.ctx, e.topic, []byte(fmt.Sprint(i)), got.done(i), kstream.WithKey([]byte{byte(i)}))
					continue
				}
				if _, err := eng.Send(e.ctx, e.topic, []byte(fmt.Sprint(i)), kstream.WithKey([]byte{byte(i)})); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	if err := eng.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list := got.get()
	if len(list) != workers*each/2 {
		t.Fatalf("done called %d times, want %d", len(list), workers*each/2)
	}
	seen := map[int]bool{}
	for _, o := range list {
		if o.err != nil || seen[o.i] {
			t.Fatalf("send %d: %v (seen before: %v)", o.i, o.err, seen[o.i])
		}
		seen[o.i] = true
	}
	if end := e.c.Produced(t, e.topic).Total(); end != workers*each {
		t.Fatalf("topic holds %d records, want %d", end, workers*each)
	}
}

// Records still unsent when Stop's deadline passes fail when the producer
// closes; their done functions have all returned when Stop does (franz-go
// calls them on a goroutine of its own, which Stop waits for).
func TestStopWaitsForDoneOfRecordsItFails(t *testing.T) {
	e := newEnv(t, 1, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Send(e.ctx, e.topic, []byte("before")); err != nil { // the producer knows the topic
		t.Fatal(err)
	}
	stall := e.c.StallBroker(t, -1)
	defer stall.Heal()
	const n = 50
	var o outcomes
	for i := range n {
		eng.SendAsync(context.Background(), e.topic, []byte(strconv.Itoa(i)), func(md kstream.RecordMetadata, err error) {
			time.Sleep(2 * time.Millisecond) // a done that takes a moment
			o.done(i)(md, err)
		})
	}
	ctx, cancel := context.WithTimeout(e.ctx, 300*time.Millisecond)
	defer cancel()
	_ = eng.Stop(ctx) // its flush fails at the deadline: that is the point
	got := o.get()
	if len(got) != n {
		t.Fatalf("%d of %d done functions had returned when Stop returned", len(got), n)
	}
	for _, oc := range got {
		if oc.err == nil {
			t.Errorf("send %d succeeded against a stalled broker", oc.i)
		}
	}
	// Heal and let the broker serve a request before the cluster closes:
	// a stalled request still held at the close leaves kfake's control
	// goroutine waiting for a lock no one releases (a kfake leak, which
	// the goroutine check would report as ours).
	stall.Heal()
	if _, err := e.c.Admin().ListTopics(e.ctx); err != nil {
		t.Fatal(err)
	}
}

// SendAsync racing Stop: a send that passed the engine's state check just
// before Stop closed the producer had its done called after Stop returned.
// Found in review. Now Stop refuses sends before it flushes and waits for
// the sends it let through: after Stop returns, done is only ever called
// with ErrEngineNotStarted, on the sender's own goroutine.
func TestSendAsyncRacingStop(t *testing.T) {
	e := newEnv(t, 3, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	var stopReturned atomic.Bool
	var late, ok, refused atomic.Int64
	quit := make(chan struct{})
	var senders sync.WaitGroup
	for range 4 {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for {
				select {
				case <-quit:
					return
				default:
				}
				eng.SendAsync(e.ctx, e.topic, []byte("x"), func(_ kstream.RecordMetadata, err error) {
					switch {
					case errors.Is(err, kstream.ErrEngineNotStarted):
						refused.Add(1)
					case stopReturned.Load():
						late.Add(1)
					case err == nil:
						ok.Add(1)
					}
				})
			}
		}()
	}
	eventually(t, 20*time.Second, "records to be acknowledged", func() bool { return ok.Load() > 1000 })
	if err := eng.Stop(e.ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	stopReturned.Store(true)
	eventually(t, 10*time.Second, "a send after Stop to be refused", func() bool { return refused.Load() > 0 })
	close(quit)
	senders.Wait()
	if n := late.Load(); n > 0 {
		t.Fatalf("%d done functions ran after Stop returned (%d acknowledged before)", n, ok.Load())
	}
}
