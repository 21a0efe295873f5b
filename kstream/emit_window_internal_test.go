package kstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/gokstreams/kstreams/codec"
)

// The default mode's rewinds (a rebalance's give-way, the recovery from a
// failed emit) set franz-go's committable position with SetOffsets, and
// MarkCommitOffsets cannot move it back: a rewind past a source record
// whose emitted records are not acknowledged would let an automatic
// commit, or the commit before a revoke, cover it before its output
// exists. These tests hold the output topic's produce requests (or fail
// one emit) and watch the position franz-go would commit.

const windowRecords = 100

// windowEnv is a one-broker cluster with an input topic of windowRecords
// records ("v<i>" at offset i) and an empty output topic, both of one
// partition, and the stream of group "g" reading the input.
type windowEnv struct {
	t       *testing.T
	ctx     context.Context
	c       *kfake.Cluster
	release chan struct{} // closing it lets the held produce requests go on
	relOnce sync.Once
	held    chan struct{} // closed when the first produce request is held
	// failFirst makes the first held request fail (not retriable) once
	// released.
	failFirst atomic.Bool
	s         *Stream[string]
	ss        *session
}

const (
	windowIn  = "in"
	windowOut = "out"
)

func newWindowEnv(t *testing.T, opts ...Option) *windowEnv {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, windowIn, windowOut))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	pc, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]*kgo.Record, windowRecords)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: windowIn, Value: fmt.Appendf(nil, "v%d", i)}
	}
	err = pc.ProduceSync(ctx, recs...).FirstErr()
	pc.Close()
	if err != nil {
		t.Fatal(err)
	}
	e := &windowEnv{t: t, ctx: ctx, c: c, release: make(chan struct{}), held: make(chan struct{})}
	var heldOnce sync.Once
	c.ControlKey(kmsg.Produce.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		// Only the stream produces from now on, to out (newer produce
		// requests name topics by ID).
		c.KeepControl()
		heldOnce.Do(func() { close(e.held) })
		c.SleepControl(func() { <-e.release })
		if e.failFirst.CompareAndSwap(true, false) {
			return failProduce(req.(*kmsg.ProduceRequest)), nil, true
		}
		return nil, nil, false
	})
	t.Cleanup(e.releaseProduce)
	base := []Option{
		Brokers(c.ListenAddrs()...), Topics(windowIn), Group("g"),
		CommitInterval(100 * time.Millisecond), // franz-go's autocommit: would commit a rewound position at once
		ClientOptions(kgo.HeartbeatInterval(100*time.Millisecond), kgo.FetchMaxWait(100*time.Millisecond)),
		internalGroupProtocol(),
	}
	s, err := NewStream(codec.String(), append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.releaseProduce() // a test that failed leaves them held
		_ = s.Close()
	})
	e.s = s
	e.ss, err = s.session()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// failProduce answers req with a failure of every partition it writes.
func failProduce(req *kmsg.ProduceRequest) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	resp.Version = req.Version
	for _, rt := range req.Topics {
		t := kmsg.NewProduceResponseTopic()
		t.Topic, t.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			p := kmsg.NewProduceResponseTopicPartition()
			p.Partition = rp.Partition
			p.ErrorCode = kerr.InvalidRecord.Code
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

func (e *windowEnv) releaseProduce() { e.relOnce.Do(func() { close(e.release) }) }

// position returns what franz-go would commit for the input partition now
// (the head of its uncommitted offsets) and what it committed, -1 for
// none.
func (e *windowEnv) position() (head, committed int64) {
	head, committed = -1, -1
	cl := e.ss.client()
	if m := cl.MarkedOffsets(); m != nil {
		if eo, ok := m[windowIn][0]; ok {
			head = eo.Offset
		}
	}
	if m := cl.CommittedOffsets(); m != nil {
		if eo, ok := m[windowIn][0]; ok {
			committed = eo.Offset
		}
	}
	return head, committed
}

// watch fails the test if, for d, franz-go's committable position or
// commit of the input partition passes limit (the lowest source record
// whose output is not acknowledged).
func (e *windowEnv) watch(d time.Duration, limit int64) {
	e.t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		head, committed := e.position()
		if head > limit || committed > limit {
			e.t.Fatalf("franz-go would commit %d (committed %d) while the output of source record %d is not acknowledged", head, committed, limit)
		}
	}
}

// finish waits until every input record is committed, then ends the loop
// (cancel) and fails the test if it returned an error on done.
func (e *windowEnv) finish(cancel context.CancelFunc, done <-chan error) {
	e.t.Helper()
	windowEventually(e.t, 15*time.Second, "the commit of every input record", func() bool {
		_, committed := e.position()
		return committed == windowRecords
	})
	cancel()
	if err := <-done; err != nil {
		e.t.Fatal(err)
	}
}

// outputs returns how many times each value was written to the output
// topic.
func (e *windowEnv) outputs() map[string]int {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.c.ListenAddrs()...), kgo.ConsumeTopics(windowOut),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	end := int64(0)
	if m := e.endOffset(cl); m > 0 {
		end = m
	}
	got := map[string]int{}
	for n := int64(0); n < end; {
		fs := cl.PollFetches(e.ctx)
		if err := e.ctx.Err(); err != nil {
			e.t.Fatalf("reading the output: %v", err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got[string(r.Value)]++
			n++
		})
	}
	return got
}

func (e *windowEnv) endOffset(cl *kgo.Client) int64 {
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = windowOut
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Timestamp = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(e.ctx, cl)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Topics[0].Partitions[0].Offset
}

// wantEveryOutput checks that every input record has its output.
func (e *windowEnv) wantEveryOutput() {
	e.t.Helper()
	got := e.outputs()
	for i := range windowRecords {
		if got[fmt.Sprintf("o-v%d", i)] == 0 {
			e.t.Fatalf("input record %d has no output (outputs: %d values)", i, len(got))
		}
	}
}

func windowEventually(t *testing.T, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(timeout); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", timeout, msg)
		}
	}
}

// A give-way at a record boundary with records still buffered rewinds the
// partition to its first buffered record; the records finished before it
// have their emits held by the broker. franz-go must never be told a
// position past them.
func TestEmitGiveWayNeverCommitsPastUnacknowledgedOutput(t *testing.T) {
	e := newWindowEnv(t)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	armed := make(chan int, 1)
	done := make(chan error, 1)
	handled := make(map[int64]int) // read after done
	go func() {
		done <- func() error {
			first := true
			for rec, err := range e.s.Records(ctx) {
				if err != nil {
					return err
				}
				handled[rec.Offset]++
				if err := e.s.Emit(ctx, windowOut, []byte("o-"+rec.Value)); err != nil {
					return err
				}
				if rec.Offset == 9 && first {
					first = false
					e.ss.mu.Lock()
					buffered := len(e.ss.buf) - e.ss.pos
					e.ss.mu.Unlock()
					// The next record boundary gives way, as for a
					// rebalance, with the rest buffered.
					e.ss.rebalancePending.Store(true)
					armed <- buffered
				}
			}
			return nil
		}()
	}()
	var buffered int
	select {
	case buffered = <-armed:
	case err := <-done:
		t.Fatalf("the loop ended before record 9: %v", err)
	}
	if buffered == 0 {
		t.Fatal("nothing buffered after record 9: the give-way would not rewind (the test needs the input fetched at once)")
	}
	select {
	case <-e.held:
	case err := <-done:
		t.Fatalf("the loop ended before its output was held: %v", err)
	}
	windowEventually(t, 5*time.Second, "the give-way to start", func() bool { return !e.ss.rebalancePending.Load() })
	// No output is acknowledged: franz-go may commit no more than 0.
	e.watch(time.Second, 0)
	e.releaseProduce()
	e.finish(cancel, done)
	// The give-way waited for the emits: the rewind did not have to go
	// back past records 0 to 9, so no record was handled twice.
	for off := range int64(windowRecords) {
		if handled[off] != 1 {
			t.Fatalf("record %d handled %d times, want once", off, handled[off])
		}
	}
	e.wantEveryOutput()
}

// A failed emit is recovered at the next record boundary by rewinding its
// partition to the failed source record; source records before it whose
// emits are still held must not be passed.
func TestEmitRecoveryNeverCommitsPastUnacknowledgedOutput(t *testing.T) {
	// Record 5's first emit is too large for the producer: franz-go fails
	// it at once, while the emits of records 0 to 4 are held.
	e := newWindowEnv(t, ClientOptions(kgo.ProducerBatchMaxBytes(1000)))
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var (
		emitErrs []*EmitError
		mu       sync.Mutex
	)
	bigSent := make(chan struct{})
	done := make(chan error, 1)
	handled := make(map[int64]int) // read after done
	go func() {
		done <- func() error {
			big, sent := true, false
			for rec, err := range e.s.Records(ctx) {
				var ee *EmitError
				if errors.As(err, &ee) {
					mu.Lock()
					emitErrs = append(emitErrs, ee)
					mu.Unlock()
					continue
				}
				if err != nil {
					return err
				}
				handled[rec.Offset]++
				if rec.Offset == 4 {
					<-e.held // records 0 to 4 have their emits held
				}
				value := []byte("o-" + rec.Value)
				if rec.Offset == 5 && big {
					big = false
					value = bytes.Repeat([]byte("x"), 2000)
				}
				if err := e.s.Emit(ctx, windowOut, value); err != nil {
					return err
				}
				if rec.Offset == 5 && !sent {
					sent = true
					close(bigSent)
				}
			}
			return nil
		}()
	}()
	select {
	case <-bigSent:
	case err := <-done:
		t.Fatalf("the loop ended before record 5: %v", err)
	}
	// The failure comes at once and the next record boundary recovers:
	// no output is acknowledged, franz-go may commit no more than 0.
	e.watch(time.Second, 0)
	e.releaseProduce()
	e.finish(cancel, done)
	mu.Lock()
	defer mu.Unlock()
	if len(emitErrs) != 1 || emitErrs[0].Offset != 5 || !errors.Is(emitErrs[0], kerr.MessageTooLarge) {
		t.Fatalf("emit errors %v, want one for source record 5 (message too large)", emitErrs)
	}
	// The recovery waited for the emits of records 0 to 4: it read again
	// from the failed record 5, not from 0.
	for off := range int64(windowRecords) {
		if off < 5 && handled[off] != 1 || handled[off] == 0 {
			t.Fatalf("record %d handled %d times, want once (0 to 4), at least once (from 5)", off, handled[off])
		}
	}
	if handled[5] != 2 {
		t.Fatalf("record 5 handled %d times, want twice (its emit failed)", handled[5])
	}
	e.wantEveryOutput()
}

// A give-way while no range runs (a rebalance after the loop left with
// records buffered) rewinds the partition to its first buffered record; an
// emit of an earlier record failed meanwhile. The rewind must not pass the
// failed source record: a commit there (the one before a revoke) would
// leave it without output. Its *EmitError is yielded by the next range.
func TestEmitGiveWayNeverPassesAFailedEmit(t *testing.T) {
	e := newWindowEnv(t)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	for rec, err := range e.s.Records(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if err := e.s.Emit(ctx, windowOut, []byte("o-"+rec.Value)); err != nil {
			t.Fatal(err)
		}
		if rec.Offset == 9 {
			<-e.held // the first request, with record 0's output, is held
			break    // record 9 goes back to the buffer
		}
	}
	e.ss.mu.Lock()
	buffered := len(e.ss.buf) - e.ss.pos
	e.ss.mu.Unlock()
	if buffered == 0 {
		t.Fatal("nothing buffered after the loop: the give-way would not rewind")
	}
	e.failFirst.Store(true)
	e.releaseProduce()
	windowEventually(t, 10*time.Second, "the emit of record 0 to fail", func() bool {
		e.ss.mu.Lock()
		defer e.ss.mu.Unlock()
		ps := e.ss.parts[topicPartition{windowIn, 0}]
		return ps != nil && ps.em != nil && ps.em.failed != nil && e.ss.emitting.Load() == 0
	})
	// What franz-go runs when a rebalance waits while no range does.
	e.ss.onCallbackBlocked(ctx, e.ss.client())
	if head, committed := e.position(); head > 0 || committed > 0 {
		t.Fatalf("after the give-way franz-go would commit %d (committed %d) while the emit of source record 0 failed", head, committed)
	}
	var emitErrs []*EmitError
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			for rec, err := range e.s.Records(ctx) {
				var ee *EmitError
				if errors.As(err, &ee) {
					emitErrs = append(emitErrs, ee)
					continue
				}
				if err != nil {
					return err
				}
				if err := e.s.Emit(ctx, windowOut, []byte("o-"+rec.Value)); err != nil {
					return err
				}
			}
			return nil
		}()
	}()
	e.finish(cancel, done)
	if len(emitErrs) == 0 || emitErrs[0].Offset != 0 || !errors.Is(emitErrs[0], kerr.InvalidRecord) {
		t.Fatalf("emit errors %v, want the failure of source record 0 first", emitErrs)
	}
	e.wantEveryOutput()
}
