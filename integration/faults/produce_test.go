package faults

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// sendResult is what one Producer.Send returned.
type sendResult struct {
	md  kstream.RecordMetadata
	err error
}

// sendAll sends values p<from> .. p<to-1> with keys k<i> through prod, from
// workers goroutines, and stores each result in results[i].
func sendAll(ctx context.Context, prod *kstream.Producer[string], results []sendResult, from, to, workers int) {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= to {
					return
				}
				sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				md, err := prod.Send(sctx, []byte(fmt.Sprintf("k%d", i)), fmt.Sprintf("p%d", i))
				cancel()
				results[i] = sendResult{md, err}
			}
		})
	}
	wg.Wait()
}

// produceScenario sends np records through an engine's Producer, with the
// fault inject installs in place for the second three quarters, then reads
// the topic back with a stream and checks that every acknowledged record is
// there, once, with its value, and that no failed send was written. It
// returns the send errors.
func produceScenario(t *testing.T, name string, inject func(sc *scenario) *kstreamtest.Fault) (*scenario, []error) {
	const np = 1000
	sc := newScenario(t, name, 4)
	eng := kstreamtest.NewEngine(t, sc.c, kstream.Logger(sc.log))
	if err := eng.Start(sc.ctx); err != nil {
		t.Fatal(err)
	}
	prod := kstream.NewProducer(eng, sc.topic, codec.String())
	results := make([]sendResult, np)
	sendAll(sc.ctx, prod, results, 0, np/4, 8)
	f := inject(sc)
	sendAll(sc.ctx, prod, results, np/4, np, 8)
	if f.Hits() == 0 {
		t.Errorf("the fault failed no produce request")
	}
	f.Heal()
	if err := sc.stop(eng, 10*time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}

	acked := make(map[string]kstream.RecordMetadata)
	failed := make(map[string]bool)
	var errs []error
	for i, r := range results {
		v := fmt.Sprintf("p%d", i)
		if r.err != nil {
			failed[v] = true
			errs = append(errs, r.err)
			continue
		}
		acked[v] = r.md
	}

	// Read everything back with a stream of its own group.
	end := sc.c.Produced(t, sc.topic)
	s := sc.stream()
	var seen sync.Map // value -> position
	var dupValues atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for rec, err := range s.Records(sc.ctx) {
			if err != nil {
				t.Errorf("reading back: %v", err)
				continue
			}
			if _, dup := seen.LoadOrStore(rec.Value, kstream.RecordMetadata{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}); dup {
				dupValues.Add(1)
			}
			sc.led().Add(rec.Topic, rec.Partition, rec.Offset)
		}
	}()
	sc.waitHandled(int(end.Total()), 20*time.Second)
	if err := sc.close(s); err != nil {
		t.Errorf("Close: %v", err)
	}
	<-done

	lost := 0
	for v, md := range acked {
		got, ok := seen.Load(v)
		if !ok {
			lost++
			t.Errorf("acknowledged record %s (partition %d offset %d) is not in the topic", v, md.Partition, md.Offset)
			continue
		}
		if got.(kstream.RecordMetadata) != (kstream.RecordMetadata{Topic: md.Topic, Partition: md.Partition, Offset: md.Offset}) {
			t.Errorf("record %s is at %+v, but Send reported %+v", v, got, md)
		}
	}
	written := 0
	for v := range failed {
		if _, ok := seen.Load(v); ok {
			written++
		}
	}
	if end.Total() != int64(len(acked)+written) {
		t.Errorf("the topic holds %d records; %d sends were acknowledged and %d failed sends were written anyway",
			end.Total(), len(acked), written)
	}
	if dupValues.Load() != 0 {
		t.Errorf("%d values were written more than once", dupValues.Load())
	}
	sc.setOutcome("%d sends acknowledged, %d failed (%d of those written anyway), %d produce requests faulted; every ack is in the log once",
		len(acked), len(failed), written, f.Hits())
	if lost > 0 {
		t.Errorf("%d acknowledged records lost", lost)
	}
	return sc, errs
}

// Produce requests failing with a retriable error are retried by franz-go:
// every Send succeeds, and the idempotent producer writes each record once.
func TestProduceRetriable(t *testing.T) {
	t.Parallel()
	sc, errs := produceScenario(t, "produce NOT_LEADER_FOR_PARTITION x5", func(sc *scenario) *kstreamtest.Fault {
		return sc.c.FailProduce(t, sc.topic, kerr.NotLeaderForPartition, 5)
	})
	if len(errs) != 0 {
		t.Errorf("%d Send(s) failed on a retriable fault, first: %v", len(errs), errs[0])
	}
	sc.finish(true)
}

// Produce requests failing with an error franz-go does not retry
// (INVALID_RECORD) fail the sends of the records in them, with the broker's
// error; the other sends succeed. A failed send is not written, an
// acknowledged one is written once.
func TestProduceNonRetriable(t *testing.T) {
	t.Parallel()
	sc, errs := produceScenario(t, "produce INVALID_RECORD x3", func(sc *scenario) *kstreamtest.Fault {
		return sc.c.FailProduce(t, sc.topic, kerr.InvalidRecord, 3)
	})
	if len(errs) == 0 {
		t.Errorf("no Send failed")
	}
	for _, err := range errs {
		if !errors.Is(err, kerr.InvalidRecord) {
			t.Errorf("Send failed with %v, want INVALID_RECORD", err)
		}
	}
	sc.finish(true)
}
