package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// scenarioShare consumes the pre-produced records as one member of a share
// group (KIP-932), accepting each record: kstream's share stream against a
// hand-written franz-go share consumer.
const scenarioShare = "share-consume"

var shareConsumers = map[string]consumer{
	"franz-go": {
		name: "franz-go share PollRecords",
		how:  "kgo client with ShareGroup; PollRecords(500), Record.Ack(AckAccept) per record; share.auto.offset.reset=earliest set by the run (IncrementalAlterConfigs) before it joins",
		run:  shareFranz,
	},
	"kstream-share-records": {
		name: "kstream share Records",
		how:  "Stream[[]byte] with ShareGroup, Records range loop (each record accepted when the body finishes); the stream sets share.auto.offset.reset itself at Open",
		run:  shareKstreamRecords,
	},
	"kstream-share-handle": {
		name: "kstream share Handle",
		how:  "Engine with one ShareGroup Stream[[]byte].Handle(handler) returning nil (accept); Engine.Start to last record",
		run:  shareKstreamHandle,
	},
}

var shareOrder = []string{"franz-go", "kstream-share-records", "kstream-share-handle"}

// setEarliest sets the share group's share.auto.offset.reset to earliest.
func setEarliest(ctx context.Context, cl *kgo.Client, group string) error {
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeGroupConfig
	res.ResourceName = group
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Op, c.Value = "share.auto.offset.reset", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("earliest")
	res.Configs = append(res.Configs, c)
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, cl)
	if err == nil && len(resp.Resources) == 1 {
		err = kerr.ErrorForCode(resp.Resources[0].ErrorCode)
	}
	return err
}

func shareFranz(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	adm, err := kgo.NewClient(kgo.SeedBrokers(sp.Brokers...))
	if err != nil {
		return err
	}
	err = setEarliest(ctx, adm, sp.Group)
	adm.Close()
	if err != nil {
		return fmt.Errorf("share.auto.offset.reset: %w", err)
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(sp.Brokers...),
		kgo.ConsumeTopics(sp.Topic),
		kgo.ShareGroup(sp.Group),
		kgo.FetchMaxWait(kstream.DefaultFetchMaxWait),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fs := cl.PollRecords(ctx, pollRecords)
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fs.Err0(); err != nil {
			return err
		}
		last := false
		fs.EachRecord(func(r *kgo.Record) {
			if last {
				return // the rest are released by Close
			}
			r.Ack(kgo.AckAccept)
			last = t.add(r.Partition, r.Offset, len(r.Value))
		})
		if last {
			return nil
		}
	}
}

func shareKstreamRecords(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	s, err := kstream.NewStream(codec.Bytes(),
		kstream.Brokers(sp.Brokers...),
		kstream.Topics(sp.Topic),
		kstream.ShareGroup(sp.Group),
		kstream.Logger(discardLogger),
	)
	if err != nil {
		return err
	}
	for rec, err := range s.Records(ctx) {
		if err != nil {
			s.Close()
			return err
		}
		if t.add(rec.Partition, rec.Offset, len(rec.Value)) {
			break
		}
	}
	if err := s.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return ctx.Err()
}

func shareKstreamHandle(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	eng, err := kstream.NewEngine(kstream.Brokers(sp.Brokers...), kstream.Logger(discardLogger))
	if err != nil {
		return err
	}
	s, err := kstream.NewStream(codec.Bytes(), kstream.Topics(sp.Topic), kstream.ShareGroup(sp.Group), kstream.Name("bench"))
	if err != nil {
		return err
	}
	s.Handle(func(_ context.Context, rec kstream.Record[[]byte]) error {
		t.add(rec.Partition, rec.Offset, len(rec.Value))
		return nil
	})
	if err := eng.Add(s); err != nil {
		return err
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	var werr error
	select {
	case <-t.done:
	case <-ctx.Done():
		werr = ctx.Err()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := eng.Stop(sctx); err != nil && werr == nil {
		werr = fmt.Errorf("stop: %w", err)
	}
	return werr
}

// checkShare verifies that every record of the topic was consumed, once
// each, in any order: a share group keeps none.
func (t *tally) checkShare(sp spec) error {
	if n := t.total.Load(); n != int64(sp.Records) {
		return fmt.Errorf("consumed %d records, want %d", n, sp.Records)
	}
	for p := range t.parts {
		pt := &t.parts[p]
		var end int64
		if p < len(sp.EndOffsets) {
			end = sp.EndOffsets[p]
		}
		if pt.count != end || pt.next != end {
			return fmt.Errorf("partition %d: %d records up to offset %d; want offsets 0..%d once each", p, pt.count, pt.next, end-1)
		}
	}
	return nil
}

// isConsume reports whether scenario consumes pre-produced records.
func isConsume(scenario string) bool {
	return scenario == scenarioConsume || scenario == scenarioShare || scenario == scenarioShareScale
}

// scenarioShareScale measures what more members than partitions give: one
// partition, a handler that works 1 ms per record, one member against four
// (all in one process, each with a client of its own).
const scenarioShareScale = "share-scale"

const (
	defaultScaleRecords = 2000
	scaleWork           = time.Millisecond
	scaleFetch          = 10 // records a member acquires per fetch
)

var shareScaleConsumers = map[string]consumer{
	"franz-go": {
		name: "franz-go share consumer, 1 member",
		how:  "kgo client with ShareGroup, ShareMaxRecords(10); per record 1 ms of work (sleep), then Record.Ack(AckAccept)",
		run:  func(ctx context.Context, sp spec, m *meter, t *tally) error { return scaleFranz(ctx, sp, m, t) },
	},
	"kstream-share-1": {
		name: "kstream share Handle, 1 member",
		how:  "Engine with one ShareGroup stream, MaxPollRecords(10), Handle sleeping 1 ms per record",
		run:  func(ctx context.Context, sp spec, m *meter, t *tally) error { return scaleKstream(ctx, sp, m, t, 1) },
	},
	"kstream-share-4": {
		name: "kstream share Handle, 4 members",
		how:  "Engine with four ShareGroup streams of one group (a client each), MaxPollRecords(10), Handle sleeping 1 ms per record",
		run:  func(ctx context.Context, sp spec, m *meter, t *tally) error { return scaleKstream(ctx, sp, m, t, 4) },
	},
}

var shareScaleOrder = []string{"franz-go", "kstream-share-1", "kstream-share-4"}

func scaleFranz(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	adm, err := kgo.NewClient(kgo.SeedBrokers(sp.Brokers...))
	if err != nil {
		return err
	}
	err = setEarliest(ctx, adm, sp.Group)
	adm.Close()
	if err != nil {
		return fmt.Errorf("share.auto.offset.reset: %w", err)
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(sp.Brokers...),
		kgo.ConsumeTopics(sp.Topic),
		kgo.ShareGroup(sp.Group),
		kgo.ShareMaxRecords(scaleFetch),
		kgo.FetchMaxWait(kstream.DefaultFetchMaxWait),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fs := cl.PollRecords(ctx, scaleFetch)
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fs.Err0(); err != nil {
			return err
		}
		last := false
		fs.EachRecord(func(r *kgo.Record) {
			if last {
				return
			}
			time.Sleep(scaleWork)
			r.Ack(kgo.AckAccept)
			last = t.add(r.Partition, r.Offset, len(r.Value))
		})
		if last {
			return nil
		}
	}
}

func scaleKstream(ctx context.Context, sp spec, m *meter, t *tally, members int) error {
	m.Start()
	eng, err := kstream.NewEngine(kstream.Brokers(sp.Brokers...), kstream.Logger(discardLogger))
	if err != nil {
		return err
	}
	var mu sync.Mutex // the tally is not safe for concurrent use
	for i := range members {
		s, err := kstream.NewStream(codec.Bytes(), kstream.Topics(sp.Topic), kstream.ShareGroup(sp.Group),
			kstream.Name(fmt.Sprintf("member-%d", i)), kstream.MaxPollRecords(scaleFetch))
		if err != nil {
			return err
		}
		s.Handle(func(_ context.Context, rec kstream.Record[[]byte]) error {
			time.Sleep(scaleWork)
			mu.Lock()
			t.add(rec.Partition, rec.Offset, len(rec.Value))
			mu.Unlock()
			return nil
		})
		if err := eng.Add(s); err != nil {
			return err
		}
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	var werr error
	select {
	case <-t.done:
	case <-ctx.Done():
		werr = ctx.Err()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := eng.Stop(sctx); err != nil && werr == nil {
		werr = fmt.Errorf("stop: %w", err)
	}
	return werr
}
