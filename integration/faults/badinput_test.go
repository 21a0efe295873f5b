package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// order is the value type of the bad-input topic.
type order struct {
	ID   int    `json:"id"`
	Note string `json:"note"`
}

// outcome is what a bad-input record must come out as.
type outcome int

const (
	decoded   outcome = iota // a Record with the decoded value
	tombstone                // a Record with the zero value and Tombstone()
	decodeErr                // a *DecodeError (errAs says which cause)
)

// badCase is one record of the bad-input topic and what the stream must
// make of it.
type badCase struct {
	name    string
	key     []byte
	value   []byte // nil: a tombstone
	headers []kgo.RecordHeader
	want    outcome
	order   order                 // for decoded
	cause   func(err error) error // for decodeErr: nil if the cause is right
}

// hugeNote is the note of the huge record: 900 KiB, under franz-go's
// default ProducerBatchMaxBytes (1,000,012) and kfake's message.max.bytes
// (1,048,588).
var hugeNote = strings.Repeat("0123456789abcdef", 900*1024/16)

func causeAs[E error](err error) error {
	var e E
	if !errors.As(err, &e) {
		return fmt.Errorf("cause %v (%T) is not a %T", err, err, e)
	}
	return nil
}

func causeContains(s string) func(error) error {
	return func(err error) error {
		if !strings.Contains(err.Error(), s) {
			return fmt.Errorf("cause %q does not say %q", err, s)
		}
		return nil
	}
}

// badCases are the records of the bad-input topic, in offset order on its
// single partition.
func badCases() []badCase {
	mustJSON := func(o order) []byte {
		b, err := json.Marshal(o)
		if err != nil {
			panic(err)
		}
		return b
	}
	return []badCase{
		{name: "valid", key: []byte("k0"), value: []byte(`{"id":0,"note":"ok"}`), order: order{ID: 0, Note: "ok"}},
		{name: "truncated JSON", key: []byte("k1"), value: []byte(`{"id":`), want: decodeErr, cause: causeAs[*json.SyntaxError]},
		{name: "wrong type", key: []byte("k2"), value: []byte(`{"id":"two"}`), want: decodeErr, cause: causeAs[*json.UnmarshalTypeError]},
		{name: "tombstone", key: []byte("k3"), value: nil, want: tombstone},
		{name: "huge 900 KiB", key: []byte("k4"), value: mustJSON(order{ID: 4, Note: hugeNote}), order: order{ID: 4, Note: hugeNote}},
		{name: "invalid UTF-8 key", key: []byte{0xff, 0xfe, 0x00, 'k', 0xc3}, value: []byte(`{"id":5}`), order: order{ID: 5}},
		{
			name: "headers with empty keys", key: []byte("k6"), value: []byte(`{"id":6}`), order: order{ID: 6},
			headers: []kgo.RecordHeader{{Key: "", Value: []byte("empty key")}, {Key: "", Value: nil}, {Key: "h", Value: []byte{}}, {Key: "\xff", Value: []byte{0}}},
		},
		{name: "empty value (not null)", key: []byte("k7"), value: []byte{}, want: decodeErr, cause: causeAs[*json.SyntaxError]},
		{name: "JSON null", key: []byte("k8"), value: []byte(`null`), order: order{}},
		{name: "invalid UTF-8 in a JSON string", key: []byte("k9"), value: []byte("{\"id\":9,\"note\":\"\xff\"}"), order: order{ID: 9, Note: "\ufffd"}},
		{name: "number out of range", key: []byte("k10"), value: []byte(`{"id":1e400}`), want: decodeErr, cause: causeAs[*json.UnmarshalTypeError]},
		{name: "decoder panics", key: []byte("k11"), value: []byte("PANIC please"), want: decodeErr, cause: causeContains("decoder panicked")},
		{name: "nil key, valid", key: nil, value: []byte(`{"id":12}`), order: order{ID: 12}},
		{name: "trailing garbage", key: []byte("k13"), value: []byte(`{"id":13}xyz`), want: decodeErr, cause: causeAs[*json.SyntaxError]},
		{name: "valid last", key: []byte("k14"), value: []byte(`{"id":14,"note":"end"}`), order: order{ID: 14, Note: "end"}},
	}
}

// panickyJSON is codec.JSON[order] except that it panics on values that
// start with "PANIC", as a buggy decoder would.
func panickyJSON() codec.Decoder[order] {
	j := codec.JSON[order]()
	return codec.DecoderFunc[order](func(b []byte) (order, error) {
		if bytes.HasPrefix(b, []byte("PANIC")) {
			var m map[string]int
			m["boom"]++ // assignment to entry in nil map
		}
		return j.Decode(b)
	})
}

// newBadScenario starts a scenario whose single-partition topic holds the
// bad cases.
func newBadScenario(t *testing.T, name string) (*scenario, []badCase) {
	t.Helper()
	sc := newScenario(t, name, 1)
	cases := badCases()
	recs := make([]*kgo.Record, len(cases))
	for i, bc := range cases {
		recs[i] = &kgo.Record{Topic: sc.topic, Partition: 0, Key: bc.key, Value: bc.value, Headers: bc.headers}
	}
	for _, r := range recs { // one at a time: the huge record fills a batch of its own
		if err := sc.c.Produce(sc.ctx, r); err != nil {
			t.Fatalf("producing the bad-input records: %v", err)
		}
	}
	return sc, cases
}

// checkRecord checks what the stream made of the record at offset, against
// its case: key, headers and raw value byte-exact, the value or the error.
func checkRecord(t *testing.T, sc *scenario, bc badCase, rec kstream.Record[order], err error) {
	t.Helper()
	off := rec.Offset
	if rec.Topic != sc.topic || rec.Partition != 0 {
		t.Errorf("offset %d (%s): record names %s/%d", off, bc.name, rec.Topic, rec.Partition)
	}
	if !bytes.Equal(rec.Key, bc.key) || (rec.Key == nil) != (bc.key == nil) {
		t.Errorf("offset %d (%s): key %q, want %q byte-exact", off, bc.name, rec.Key, bc.key)
	}
	if !sameHeaders(rec.Headers, bc.headers) {
		t.Errorf("offset %d (%s): headers %q, want %q", off, bc.name, rec.Headers, bc.headers)
	}
	if rec.Raw == nil || !bytes.Equal(rec.Raw.Value, bc.value) || (rec.Raw.Value == nil) != (bc.value == nil) {
		t.Errorf("offset %d (%s): raw value differs from what was produced (nil: %v, want nil: %v)", off, bc.name, rec.Raw == nil || rec.Raw.Value == nil, bc.value == nil)
	}
	if got, want := rec.Tombstone(), bc.want == tombstone; got != want {
		t.Errorf("offset %d (%s): Tombstone() = %v, want %v", off, bc.name, got, want)
	}
	switch bc.want {
	case decoded, tombstone:
		if err != nil {
			t.Errorf("offset %d (%s): yielded %v, want a record", off, bc.name, err)
			return
		}
		if rec.Value != bc.order {
			t.Errorf("offset %d (%s): value %.60v, want %.60v", off, bc.name, rec.Value, bc.order)
		}
	case decodeErr:
		var de *kstream.DecodeError
		if !errors.As(err, &de) {
			t.Errorf("offset %d (%s): yielded %v, want a *kstream.DecodeError", off, bc.name, err)
			return
		}
		if de.Topic != sc.topic || de.Partition != 0 || de.Offset != off || de.Record != rec.Raw {
			t.Errorf("offset %d (%s): DecodeError names %s/%d@%d, want %s/0@%d with the raw record", off, bc.name, de.Topic, de.Partition, de.Offset, sc.topic, off)
		}
		if !strings.Contains(de.Error(), fmt.Sprintf("offset %d", off)) {
			t.Errorf("offset %d (%s): DecodeError %q does not say the offset", off, bc.name, de)
		}
		if cerr := bc.cause(de.Err); cerr != nil {
			t.Errorf("offset %d (%s): %v", off, bc.name, cerr)
		}
		if rec.Value != (order{}) {
			t.Errorf("offset %d (%s): a record that failed to decode has value %v, want the zero value", off, bc.name, rec.Value)
		}
	}
}

func sameHeaders(got, want []kgo.RecordHeader) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].Key != want[i].Key || !bytes.Equal(got[i].Value, want[i].Value) {
			return false
		}
	}
	return true
}

// A Records loop that goes on after each *DecodeError: every record comes
// out in order, good ones decoded, bad ones as a DecodeError naming their
// position and cause (a panicking decoder included), tombstones as zero
// values; keys, headers and raw values byte-exact, huge ones intact. Every
// offset counts as handled, so the commit reaches the end.
func TestBadInputRecordsContinue(t *testing.T) {
	t.Parallel()
	sc, cases := newBadScenario(t, "bad input: Records loop continues past DecodeErrors")
	sc.monitor()
	s := kstreamtest.NewStream(t, sc.c, panickyJSON(), kstream.Topics(sc.topic), kstream.Group(sc.group), kstream.Logger(sc.log))
	done := make(chan struct{})
	var mu sync.Mutex
	decodeErrs := 0
	go func() {
		defer close(done)
		next := int64(0)
		for rec, err := range s.Records(sc.ctx) {
			var fe *kstream.FetchError
			if errors.As(err, &fe) {
				t.Errorf("fetch error: %v", err)
				continue
			}
			if rec.Offset != next {
				t.Errorf("yielded offset %d, want %d", rec.Offset, next)
			}
			next = rec.Offset + 1
			if int(rec.Offset) < len(cases) {
				checkRecord(t, sc, cases[rec.Offset], rec, err)
			}
			if err != nil {
				mu.Lock()
				decodeErrs++
				mu.Unlock()
			}
			sc.led().Add(rec.Topic, rec.Partition, rec.Offset) // continuing: handled
		}
	}()
	sc.waitHandled(len(cases), 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	if err := sc.close(s); err != nil {
		t.Errorf("Close: %v", err)
	}
	<-done
	want := 0
	for _, bc := range cases {
		if bc.want == decodeErr {
			want++
		}
	}
	if decodeErrs != want {
		t.Errorf("%d DecodeErrors, want %d", decodeErrs, want)
	}
	sc.setOutcome("%d records, %d DecodeErrors (a panic among them), 1 tombstone, 900 KiB value intact; committed to the end", len(cases), decodeErrs)
	sc.finish(true)
}

// A Records loop that returns at the first *DecodeError: the commit stops
// exactly at the bad record, and the next member gets it again first.
func TestBadInputRecordsReturn(t *testing.T) {
	t.Parallel()
	sc, cases := newBadScenario(t, "bad input: Records loop returns at the first DecodeError, next member resumes there")
	sc.monitor()
	firstBad := int64(-1)
	for i, bc := range cases {
		if bc.want == decodeErr {
			firstBad = int64(i)
			break
		}
	}
	s := kstreamtest.NewStream(t, sc.c, panickyJSON(), kstream.Topics(sc.topic), kstream.Group(sc.group), kstream.Logger(sc.log))
	var stoppedAt int64 = -1
	err := s.Use(sc.ctx, func(records iter.Seq2[kstream.Record[order], error]) error {
		for rec, err := range records {
			if err != nil {
				stoppedAt = rec.Offset
				return err
			}
			sc.led().Add(rec.Topic, rec.Partition, rec.Offset)
		}
		return nil
	})
	var de *kstream.DecodeError
	if !errors.As(err, &de) || stoppedAt != firstBad {
		t.Fatalf("Use returned %v at offset %d, want the DecodeError of offset %d", err, stoppedAt, firstBad)
	}
	committed := sc.c.WaitCommitted(t, sc.group, kstreamtest.Offsets{sc.topic: {0: firstBad}}, 10*time.Second)
	if got := committed[sc.topic][0]; got != firstBad {
		t.Errorf("committed %d after returning at the bad record %d, want exactly %d", got, firstBad, firstBad)
	}

	// The next member starts at the bad record and, going on past errors,
	// finishes the partition.
	s2 := kstreamtest.NewStream(t, sc.c, panickyJSON(), kstream.Topics(sc.topic), kstream.Group(sc.group), kstream.Logger(sc.log))
	done := make(chan struct{})
	first := int64(-1)
	go func() {
		defer close(done)
		for rec, err := range s2.Records(sc.ctx) {
			if first < 0 {
				first = rec.Offset
			}
			if int(rec.Offset) < len(cases) {
				checkRecord(t, sc, cases[rec.Offset], rec, err)
			}
			sc.led().Add(rec.Topic, rec.Partition, rec.Offset)
		}
	}()
	sc.waitHandled(len(cases), 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	if err := sc.close(s2); err != nil {
		t.Errorf("Close: %v", err)
	}
	<-done
	if first != firstBad {
		t.Errorf("the next member started at offset %d, want the bad record %d", first, firstBad)
	}
	sc.setOutcome("commit stopped at the bad record (offset %d); the next member started there", firstBad)
	sc.finish(true)
}

// An engine Handle stream without a dead-letter middleware: the first
// record that does not decode is a crash (ErrorPolicyStop), reported in
// Health with the *DecodeError, and the commit stops right before it.
func TestBadInputHandleCrash(t *testing.T) {
	t.Parallel()
	sc, cases := newBadScenario(t, "bad input: engine Handle, no dead letter: crash at the first DecodeError")
	sc.monitor()
	firstBad := int64(-1)
	for i, bc := range cases {
		if bc.want == decodeErr {
			firstBad = int64(i)
			break
		}
	}
	eng := kstreamtest.NewEngine(t, sc.c, kstream.Logger(sc.log))
	s := kstreamtest.NewStream(t, sc.c, panickyJSON(), kstream.Topics(sc.topic), kstream.Group(sc.group), kstream.Name("orders"))
	s.Handle(func(ctx context.Context, rec kstream.Record[order]) error {
		checkRecord(t, sc, cases[rec.Offset], rec, nil)
		return nil
	}, kstreamtest.Track[order](sc.led()))
	if err := eng.Add(s); err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(sc.ctx); err != nil {
		t.Fatal(err)
	}
	var h kstream.StreamHealth
	kstreamtest.WaitFor(t, 20*time.Second, "the stream to crash", func() bool {
		h, _ = eng.StreamHealth("orders")
		return h.State == kstream.StreamCrashed
	})
	var de *kstream.DecodeError
	if !errors.As(h.LastErr, &de) || de.Offset != firstBad {
		t.Errorf("crash error %v, want the *DecodeError of offset %d", h.LastErr, firstBad)
	}
	committed := sc.c.WaitCommitted(t, sc.group, kstreamtest.Offsets{sc.topic: {0: firstBad}}, 10*time.Second)
	if got := committed[sc.topic][0]; got != firstBad {
		t.Errorf("committed %d after the crash at offset %d, want exactly %d", got, firstBad, firstBad)
	}
	if err := sc.stop(eng, 10*time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
	sc.setOutcome("crashed on %q; health shows it; commit stopped at offset %d; the rest waits (by design)", shorten(h.LastErr), firstBad)

	// The records after the crash were not handled, by design: count them
	// as what the crash policy left for the next deployment, not as lost.
	produced := sc.c.Produced(t, sc.topic)
	sc.stopGuard()
	if got := sc.led().Count(); int64(got) != firstBad {
		t.Errorf("handled %d records before the crash, want %d", got, firstBad)
	}
	sc.mu.Lock()
	r := row{scenario: sc.name, duration: time.Since(sc.began), produced: produced.Total(), maxShutdown: sc.maxShutdown,
		lost: 0, duplicated: 0, outcome: sc.outcome + fmt.Sprintf(" (%d records left unhandled, uncommitted)", produced.Total()-firstBad)}
	violations, mon := sc.violations, sc.mon
	sc.mu.Unlock()
	for _, v := range violations {
		t.Errorf("commit ran ahead of the ledger: %s", v)
	}
	mon.AssertMonotonic(t)
	if t.Failed() {
		r.outcome = "FAILED: " + r.outcome
	}
	addRow(r)
}

// An engine Handle stream with DeadLetter (and Recover) first in the chain:
// every record that does not decode, the panicking one included, goes to
// the dead-letter topic with its key, headers and raw value and the
// Connect-style headers naming where it came from; the stream goes on and
// commits to the end.
func TestBadInputHandleDeadLetter(t *testing.T) {
	t.Parallel()
	sc, cases := newBadScenario(t, "bad input: engine Handle with DeadLetter")
	dlq := sc.topic + "-dlq"
	if err := sc.c.CreateTopic(sc.ctx, dlq, 1); err != nil {
		t.Fatal(err)
	}
	sc.monitor()
	eng := kstreamtest.NewEngine(t, sc.c, kstream.Logger(sc.log))
	s := kstreamtest.NewStream(t, sc.c, panickyJSON(), kstream.Topics(sc.topic), kstream.Group(sc.group), kstream.Name("orders"))
	var handled sync.Map
	s.Handle(func(ctx context.Context, rec kstream.Record[order]) error {
		checkRecord(t, sc, cases[rec.Offset], rec, nil)
		handled.Store(rec.Offset, true)
		return nil
	}, kstreamtest.Track[order](sc.led()), kstream.DeadLetter[order](eng, dlq), kstream.Recover)
	if err := eng.Add(s); err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(sc.ctx); err != nil {
		t.Fatal(err)
	}
	sc.waitHandled(len(cases), 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	if err := sc.stop(eng, 10*time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}

	var bad []int
	for i, bc := range cases {
		if bc.want == decodeErr {
			bad = append(bad, i)
			if _, ok := handled.Load(int64(i)); ok {
				t.Errorf("offset %d (%s) reached the handler", i, bc.name)
			}
		}
	}
	dead := kstreamtest.ReadRecords(t, sc.c, dlq, codec.Bytes(), len(bad), 20*time.Second)
	if len(dead) != len(bad) {
		t.Fatalf("the dead-letter topic holds %d records, want %d", len(dead), len(bad))
	}
	for i, d := range dead {
		bc := cases[bad[i]]
		hdr := map[string]string{}
		var orig []kgo.RecordHeader
		for _, h := range d.Headers {
			if strings.HasPrefix(h.Key, "__connect.errors.") {
				hdr[h.Key] = string(h.Value)
			} else {
				orig = append(orig, h)
			}
		}
		if !bytes.Equal(d.Key, bc.key) || !bytes.Equal(d.Value, bc.value) || !sameHeaders(orig, bc.headers) {
			t.Errorf("dead letter %d (%s): key %q value %.40q headers %q, want the original's", i, bc.name, d.Key, d.Value, orig)
		}
		if hdr[kstream.HeaderDLQTopic] != sc.topic || hdr[kstream.HeaderDLQPartition] != "0" || hdr[kstream.HeaderDLQOffset] != strconv.Itoa(bad[i]) {
			t.Errorf("dead letter %d (%s): source headers %v, want %s/0@%d", i, bc.name, hdr, sc.topic, bad[i])
		}
		if msg := hdr[kstream.HeaderDLQErrorMessage]; !strings.Contains(msg, "decode record") || !strings.Contains(msg, "offset "+strconv.Itoa(bad[i])) {
			t.Errorf("dead letter %d (%s): error message %q does not name the decode error and offset", i, bc.name, msg)
		}
		if bc.name == "decoder panics" && !strings.Contains(hdr[kstream.HeaderDLQErrorMessage], "decoder panicked") {
			t.Errorf("dead letter of the panicking decoder says %q", hdr[kstream.HeaderDLQErrorMessage])
		}
	}
	sc.setOutcome("%d undecodable records dead-lettered with key, headers, raw value and source headers; %d handled; committed to the end", len(bad), len(cases)-len(bad))
	sc.finish(true)
}

// The dead-letter topic refuses writes for a while (produce fails with a
// non-retriable error): DeadLetter returns both errors, the stream crashes
// without committing the bad record, ErrorPolicyRestart brings it back from
// the last commit, and once the dead-letter topic accepts writes again the
// bad record goes there. Nothing is skipped silently.
func TestBadInputDeadLetterFails(t *testing.T) {
	t.Parallel()
	sc, cases := newBadScenario(t, "bad input: dead-letter produce fails, ErrorPolicyRestart, then heals")
	dlq := sc.topic + "-dlq"
	if err := sc.c.CreateTopic(sc.ctx, dlq, 1); err != nil {
		t.Fatal(err)
	}
	sc.monitor()
	f := sc.c.FailProduce(t, dlq, kerr.TopicAuthorizationFailed, kstreamtest.UntilHealed)
	eng := kstreamtest.NewEngine(t, sc.c, kstream.Logger(sc.log), kstream.OnError(kstream.ErrorPolicyRestart))
	s := kstreamtest.NewStream(t, sc.c, panickyJSON(), kstream.Topics(sc.topic), kstream.Group(sc.group), kstream.Name("orders"))
	s.Handle(func(ctx context.Context, rec kstream.Record[order]) error { return nil },
		kstreamtest.Track[order](sc.led()), kstream.DeadLetter[order](eng, dlq), kstream.Recover)
	if err := eng.Add(s); err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(sc.ctx); err != nil {
		t.Fatal(err)
	}
	var h kstream.StreamHealth
	kstreamtest.WaitFor(t, 20*time.Second, "a restart after the dead letter failed", func() bool {
		h, _ = eng.StreamHealth("orders")
		return h.Restarts >= 1
	})
	firstBad := int64(-1)
	for i, bc := range cases {
		if bc.want == decodeErr {
			firstBad = int64(i)
			break
		}
	}
	// DeadLetter writes with Emit, pipelined: records after the bad one
	// may be handled meanwhile, but the commit never passes the bad
	// record whose dead letter was not acknowledged.
	committed, err := sc.c.Committed(sc.ctx, sc.group)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := committed[sc.topic][0]; ok && got > firstBad {
		t.Errorf("while the dead-letter topic refused writes, the commit reached %d, past the first bad record %d", got, firstBad)
	}
	f.Heal()
	sc.waitHandled(len(cases), 30*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	h, _ = eng.StreamHealth("orders")
	if err := sc.stop(eng, 10*time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
	dead := kstreamtest.ReadRecords(t, sc.c, dlq, codec.Bytes(), 1, 10*time.Second)
	if off := dead[0].Headers; len(off) == 0 {
		t.Errorf("dead letter without headers")
	}
	sc.setOutcome("crashed %d time(s) while the DLQ refused writes (never past offset %d); after heal every bad record was dead-lettered", h.Restarts, firstBad)
	sc.finish(false)
}

// A record larger than the producer's batch limit is refused by the client
// with MESSAGE_TOO_LARGE before anything is sent; the topic is unchanged.
func TestBadInputTooLargeToSend(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "bad input: 2 MiB value refused at Send", 1)
	eng := kstreamtest.NewEngine(t, sc.c, kstream.Logger(sc.log))
	if err := eng.Start(sc.ctx); err != nil {
		t.Fatal(err)
	}
	_, err := eng.Send(sc.ctx, sc.topic, bytes.Repeat([]byte("x"), 2<<20))
	if !errors.Is(err, kerr.MessageTooLarge) {
		t.Errorf("Send of a 2 MiB value returned %v, want MESSAGE_TOO_LARGE", err)
	}
	if _, err := eng.Send(sc.ctx, sc.topic, []byte("small")); err != nil {
		t.Errorf("Send after the refused one: %v", err)
	}
	if err := sc.stop(eng, 10*time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if end := sc.c.Produced(t, sc.topic)[sc.topic][0]; end != 1 {
		t.Errorf("the topic holds %d records, want only the small one", end)
	}
	sc.led().Add(sc.topic, 0, 0)
	sc.setOutcome("Send returned %q; the next Send worked", shorten(err))
	sc.finish(true)
}

// Tombstones with a decoder that implements codec.NilDecoder: DecodeNil
// decides the value, and a DecodeNil that panics is a DecodeError too.
func TestBadInputNilDecoder(t *testing.T) {
	t.Parallel()
	sc := newScenario(t, "bad input: tombstones through a NilDecoder (one panics)", 1)
	for i, v := range [][]byte{[]byte("a"), nil, []byte("b"), nil} {
		if err := sc.c.Produce(sc.ctx, &kgo.Record{Topic: sc.topic, Key: []byte{byte(i)}, Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	sc.monitor()
	dec := &nilDecoder{}
	s := kstreamtest.NewStream(t, sc.c, codec.Decoder[string](dec), kstream.Topics(sc.topic), kstream.Group(sc.group), kstream.Logger(sc.log))
	var got []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for rec, err := range s.Records(sc.ctx) {
			switch {
			case err != nil:
				got = append(got, "error: "+err.Error())
			case rec.Tombstone():
				got = append(got, "tombstone: "+rec.Value)
			default:
				got = append(got, rec.Value)
			}
			sc.led().Add(rec.Topic, rec.Partition, rec.Offset)
		}
	}()
	sc.waitHandled(4, 20*time.Second)
	sc.waitCaughtUp(20 * time.Second)
	if err := sc.close(s); err != nil {
		t.Errorf("Close: %v", err)
	}
	<-done
	if len(got) != 4 || got[0] != "a" || got[1] != "tombstone: <deleted>" || got[2] != "b" ||
		!strings.Contains(got[3], "decoder panicked on a tombstone") || !strings.Contains(got[3], "offset 3") {
		t.Errorf("got %q, want a, a tombstone decoded by DecodeNil, b, and a DecodeError for the panicking DecodeNil", got)
	}
	sc.setOutcome("DecodeNil decided the tombstone's value; its panic became %q", strings.TrimPrefix(got[len(got)-1], "error: "))
	sc.finish(true)
}

// nilDecoder decodes strings and tombstones; its second tombstone panics.
type nilDecoder struct {
	mu   sync.Mutex
	nils int
}

func (d *nilDecoder) Decode(b []byte) (string, error) { return string(b), nil }

func (d *nilDecoder) DecodeNil() (string, error) {
	d.mu.Lock()
	d.nils++
	n := d.nils
	d.mu.Unlock()
	if n == 2 {
		panic("no tombstones today")
	}
	return "<deleted>", nil
}
