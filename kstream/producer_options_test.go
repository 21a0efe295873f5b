package kstream_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
)

// keyOnOtherPartition returns a key that the partitioner sends to a
// partition other than avoid, found by sending with it.
func keyOnOtherPartition(t *testing.T, e *env, eng *kstream.Engine, avoid int32) []byte {
	t.Helper()
	for i := range 64 {
		key := []byte{'k', byte(i)}
		md, err := eng.Send(e.ctx, e.topic, []byte("probe"), kstream.WithKey(key))
		if err != nil {
			t.Fatal(err)
		}
		if md.Partition != avoid {
			return key
		}
	}
	t.Fatalf("no key of 64 avoids partition %d", avoid)
	return nil
}

// ToPartition holds whatever options come after it, and options apply in
// order: the last WithKey and WithTimestamp win, headers accumulate. With
// SendOption a function of the record, an option after ToPartition could
// replace the record's context and so undo it.
func TestSendOptionsApplyInOrder(t *testing.T) {
	e := newEnv(t, 3, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	key := keyOnOtherPartition(t, e, eng, 2)
	ts1, ts2 := time.UnixMilli(1700000000001), time.UnixMilli(1700000000002)
	check := func(name string, md kstream.RecordMetadata) {
		t.Helper()
		if md.Partition != 2 || !md.Timestamp.Equal(ts2) {
			t.Fatalf("%s: sent to %d at %v, want partition 2 at %v", name, md.Partition, md.Timestamp, ts2)
		}
		r := readBack(t, e, e.topic, md.Partition, md.Offset)
		if string(r.Key) != string(key) || !r.Timestamp.Equal(ts2) || len(r.Headers) != 2 ||
			r.Headers[0].Key != "a" || r.Headers[1].Key != "b" {
			t.Fatalf("%s: read back key %q, timestamp %v, headers %v", name, r.Key, r.Timestamp, r.Headers)
		}
	}
	opts := []kstream.SendOption{
		kstream.WithKey([]byte("replaced")), kstream.WithTimestamp(ts1), kstream.WithHeader("a", nil),
		kstream.ToPartition(2), kstream.SendOption{}, // the zero SendOption sets nothing
		kstream.WithKey(key), kstream.WithHeader("b", []byte("2")), kstream.WithTimestamp(ts2),
	}
	md, err := eng.Send(e.ctx, e.topic, []byte("send"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	check("Send", md)
	done, ch := doneOnce(t)
	eng.SendAsync(e.ctx, e.topic, []byte("async"), done, opts...)
	o := waitOutcome(t, ch, 10*time.Second, "SendAsync")
	if o.err != nil {
		t.Fatal(o.err)
	}
	check("SendAsync", o.md)
}

// A Message's Partition sends it there, overriding its key; a nil one
// leaves it to the partitioner; its Timestamp, when set, is the record's.
func TestSendBatchMessagePartitionAndTimestamp(t *testing.T) {
	e := newEnv(t, 3, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	key := keyOnOtherPartition(t, e, eng, 0)
	keyed, err := eng.Send(e.ctx, e.topic, []byte("probe"), kstream.WithKey(key))
	if err != nil {
		t.Fatal(err)
	}
	ts := time.UnixMilli(1700000000123)
	before := time.Now().Add(-time.Second)
	for name, send := range map[string]func([]kstream.Message[string]) ([]kstream.RecordMetadata, error){
		"Engine.SendBatch": func(msgs []kstream.Message[string]) ([]kstream.RecordMetadata, error) {
			raw := make([]kstream.Message[[]byte], len(msgs))
			for i, m := range msgs {
				raw[i] = kstream.Message[[]byte]{Key: m.Key, Value: []byte(m.Value), Partition: m.Partition, Timestamp: m.Timestamp}
			}
			return eng.SendBatch(e.ctx, e.topic, raw...)
		},
		"Producer.SendBatch": func(msgs []kstream.Message[string]) ([]kstream.RecordMetadata, error) {
			return kstream.NewProducer(eng, e.topic, codec.String()).SendBatch(e.ctx, msgs...)
		},
		// codec.Bytes: the messages are sent as they are, not encoded
		// one by one.
		"Producer[[]byte].SendBatch": func(msgs []kstream.Message[string]) ([]kstream.RecordMetadata, error) {
			raw := make([]kstream.Message[[]byte], len(msgs))
			for i, m := range msgs {
				raw[i] = kstream.Message[[]byte]{Key: m.Key, Value: []byte(m.Value), Partition: m.Partition, Timestamp: m.Timestamp}
			}
			return kstream.NewProducer(eng, e.topic, codec.Bytes()).SendBatch(e.ctx, raw...)
		},
	} {
		mds, err := send([]kstream.Message[string]{
			{Key: key, Value: "to 0", Partition: new(int32(0)), Timestamp: ts},
			{Key: key, Value: "by key"},
			{Value: "to 2", Partition: new(int32(2))},
		})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(mds) != 3 || mds[0].Partition != 0 || mds[1].Partition != keyed.Partition || mds[2].Partition != 2 {
			t.Fatalf("%s: sent to %+v, want partitions 0, %d, 2", name, mds, keyed.Partition)
		}
		for i, want := range []string{"to 0", "by key", "to 2"} {
			r := readBack(t, e, e.topic, mds[i].Partition, mds[i].Offset)
			if string(r.Value) != want {
				t.Errorf("%s: record %d read back as %q, want %q", name, i, r.Value, want)
			}
			if i == 0 && !r.Timestamp.Equal(ts) {
				t.Errorf("%s: record 0 has timestamp %v, want %v", name, r.Timestamp, ts)
			}
			if i > 0 && r.Timestamp.Before(before) {
				t.Errorf("%s: record %d without a Timestamp has %v, want the time of sending", name, i, r.Timestamp)
			}
		}
	}
}

// A producer without an engine, a topic or an encoder fails every send
// with an error wrapping ErrInvalidOption that names what is missing; it
// panicked on first use.
func TestProducerWithoutEngineTopicOrEncoder(t *testing.T) {
	e := newEnv(t, 1, 0)
	eng := e.engine()
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	var zero kstream.Producer[string]
	for _, tc := range []struct {
		name string
		p    *kstream.Producer[string]
		want []string
	}{
		{"nothing", kstream.NewProducer[string](nil, "", nil), []string{"engine", "topic", "encoder"}},
		{"no engine", kstream.NewProducer(nil, e.topic, codec.String()), []string{"engine"}},
		{"no topic", kstream.NewProducer(eng, "", codec.String()), []string{"topic"}},
		{"no encoder", kstream.NewProducer[string](eng, e.topic, nil), []string{"encoder"}},
		{"zero Producer", &zero, []string{"engine", "topic", "encoder"}},
		{"nil Producer", nil, []string{"nil"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, kstream.ErrInvalidOption) {
					t.Fatalf("%s = %v, want ErrInvalidOption", what, err)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s = %q, which does not name the %s", what, err, w)
					}
				}
			}
			_, err := tc.p.Send(e.ctx, nil, "x")
			check("Send", err)
			_, err = tc.p.SendBatch(e.ctx, kstream.Message[string]{Value: "x"})
			check("SendBatch", err)
			done, ch := doneOnce(t)
			tc.p.SendAsync(e.ctx, nil, "x", done)
			select {
			case o := <-ch:
				check("SendAsync's done", o.err)
			default:
				t.Fatal("SendAsync did not call done before it returned")
			}
			tc.p.SendAsync(e.ctx, nil, "x", nil) // logs; must not panic
		})
	}
	// The engine was not used, and still works.
	if _, err := kstream.NewProducer(eng, e.topic, codec.String()).Send(context.Background(), nil, "ok"); err != nil {
		t.Fatal(err)
	}
}

// wrapContextHook replaces every record's Context before it is
// partitioned, as kotel's tracing hook does.
type wrapContextHook struct{}

type wrappedCtxKey struct{}

func (wrapContextHook) OnProduceRecordBuffered(r *kgo.Record) {
	r.Context = context.WithValue(r.Context, wrappedCtxKey{}, true)
}

// ToPartition holds when a hook of the producer replaces the records'
// contexts before they are partitioned: the partitioner then looks through
// the context for ToPartition's mark. Without the hook it looks at the
// context alone (TestSendOptionsApplyInOrder).
func TestToPartitionWithAHookThatWrapsTheContext(t *testing.T) {
	e := newEnv(t, 3, 0)
	eng := e.engine(kstream.ClientOptions(kgo.WithHooks(wrapContextHook{})))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	key := keyOnOtherPartition(t, e, eng, 2)
	for i := range 3 {
		md, err := eng.Send(e.ctx, e.topic, []byte("send"), kstream.WithKey(key), kstream.ToPartition(2))
		if err != nil {
			t.Fatal(err)
		}
		if md.Partition != 2 {
			t.Fatalf("Send %d: sent to %d, want partition 2", i, md.Partition)
		}
		done, ch := doneOnce(t)
		eng.SendAsync(e.ctx, e.topic, []byte("async"), done, kstream.WithKey(key), kstream.ToPartition(2))
		if o := waitOutcome(t, ch, 10*time.Second, "SendAsync"); o.err != nil || o.md.Partition != 2 {
			t.Fatalf("SendAsync %d: %+v, want partition 2", i, o)
		}
	}
}
