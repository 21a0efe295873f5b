package kstream_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// outputs reads topic from the start to its end and counts each value;
// readCommitted reads as a read_committed consumer does.
func (e *env) outputs(topic string, readCommitted bool) map[string]int {
	e.t.Helper()
	// Control records (transaction markers) count toward the end offsets:
	// kept, they move the position past each marker.
	opts := []kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords()}
	if readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kstreamtest.NewClient(e.c.Brokers(), opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	ends, err := e.c.Admin().ListEndOffsets(e.ctx, topic)
	if err != nil {
		e.t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset })
	got := map[string]int{}
	pos := map[int32]int64{}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	for !reached(pos, want) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			e.t.Fatalf("reading %s: reached %v of %v", topic, pos, want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			pos[r.Partition] = r.Offset + 1
			if !r.Attrs.IsControl() {
				got[string(r.Value)]++
			}
		})
	}
	return got
}

// opened runs fn with s open and closes it, returning the first error.
func opened(ctx context.Context, s *kstream.Stream[string], fn func(ctx context.Context) error) error {
	if err := s.Open(ctx); err != nil {
		return err
	}
	err := fn(ctx)
	return errors.Join(err, s.Close())
}

func reached(pos, want map[int32]int64) bool {
	for p, end := range want {
		if pos[p] < end {
			return false
		}
	}
	return true
}

// wantEachOnce fails unless got holds "out-v<i>" exactly once for each i
// below n (exactly) or at least once (atLeast), and nothing else.
func wantEach(t *testing.T, got map[string]int, n int, exactly bool) {
	t.Helper()
	var bad []string
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("out-v%d", i)
		c := got[k]
		if c == 0 || (exactly && c != 1) {
			bad = append(bad, fmt.Sprintf("%s×%d", k, c))
		}
	}
	if len(got) != n {
		bad = append(bad, fmt.Sprintf("%d distinct outputs, want %d", len(got), n))
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		t.Fatalf("outputs wrong: %s", strings.Join(bad, ", "))
	}
}

func TestEmitTransformsEveryRecord(t *testing.T) {
	for _, mode := range []string{"default", "exactly-once"} {
		t.Run(mode, func(t *testing.T) {
			const n = 60
			e := newEnv(t, 3, n)
			out := e.topic + "-out"
			if err := e.c.CreateTopic(e.ctx, out, 3); err != nil {
				t.Fatal(err)
			}
			opts := []kstream.Option{kstream.Group("g")}
			if mode == "exactly-once" {
				opts = append(opts, kstream.ExactlyOnce())
			}
			s := e.stream(opts...)
			seen := 0
			err := opened(e.ctx, s, func(ctx context.Context) error {
				lctx, cancel := context.WithCancel(ctx)
				defer cancel()
				for rec, err := range s.Records(lctx) {
					if err != nil {
						return err
					}
					if err := s.Emit(lctx, out, []byte("out-"+rec.Value), kstream.WithKey(rec.Key)); err != nil {
						return err
					}
					if seen++; seen == n {
						cancel() // a normal end: Close commits
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			wantEach(t, e.outputs(out, true), n, true)
			e.wantCommitted("g", map[int32]int64{0: n / 3, 1: n / 3, 2: n / 3})
		})
	}
}

func TestEmitOutsideARecord(t *testing.T) {
	e := newEnv(t, 1, 3)
	s := e.stream(kstream.Group("g"))
	if err := s.Emit(e.ctx, "x", nil); !errors.Is(err, kstream.ErrNotOpen) {
		t.Fatalf("Emit before Open: %v, want ErrNotOpen", err)
	}
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Emit(e.ctx, "x", nil); !errors.Is(err, kstream.ErrNoRecordInHand) {
		t.Fatalf("Emit with nothing in hand: %v, want ErrNoRecordInHand", err)
	}
	take(t, e.ctx, s, 1) // breaks on record 0, which goes back to the buffer
	if err := s.Emit(e.ctx, "x", nil); !errors.Is(err, kstream.ErrNoRecordInHand) {
		t.Fatalf("Emit after the loop: %v, want ErrNoRecordInHand", err)
	}
	for _, tc := range []struct {
		topic string
		want  string
	}{{"", "empty topic"}} {
		for range s.Records(e.ctx) {
			if err := s.Emit(e.ctx, tc.topic, nil); !errors.Is(err, kstream.ErrInvalidOption) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Emit(%q): %v, want ErrInvalidOption naming %q", tc.topic, err, tc.want)
			}
			break
		}
	}
}

// A failed emit holds the commit of its partition at the source record,
// is yielded as an *EmitError, and the partition is read again from the
// source record (under ExactlyOnce: the transaction aborts, and every
// record since the last commit is read again); once the fault heals every
// input has its output (exactly once under ExactlyOnce).
func TestEmitFailureRewindsAndHoldsTheCommit(t *testing.T) {
	for _, mode := range []string{"default", "exactly-once"} {
		t.Run(mode, func(t *testing.T) {
			const n = 20
			e := newEnv(t, 1, n)
			out := e.topic + "-out"
			if err := e.c.CreateTopic(e.ctx, out, 1); err != nil {
				t.Fatal(err)
			}
			fault := e.c.FailProduce(t, out, kerr.InvalidRecord, 1)
			reg := prometheus.NewRegistry()
			opts := []kstream.Option{kstream.Group("g"), kstream.Metrics(reg)}
			if mode == "exactly-once" {
				opts = append(opts, kstream.ExactlyOnce())
			}
			s := e.stream(opts...)
			var emitErrs []*kstream.EmitError
			handled := map[int64]int{}
			err := opened(e.ctx, s, func(ctx context.Context) error {
				lctx, cancel := context.WithCancel(ctx)
				defer cancel()
				for rec, err := range s.Records(lctx) {
					var ee *kstream.EmitError
					if errors.As(err, &ee) {
						emitErrs = append(emitErrs, ee)
						// Never committed past the failed source record.
						if got := e.committed("g")[0]; got > ee.Offset {
							t.Errorf("committed %d past the failed source record %d", got, ee.Offset)
						}
						continue
					}
					if err != nil {
						return err
					}
					handled[rec.Offset]++
					if err := s.Emit(lctx, out, []byte("out-"+rec.Value)); err != nil {
						return err
					}
					if rec.Offset == n-1 && len(emitErrs) > 0 {
						cancel()
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if fault.Hits() == 0 || len(emitErrs) == 0 {
				t.Fatalf("fault hits %d, emit errors %d: the fault did not bite", fault.Hits(), len(emitErrs))
			}
			ee := emitErrs[0]
			if ee.Topic != e.topic || ee.Partition != 0 || ee.To != out || !errors.Is(ee, kerr.InvalidRecord) {
				t.Fatalf("EmitError %+v does not name the source record and target", ee)
			}
			if handled[ee.Offset] < 2 {
				t.Fatalf("source record %d handled %d times, want it delivered again", ee.Offset, handled[ee.Offset])
			}
			wantEach(t, e.outputs(out, true), n, mode == "exactly-once")
			e.wantCommitted("g", map[int32]int64{0: n})

			// The metrics count what happened.
			sum := func(name string, labels map[string]string) float64 {
				total := 0.0
				for _, v := range series(t, reg, name, labels) {
					total += v
				}
				return total
			}
			acked := sum("kstreams_emits_acknowledged_total", map[string]string{"topic": out})
			failed := sum("kstreams_emit_failures_total", map[string]string{"topic": out})
			if acked < n || failed < 1 {
				t.Errorf("emits acknowledged %v (want >= %d), failed %v (want >= 1)", acked, n, failed)
			}
			if lat := sum("kstreams_emit_latency_seconds", nil); lat != acked {
				t.Errorf("emit latency observations %v, want one per acknowledged emit (%v)", lat, acked)
			}
			if mode == "exactly-once" {
				if c, a := sum("kstreams_transactions_committed_total", nil), sum("kstreams_transactions_aborted_total", nil); c < 1 || a < 1 {
					t.Errorf("transactions committed %v, aborted %v; want both >= 1", c, a)
				}
			}
		})
	}
}

// With ManualCommit, Commit waits for the acknowledgement of what it
// covers: with a long linger, the output is written when Commit returns.
func TestEmitManualCommitWaitsForAcks(t *testing.T) {
	e := newEnv(t, 1, 5)
	out := e.topic + "-out"
	if err := e.c.CreateTopic(e.ctx, out, 1); err != nil {
		t.Fatal(err)
	}
	s := e.stream(kstream.Group("g"), kstream.ManualCommit(), kstream.ClientOptions(kgo.ProducerLinger(time.Minute)))
	err := opened(e.ctx, s, func(ctx context.Context) error {
		for rec, err := range s.Records(ctx) {
			if err != nil {
				return err
			}
			if err := s.Emit(ctx, out, []byte("out-"+rec.Value)); err != nil {
				return err
			}
			if rec.Offset == 4 {
				if err := s.Commit(ctx); err != nil {
					return err
				}
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.wantCommitted("g", map[int32]int64{0: 5})
	wantEach(t, e.outputs(out, false), 5, true)
}

// Emit from Handle functions ties the output to the record each was given,
// also on the lanes of KeyConcurrency; DeadLetter writes with Emit.
func TestEmitFromHandleUnderConcurrency(t *testing.T) {
	for _, mode := range []string{"serial", "key-concurrency", "exactly-once-key-concurrency"} {
		t.Run(mode, func(t *testing.T) {
			const n = 90
			e := newEnv(t, 3, 0)
			recs := make([]*kgo.Record, n)
			for i := range recs {
				recs[i] = &kgo.Record{Topic: e.topic, Partition: int32(i % 3), Key: []byte(fmt.Sprintf("k%d", i%7)), Value: []byte(fmt.Sprintf("v%d", i))}
			}
			if err := e.c.Produce(e.ctx, recs...); err != nil {
				t.Fatal(err)
			}
			out, dlq := e.topic+"-out", e.topic+"-dlq"
			for _, tp := range []string{out, dlq} {
				if err := e.c.CreateTopic(e.ctx, tp, 3); err != nil {
					t.Fatal(err)
				}
			}
			eng := e.engine()
			opts := []kstream.Option{kstream.CommitInterval(200 * time.Millisecond)}
			if mode != "serial" {
				opts = append(opts, kstream.KeyConcurrency(4))
			}
			if strings.HasPrefix(mode, "exactly-once") {
				opts = append(opts, kstream.ExactlyOnce())
			}
			s := e.engineStream(e.topic, "g", opts...)
			done := make(chan struct{}, n)
			s.Handle(func(ctx context.Context, rec kstream.Record[string]) error {
				defer func() { done <- struct{}{} }()
				if rec.Value == "v13" {
					return errors.New("poison")
				}
				return s.Emit(ctx, out, []byte("out-"+rec.Value), kstream.WithKey(rec.Key))
			}, kstream.DeadLetter[string](eng, dlq))
			if err := eng.Add(s); err != nil {
				t.Fatal(err)
			}
			if err := eng.Start(e.ctx); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < n; i++ {
				select {
				case <-done:
				case <-e.ctx.Done():
					t.Fatalf("handled %d of %d", i, n)
				}
			}
			eventually(t, 10*time.Second, "every record committed", func() bool {
				c := e.committed("g")
				return c[0]+c[1]+c[2] == n
			})
			got := e.outputs(out, true)
			if got["out-v13"] != 0 {
				t.Fatal("the poison record has an output")
			}
			got["out-v13"] = 1
			wantEach(t, got, n, strings.HasPrefix(mode, "exactly-once"))
			if d := e.outputs(dlq, true); d["v13"] != 1 || len(d) != 1 {
				t.Fatalf("dead letters %v, want v13 once", d)
			}
		})
	}
}

func TestExactlyOnceOptions(t *testing.T) {
	c := kstreamtest.NewCluster(t)
	for _, tc := range []struct {
		opts []kstream.Option
		want string
	}{
		{[]kstream.Option{kstream.ExactlyOnce()}, "ExactlyOnce needs Group"},
		{[]kstream.Option{kstream.ExactlyOnce(), kstream.Group("g"), kstream.ManualCommit()}, "ManualCommit"},
		{[]kstream.Option{kstream.CommitInterval(time.Second)}, "CommitInterval needs Group"},
		{[]kstream.Option{kstream.CommitInterval(time.Second), kstream.Group("g"), kstream.ManualCommit()}, "CommitInterval has no effect with ManualCommit"},
		{[]kstream.Option{kstream.CommitInterval(0), kstream.Group("g")}, "CommitInterval: must be positive"},
	} {
		opts := append([]kstream.Option{kstream.Brokers(c.Brokers()...), kstream.Topics("t")}, tc.opts...)
		_, err := kstream.NewStream(codec.String(), opts...)
		if !errors.Is(err, kstream.ErrInvalidOption) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewStream: %v, want ErrInvalidOption naming %q", err, tc.want)
		}
	}
	if _, err := kstream.NewEngine(kstream.ExactlyOnce()); !errors.Is(err, kstream.ErrInvalidOption) {
		t.Errorf("NewEngine(ExactlyOnce()): %v, want ErrInvalidOption", err)
	}
}

// Emit writes the trace context of its ctx into the record, as sends do.
func TestEmitInjectsTraceContext(t *testing.T) {
	e := newEnv(t, 1, 1)
	out := e.topic + "-out"
	if err := e.c.CreateTopic(e.ctx, out, 1); err != nil {
		t.Fatal(err)
	}
	_, tp := newRecorder(t)
	s := e.stream(kstream.Group("g"), kstream.Tracing(tp))
	ctx, span := tp.Tracer("test").Start(e.ctx, "caller")
	defer span.End()
	err := opened(e.ctx, s, func(context.Context) error {
		for _, err := range s.Records(ctx) {
			if err != nil {
				return err
			}
			if err := s.Emit(ctx, out, []byte("x")); err != nil {
				return err
			}
			break
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kstreamtest.NewClient(e.c.Brokers(), kgo.ConsumeTopics(out), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got string
	for got == "" && e.ctx.Err() == nil {
		cl.PollFetches(e.ctx).EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == "traceparent" {
					got = string(h.Value)
				}
			}
		})
	}
	if want := traceparent(span.SpanContext()); got != want {
		t.Fatalf("emitted record's traceparent %q, want %q", got, want)
	}
}

// Emit honours ToPartition (and, without it, partitions by key).
func TestEmitToPartition(t *testing.T) {
	e := newEnv(t, 1, 4)
	out := e.topic + "-out"
	if err := e.c.CreateTopic(e.ctx, out, 3); err != nil {
		t.Fatal(err)
	}
	s := e.stream(kstream.Group("g"))
	err := opened(e.ctx, s, func(context.Context) error {
		lctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		for rec, err := range s.Records(lctx) {
			if err != nil {
				return err
			}
			if err := s.Emit(lctx, out, []byte(rec.Value), kstream.ToPartition(int32(rec.Offset%2)+1)); err != nil {
				return err
			}
			if rec.Offset == 3 {
				cancel()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ends, err := e.c.Admin().ListEndOffsets(e.ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { got[o.Partition] = o.Offset })
	if got[0] != 0 || got[1] != 2 || got[2] != 2 {
		t.Fatalf("output end offsets by partition %v, want 0:0 1:2 2:2", got)
	}
}
