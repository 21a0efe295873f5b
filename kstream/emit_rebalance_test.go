package kstream_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/kstream"
)

// Members of one group transform a topic with Emit while a second member
// joins and later the first leaves; records keep arriving throughout. In
// the default mode every input has its output; under ExactlyOnce a
// read_committed reader finds each exactly once.
func TestEmitAcrossRebalances(t *testing.T) {
	for _, mode := range []string{"default", "exactly-once"} {
		t.Run(mode, func(t *testing.T) {
			const total = 600
			e := newEnv(t, 4, 0)
			out := e.topic + "-out"
			if err := e.c.CreateTopic(e.ctx, out, 4); err != nil {
				t.Fatal(err)
			}
			opts := []kstream.Option{kstream.Group("g"), kstream.CommitInterval(100 * time.Millisecond)}
			if mode == "exactly-once" {
				opts = append(opts, kstream.ExactlyOnce())
			}
			var handled atomic.Int64
			member := func(ctx context.Context, wg *sync.WaitGroup) *kstream.Stream[string] {
				s := e.stream(opts...)
				if err := s.Open(e.ctx); err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for rec, err := range s.Records(ctx) {
						if err != nil {
							t.Errorf("range: %v", err)
							return
						}
						if err := s.Emit(ctx, out, []byte("out-"+rec.Value)); err != nil {
							t.Errorf("Emit: %v", err)
							return
						}
						handled.Add(1)
					}
				}()
				return s
			}
			var wg1, wg2 sync.WaitGroup
			ctx1, cancel1 := context.WithCancel(e.ctx)
			ctx2, cancel2 := context.WithCancel(e.ctx)
			defer cancel1()
			defer cancel2()
			s1 := member(ctx1, &wg1)
			produced := 0
			produce := func(n int) {
				e.produce(produced, produced+n)
				produced += n
			}
			produce(200)
			eventually(t, 20*time.Second, "first member handled records", func() bool { return handled.Load() >= 100 })
			s2 := member(ctx2, &wg2)
			produce(200)
			eventually(t, 20*time.Second, "both members handled records", func() bool { return handled.Load() >= 300 })
			cancel1() // the first member leaves
			wg1.Wait()
			if err := s1.Close(); err != nil {
				t.Fatal(err)
			}
			produce(total - produced)
			eventually(t, 30*time.Second, "every record committed", func() bool {
				c := e.committed("g")
				return c[0]+c[1]+c[2]+c[3] == total
			})
			cancel2()
			wg2.Wait()
			if err := s2.Close(); err != nil {
				t.Fatal(err)
			}
			got := e.outputs(out, true)
			wantEach(t, got, total, mode == "exactly-once")
			dups := 0
			for i := 0; i < total; i++ {
				dups += got[fmt.Sprintf("out-v%d", i)] - 1
			}
			t.Logf("%s: %d inputs handled %d times, %d duplicate outputs", mode, total, handled.Load(), dups)
		})
	}
}

// The same with Handle streams on KeyConcurrency lanes, run by two engines:
// transactions end only when no handler runs, rebalances included.
func TestEmitExactlyOnceConcurrentAcrossRebalances(t *testing.T) {
	const total = 600
	e := newEnv(t, 4, 0)
	out := e.topic + "-out"
	if err := e.c.CreateTopic(e.ctx, out, 4); err != nil {
		t.Fatal(err)
	}
	var handled atomic.Int64
	start := func() *kstream.Engine {
		eng := e.engine()
		s := e.engineStream(e.topic, "g", kstream.ExactlyOnce(), kstream.KeyConcurrency(4))
		s.Handle(func(ctx context.Context, rec kstream.Record[string]) error {
			handled.Add(1)
			return s.Emit(ctx, out, []byte("out-"+rec.Value), kstream.WithKey(rec.Key))
		})
		if err := eng.Add(s); err != nil {
			t.Fatal(err)
		}
		if err := eng.Start(e.ctx); err != nil {
			t.Fatal(err)
		}
		return eng
	}
	produced := 0
	produce := func(n int) {
		recs := make([]int, 0, n)
		for i := produced; i < produced+n; i++ {
			recs = append(recs, i)
		}
		e.produceKeyedRange(recs)
		produced += n
	}
	eng1 := start()
	produce(200)
	eventually(t, 20*time.Second, "first member handled records", func() bool { return handled.Load() >= 100 })
	eng2 := start()
	produce(200)
	eventually(t, 20*time.Second, "both members handled records", func() bool { return handled.Load() >= 300 })
	if err := eng1.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	produce(total - produced)
	eventually(t, 30*time.Second, "every record committed", func() bool {
		c := e.committed("g")
		return c[0]+c[1]+c[2]+c[3] == total
	})
	if err := eng2.Stop(e.ctx); err != nil {
		t.Fatal(err)
	}
	wantEach(t, e.outputs(out, true), total, true)
	t.Logf("%d inputs handled %d times", total, handled.Load())
}

// produceKeyedRange writes v<i> for each i, keyed k<i%5>, to partition i%partitions.
func (e *env) produceKeyedRange(is []int) {
	e.t.Helper()
	recs := make([]*kgo.Record, 0, len(is))
	for _, i := range is {
		recs = append(recs, &kgo.Record{Topic: e.topic, Partition: int32(i) % e.partitions, Key: []byte(fmt.Sprintf("k%d", i%5)), Value: []byte(fmt.Sprintf("v%d", i))})
	}
	if err := e.c.Produce(e.ctx, recs...); err != nil {
		e.t.Fatal(err)
	}
}
