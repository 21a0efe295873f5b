package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// Consumers without a group: every partition from its start, nothing
// marked or committed. Their ratios are to franz-go-count, the leanest
// franz-go loop without a group, not to the group baseline.

const nogroupBaselineID = "franz-go-count"

func consumeFranzCount(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	cl, err := kgo.NewClient(append(leanFetchOpts(sp),
		kgo.SeedBrokers(sp.Brokers...),
		kgo.ConsumeTopics(sp.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fs := cl.PollRecords(ctx, pollAll)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(topic string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("fetch %s/%d: %w", topic, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			if t.add(r.Partition, r.Offset, len(r.Value)) {
				done = true
			}
		})
		if done {
			return nil
		}
	}
}

func consumeKstreamRecordsNoGroup(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	s, err := kstream.NewStream(codec.Bytes(),
		kstream.Brokers(sp.Brokers...),
		kstream.Topics(sp.Topic),
		kstream.Logger(discardLogger),
		kstream.ClientOptions(kstreamFetchOpts(sp)...),
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

func consumeKstreamHandleNoGroup(ctx context.Context, sp spec, m *meter, t *tally) error {
	m.Start()
	eng, err := kstream.NewEngine(kstream.Brokers(sp.Brokers...), kstream.Logger(discardLogger), kstream.ClientOptions(kstreamFetchOpts(sp)...))
	if err != nil {
		return err
	}
	s, err := kstream.NewStream(codec.Bytes(), kstream.Topics(sp.Topic), kstream.Name("bench"))
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
