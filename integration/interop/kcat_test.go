//go:build interop

package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// kcat returns the path of the kcat binary, failing the test (never
// skipping it) when it is not installed.
func kcat(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat not found: apt-get install kcat (%v)", err)
	}
	return p
}

// runKcat runs kcat with args and stdin and returns its standard output. It
// fails the test if kcat fails or takes longer than 30s.
func runKcat(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat(t), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// broker returns the in-process cluster's address, for kcat's -b.
func broker(c *kstreamtest.Cluster) string { return c.Brokers()[0] }

// kcatMessage is one message as kcat -J prints it.
type kcatMessage struct {
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Timestamp int64     `json:"ts"`
	Headers   []*string `json:"headers"` // name, value, name, value...; a nil value is null
	Key       *string   `json:"key"`
	Payload   *string   `json:"payload"`
}

// consumeJSON reads the whole topic with kcat -C -J (from the beginning, until
// the end of every partition) and returns the messages by partition and
// offset.
func consumeJSON(t *testing.T, c *kstreamtest.Cluster, topic string) []kcatMessage {
	t.Helper()
	out := runKcat(t, nil, "-b", broker(c), "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-J")
	var msgs []kcatMessage
	for line := range bytes.Lines(out) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m kcatMessage
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("kcat -J printed %q: %v", line, err)
		}
		msgs = append(msgs, m)
	}
	slices.SortFunc(msgs, func(a, b kcatMessage) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	return msgs
}

func ptr(s string) *string { return &s }

func show(s *string) string {
	if s == nil {
		return "NULL"
	}
	return strconv.Quote(*s)
}

// kcat produces records with keys, headers, NULL values, fixed partitions,
// non-UTF-8 bytes and a 600 KiB value; a stream reads every one of them
// exactly: key, value, headers (names, values, NULL values, order),
// partition, and a timestamp from the time of producing.
func TestKcatProducesStreamReads(t *testing.T) {
	kcat(t)
	const topic = "from-kcat"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 3))
	big := strings.Repeat("0123456789", 60*1024) // 600 KiB

	type want struct {
		partition int32
		key       []byte // nil: no key
		value     []byte // nil: NULL value (tombstone)
		headers   []kgo.RecordHeader
	}
	var wants []want
	started := time.Now().Add(-time.Second)

	// Partition 0: keys and values with a key delimiter, two headers, one
	// of them without a value, and -Z: an empty value is sent as NULL.
	runKcat(t, []byte("k1|v1\nk2|hello world\nk3|\n|no key here\nk5|caf\xc3\xa9 \xff\xfe not utf-8\n"),
		"-b", broker(c), "-P", "-t", topic, "-p", "0", "-K", "|", "-Z", "-H", "trace=abc-123", "-H", "flag")
	h0 := []kgo.RecordHeader{{Key: "trace", Value: []byte("abc-123")}, {Key: "flag", Value: nil}}
	wants = append(wants,
		want{0, []byte("k1"), []byte("v1"), h0},
		want{0, []byte("k2"), []byte("hello world"), h0},
		want{0, []byte("k3"), nil, h0},
		want{0, nil, []byte("no key here"), h0}, // -Z: the empty key is NULL too
		want{0, []byte("k5"), []byte("caf\xc3\xa9 \xff\xfe not utf-8"), h0},
	)
	// Partition 1: a fixed key for every message, a repeated header name
	// and an empty header value.
	runKcat(t, []byte("a\nb\n"), "-b", broker(c), "-P", "-t", topic, "-p", "1", "-k", "fixed", "-H", "dup=1", "-H", "dup=2", "-H", "empty=")
	h1 := []kgo.RecordHeader{{Key: "dup", Value: []byte("1")}, {Key: "dup", Value: []byte("2")}, {Key: "empty", Value: []byte{}}}
	wants = append(wants, want{1, []byte("fixed"), []byte("a"), h1}, want{1, []byte("fixed"), []byte("b"), h1})
	// Partition 2: a 600 KiB value, and messages split on another
	// delimiter so that a value can hold a newline.
	runKcat(t, []byte(big+"\n"), "-b", broker(c), "-P", "-t", topic, "-p", "2", "-k", "big")
	runKcat(t, []byte("line one\nline two;;second"), "-b", broker(c), "-P", "-t", topic, "-p", "2", "-D", ";;")
	wants = append(wants,
		want{2, []byte("big"), []byte(big), nil},
		want{2, nil, []byte("line one\nline two"), nil},
		want{2, nil, []byte("second"), nil},
	)
	finished := time.Now().Add(time.Second)

	s := kstreamtest.NewStream(t, c, codec.Bytes(), kstream.Topics(topic), kstream.Group("reader"))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var got []kstream.Record[[]byte]
	for rec, err := range s.Records(ctx) {
		if err != nil {
			t.Fatalf("range: %v", err)
		}
		rec.Value = bytes.Clone(rec.Value)
		got = append(got, rec)
		if len(got) == len(wants) {
			break
		}
	}
	if len(got) != len(wants) {
		t.Fatalf("read %d records, want %d", len(got), len(wants))
	}
	slices.SortFunc(got, func(a, b kstream.Record[[]byte]) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	for i, w := range wants {
		r := got[i]
		if r.Partition != w.partition {
			t.Errorf("record %d: partition %d, want %d", i, r.Partition, w.partition)
		}
		if !bytes.Equal(r.Key, w.key) || (r.Key == nil) != (w.key == nil) {
			t.Errorf("record %d: key %q (nil %v), want %q (nil %v)", i, r.Key, r.Key == nil, w.key, w.key == nil)
		}
		if !bytes.Equal(r.Value, w.value) || r.Tombstone() != (w.value == nil) {
			t.Errorf("record %d: value %.40q (%d bytes, tombstone %v), want %.40q (%d bytes)", i, r.Value, len(r.Value), r.Tombstone(), w.value, len(w.value))
		}
		if len(r.Headers) != len(w.headers) {
			t.Errorf("record %d: headers %q, want %q", i, r.Headers, w.headers)
		} else {
			for j := range w.headers {
				gh, wh := r.Headers[j], w.headers[j]
				if gh.Key != wh.Key || !bytes.Equal(gh.Value, wh.Value) || (gh.Value == nil) != (wh.Value == nil) {
					t.Errorf("record %d header %d: %q=%q (nil %v), want %q=%q (nil %v)", i, j, gh.Key, gh.Value, gh.Value == nil, wh.Key, wh.Value, wh.Value == nil)
				}
			}
		}
		if r.Timestamp.Before(started) || r.Timestamp.After(finished) {
			t.Errorf("record %d: timestamp %v, not when kcat produced it (%v to %v)", i, r.Timestamp, started, finished)
		}
	}
}

// An engine produces records with keys, headers (an empty name, a NULL
// value, an empty value, a repeated name), a tombstone, fixed partitions and
// a JSON value; kcat reads every one back exactly.
func TestStreamProducesKcatReads(t *testing.T) {
	kcat(t)
	const topic = "to-kcat"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 2))
	eng := kstreamtest.NewEngine(t, c)
	ctx := t.Context()
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	type sent struct {
		md      kstream.RecordMetadata
		key     *string
		value   *string
		headers []*string
	}
	var sents []sent
	send := func(key, value *string, headers []*string, opts ...kstream.SendOption) {
		t.Helper()
		var v []byte
		if value != nil {
			v = []byte(*value)
		}
		if key != nil {
			opts = append(opts, kstream.WithKey([]byte(*key)))
		}
		for i := 0; i < len(headers); i += 2 {
			var hv []byte
			if headers[i+1] != nil {
				hv = []byte(*headers[i+1])
			}
			opts = append(opts, kstream.WithHeader(*headers[i], hv))
		}
		md, err := eng.Send(ctx, topic, v, opts...)
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		sents = append(sents, sent{md, key, value, headers})
	}
	send(ptr("k1"), ptr("v1"), []*string{ptr("trace"), ptr("abc")}, kstream.ToPartition(0))
	send(ptr("k2"), nil, nil, kstream.ToPartition(0)) // a tombstone
	send(nil, ptr("no key"), []*string{ptr(""), ptr("empty name"), ptr("null"), nil, ptr("empty"), ptr("")}, kstream.ToPartition(1))
	send(ptr("k4"), ptr("dup headers"), []*string{ptr("h"), ptr("1"), ptr("h"), ptr("2")}, kstream.ToPartition(1))
	send(ptr(""), ptr(""), nil, kstream.ToPartition(0)) // empty, not NULL, key and value
	send(ptr("ünïcødé ✓"), ptr("multi\nline\tvalue"), nil, kstream.ToPartition(1))
	prod := kstream.NewProducer(eng, topic, codec.JSON[map[string]int]())
	md, err := prod.Send(ctx, []byte("json"), map[string]int{"id": 7}, kstream.ToPartition(0))
	if err != nil {
		t.Fatal(err)
	}
	sents = append(sents, sent{md, ptr("json"), ptr(`{"id":7}`), nil})

	msgs := consumeJSON(t, c, topic)
	if len(msgs) != len(sents) {
		t.Fatalf("kcat read %d messages, want %d: %+v", len(msgs), len(sents), msgs)
	}
	byPos := map[[2]int64]kcatMessage{}
	for _, m := range msgs {
		byPos[[2]int64{int64(m.Partition), m.Offset}] = m
	}
	for i, s := range sents {
		m, ok := byPos[[2]int64{int64(s.md.Partition), s.md.Offset}]
		if !ok {
			t.Errorf("sent %d (%+v): kcat did not read it", i, s.md)
			continue
		}
		if show(m.Key) != show(s.key) || show(m.Payload) != show(s.value) {
			t.Errorf("sent %d: kcat read key %s payload %s, want key %s payload %s", i, show(m.Key), show(m.Payload), show(s.key), show(s.value))
		}
		if len(m.Headers) != len(s.headers) {
			t.Errorf("sent %d: kcat read headers %v, want %v", i, strs(m.Headers), strs(s.headers))
			continue
		}
		for j := range s.headers {
			if show(m.Headers[j]) != show(s.headers[j]) {
				t.Errorf("sent %d: kcat read headers %v, want %v", i, strs(m.Headers), strs(s.headers))
				break
			}
		}
		if m.Timestamp != s.md.Timestamp.UnixMilli() {
			t.Errorf("sent %d: kcat read timestamp %d, Send reported %d", i, m.Timestamp, s.md.Timestamp.UnixMilli())
		}
	}

	// Bytes that are not UTF-8 cannot go through -J; compare lengths.
	if _, err := eng.Send(ctx, topic, []byte{0xff, 0x00, 0xfe}, kstream.WithKey([]byte{0xc3}), kstream.ToPartition(1)); err != nil {
		t.Fatal(err)
	}
	out := runKcat(t, nil, "-b", broker(c), "-C", "-t", topic, "-p", "1", "-o", "-1", "-e", "-q", "-f", "%K|%S\n")
	if got := strings.TrimSpace(string(out)); got != "1|3" {
		t.Errorf("kcat read key and value lengths %q, want 1|3", got)
	}
}

// Keys land on the same partition whether kstream or librdkafka with its
// Java-compatible partitioner (murmur2_random) produces them. librdkafka's
// default, consistent_random (CRC32), does not agree: the test shows that
// too, so that a mixed deployment knows to set partitioner=murmur2_random.
func TestKeyPartitioningMatchesLibrdkafkaMurmur2(t *testing.T) {
	kcat(t)
	const ours, theirs, crc = "keys-kstream", "keys-murmur2", "keys-crc32"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(ours, 6), kstreamtest.Topic(theirs, 6), kstreamtest.Topic(crc, 6))
	eng := kstreamtest.NewEngine(t, c)
	if err := eng.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	const keys = 200
	want := make(map[string]int32, keys)
	var lines bytes.Buffer
	for i := range keys {
		k := fmt.Sprintf("key-%d-%x", i, i*7919)
		md, err := eng.Send(t.Context(), ours, []byte("v"), kstream.WithKey([]byte(k)))
		if err != nil {
			t.Fatal(err)
		}
		want[k] = md.Partition
		fmt.Fprintf(&lines, "%s|v\n", k)
	}
	runKcat(t, lines.Bytes(), "-b", broker(c), "-P", "-t", theirs, "-K", "|", "-X", "partitioner=murmur2_random")
	runKcat(t, lines.Bytes(), "-b", broker(c), "-P", "-t", crc, "-K", "|")

	differ := 0
	for _, topic := range []string{theirs, crc} {
		msgs := consumeJSON(t, c, topic)
		if len(msgs) != keys {
			t.Fatalf("%s: kcat read %d messages, want %d", topic, len(msgs), keys)
		}
		for _, m := range msgs {
			if m.Key == nil {
				t.Fatalf("%s: message without a key", topic)
			}
			same := want[*m.Key] == m.Partition
			switch {
			case topic == theirs && !same:
				t.Errorf("key %q: kstream wrote partition %d, librdkafka murmur2_random partition %d", *m.Key, want[*m.Key], m.Partition)
			case topic == crc && !same:
				differ++
			}
		}
	}
	if differ == 0 {
		t.Errorf("librdkafka's default partitioner put every key where kstream did; expected it to differ (CRC32, not murmur2)")
	}
	t.Logf("librdkafka's default partitioner (consistent_random) disagreed with kstream on %d of %d keys; murmur2_random agreed on all", differ, keys)
}

// groupConsumer is kcat running as a member of a consumer group (-G),
// printing what it consumes.
type groupConsumer struct {
	cmd    *exec.Cmd
	done   chan struct{}
	mu     sync.Mutex
	count  int
	stderr bytes.Buffer
}

// startKcatGroup starts kcat -G group on topic with extra librdkafka
// properties, recording each message it prints in ledger. Each value must
// be the v<i> of record i at partition i%parts, offset i/parts.
func startKcatGroup(t *testing.T, c *kstreamtest.Cluster, group, topic string, parts int, ledger *kstreamtest.Ledger, props ...string) *groupConsumer {
	t.Helper()
	return startKcat(t, c, group, topic, parts, ledger, nil, props...)
}

// startKcat is startKcatGroup with extra kcat arguments (-c count, say).
func startKcat(t *testing.T, c *kstreamtest.Cluster, group, topic string, parts int, ledger *kstreamtest.Ledger, extra []string, props ...string) *groupConsumer {
	t.Helper()
	args := []string{"-b", broker(c), "-G", group, "-u", "-q", "-f", "%t|%p|%o|%s\n",
		"-X", "auto.offset.reset=earliest", "-X", "auto.commit.interval.ms=100",
		"-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=100", "-X", "topic.metadata.refresh.interval.ms=1000"}
	for _, p := range props {
		args = append(args, "-X", p)
	}
	args = append(args, extra...)
	args = append(args, topic)
	g := &groupConsumer{cmd: exec.Command(kcat(t), args...), done: make(chan struct{})}
	g.cmd.Stderr = &g.stderr
	out, err := g.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(g.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.SplitN(sc.Text(), "|", 4)
			if len(f) != 4 {
				t.Errorf("kcat printed %q", sc.Text())
				continue
			}
			p, _ := strconv.Atoi(f[1])
			o, _ := strconv.ParseInt(f[2], 10, 64)
			if want := fmt.Sprintf("v%d", int(o)*parts+p); f[3] != want {
				t.Errorf("kcat read %s/%d@%d = %q, want %q", f[0], p, o, f[3], want)
			}
			ledger.Add(f[0], int32(p), o)
			g.mu.Lock()
			g.count++
			g.mu.Unlock()
		}
	}()
	t.Cleanup(func() { g.stop(t) })
	return g
}

// stop ends kcat the way Ctrl-C does (it commits and leaves the group) and
// waits for it. A message kcat polls after the signal is not printed, yet
// librdkafka stored its offset when the poll returned it and the close
// commits it: a kcat stopped while records flow may lose one (kcat -c
// count, which stops after printing its last message, does not).
func (g *groupConsumer) stop(t *testing.T) {
	if g.cmd.ProcessState != nil {
		return
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(20 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
	}
	_ = g.cmd.Wait()
}

// exited reports whether kcat has ended (its output is closed).
func (g *groupConsumer) exited() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

func (g *groupConsumer) consumed() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.count
}

// A kcat balanced consumer and a stream in the same group share the
// partitions: kcat joins first and takes all of them, the stream joins and
// gets a share, both consume records produced then, kcat leaves and the
// stream takes everything. Every record is consumed by one of them; none is
// lost. With both on their defaults (librdkafka's range,roundrobin; the
// stream's cooperative-sticky,range,roundrobin,...) the group runs range;
// kcat told cooperative-sticky shares cooperatively; a stream told range
// (kgo.Balancers in ClientOptions) runs range too.
func TestKcatAndStreamShareGroup(t *testing.T) {
	kcat(t)
	for _, tc := range []struct {
		name       string
		kcatProps  []string
		streamOpts []kstream.Option
		protocol   string
	}{
		{"defaults", nil, nil, "range"},
		{"cooperative-sticky", []string{"partition.assignment.strategy=cooperative-sticky"}, nil, "cooperative-sticky"},
		{"range", nil, []kstream.Option{kstream.ClientOptions(kgo.Balancers(kgo.RangeBalancer()))}, "range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const parts = 4
			topic, group := "shared-"+tc.name, "g-"+tc.name
			c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, parts))
			produce := func(from, to int) {
				t.Helper()
				recs := make([]*kgo.Record, 0, to-from)
				for i := from; i < to; i++ {
					recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % parts), Value: []byte(fmt.Sprintf("v%d", i))})
				}
				if err := c.Produce(t.Context(), recs...); err != nil {
					t.Fatal(err)
				}
			}
			var all kstreamtest.Ledger // every record, by whichever member
			produce(0, 400)
			k := startKcatGroup(t, c, group, topic, parts, &all, tc.kcatProps...)
			c.WaitGroupStable(t, group, 1, 20*time.Second)
			all.Wait(t, 400, 20*time.Second)

			var ours kstreamtest.Ledger
			s := kstreamtest.NewStream(t, c, codec.String(), append([]kstream.Option{kstream.Topics(topic), kstream.Group(group)}, tc.streamOpts...)...)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			loopDone := make(chan error, 1)
			go func() {
				for rec, err := range s.Records(ctx) {
					if err != nil {
						loopDone <- err
						return
					}
					if want := fmt.Sprintf("v%d", int(rec.Offset)*parts+int(rec.Partition)); rec.Value != want {
						t.Errorf("stream read %d@%d = %q, want %q", rec.Partition, rec.Offset, rec.Value, want)
					}
					ours.Add(rec.Topic, rec.Partition, rec.Offset)
					all.Add(rec.Topic, rec.Partition, rec.Offset)
				}
				loopDone <- nil
			}()
			st := c.WaitGroupStable(t, group, 2, 20*time.Second)
			for _, m := range st.Members {
				if len(m.Assignment[topic]) == 0 {
					t.Fatalf("a member of the shared group owns nothing: %s", st)
				}
			}
			if got := groupProtocol(t, c, group); got != tc.protocol {
				t.Errorf("the shared group runs %q, want %q", got, tc.protocol)
			}
			kstreamtest.WaitFor(t, 10*time.Second, "the stream to learn its assignment", func() bool { return len(s.Assignment()[topic]) > 0 })
			shared := s.Assignment()[topic]

			kBefore := k.consumed()
			produce(400, 800)
			all.Wait(t, 800, 20*time.Second)
			if k.consumed() == kBefore || ours.Count() == 0 {
				t.Errorf("while sharing, kcat consumed %d and the stream %d of the new records; want both > 0", k.consumed()-kBefore, ours.Count())
			}

			k.stop(t) // kcat leaves: its partitions move to the stream
			st = c.WaitGroupStable(t, group, 1, 20*time.Second)
			kstreamtest.WaitFor(t, 10*time.Second, "the stream to own every partition", func() bool { return len(s.Assignment()[topic]) == parts })
			produce(800, 1200)
			all.Wait(t, 1200, 20*time.Second)
			c.WaitCaughtUp(t, group, 20*time.Second, topic)
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if err := <-loopDone; err != nil {
				t.Errorf("the stream's range: %v", err)
			}

			all.AssertAtLeastOnce(t, c.Produced(t, topic))
			dups := all.Total() - all.Count()
			t.Logf("%s: kcat consumed %d, the stream %d (shared partitions %v, then all %d); %d duplicate(s) across the hand-offs",
				tc.name, k.consumed(), ours.Total(), shared, parts, dups)
			if k.stderr.Len() > 0 {
				t.Logf("kcat stderr:\n%s", k.stderr.String())
			}
		})
	}
}

// With no common assignor (kcat on librdkafka's default range,roundrobin,
// the stream told to offer only cooperative-sticky, which replaces its
// default balancers) the broker refuses the second member's join with
// INCONSISTENT_GROUP_PROTOCOL. The stream reports it as a fatal
// *FetchError: a configuration error, stated clearly, instead of a member
// that silently never gets partitions.
func TestKcatGroupProtocolMismatchIsFatal(t *testing.T) {
	kcat(t)
	const topic, group = "mismatch", "g-mismatch"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 2))
	var all kstreamtest.Ledger
	startKcatGroup(t, c, group, topic, 2, &all)
	c.WaitGroupStable(t, group, 1, 20*time.Second)

	s := kstreamtest.NewStream(t, c, codec.String(), kstream.Topics(topic), kstream.Group(group),
		kstream.ClientOptions(kgo.Balancers(kgo.CooperativeStickyBalancer())))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var errs []error
	for _, err := range s.Records(ctx) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var fe *kstream.FetchError
	if len(errs) != 1 || !errors.As(errs[0], &fe) || !fe.Fatal || !errors.Is(fe, kerr.InconsistentGroupProtocol) {
		t.Fatalf("the range yielded %v, want one fatal *FetchError wrapping INCONSISTENT_GROUP_PROTOCOL", errs)
	}
	if fe.Topic != "" {
		t.Errorf("a group error names topic %q, want none", fe.Topic)
	}
	t.Logf("the stream ended with: %v", fe)
}

func strs(ss []*string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = show(s)
	}
	return out
}
