package kstreamtest_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// Order is a record type of the application under test.
type Order struct {
	Customer string `json:"customer"`
	Amount   int    `json:"amount"`
}

// Totals is the handler under test: it adds each order's amount to its
// customer's total. Kafka delivers at least once (a crashed member's records
// come again), so it remembers the next offset to apply per partition, as an
// application would in the same transaction as the totals, and skips what it
// has applied.
type Totals struct {
	mu   sync.Mutex
	sum  map[string]int
	next map[int32]int64
}

func NewTotals() *Totals { return &Totals{sum: map[string]int{}, next: map[int32]int64{}} }

// Handle is a kstream.Handler[Order].
func (t *Totals) Handle(_ context.Context, rec kstream.Record[Order]) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if rec.Offset < t.next[rec.Partition] {
		return nil // applied before: a redelivery
	}
	t.sum[rec.Value.Customer] += rec.Value.Amount
	t.next[rec.Partition] = rec.Offset + 1
	return nil
}

func (t *Totals) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(t.sum)) {
		parts = append(parts, fmt.Sprintf("%s=%d", c, t.sum[c]))
	}
	return strings.Join(parts, " ")
}

// orders returns n orders for three customers: ann, bob and cid, in turn,
// for amounts 1, 2, 3, ...
func orders(from, to int) []Order {
	names := []string{"ann", "bob", "cid"}
	var out []Order
	for i := from; i < to; i++ {
		out = append(out, Order{Customer: names[i%3], Amount: i + 1})
	}
	return out
}

// A handler tested against the embedded cluster: produce orders, run the
// handler in an engine until the ledger has seen every order, and check the
// result, the group's lag and that nothing was processed twice.
func Example_handler() {
	c, err := kstreamtest.Start(kstreamtest.Topic("orders", 3))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	totals := NewTotals()
	var ledger kstreamtest.Ledger
	eng, err := kstream.NewEngine(kstream.Brokers(c.Brokers()...), kstream.ClientOptions(c.GroupTimings()...))
	if err != nil {
		fmt.Println(err)
		return
	}
	s, err := kstream.NewStream(codec.JSON[Order](), kstream.Topics("orders"), kstream.Group("billing"))
	if err != nil {
		fmt.Println(err)
		return
	}
	// Track records each order in the ledger once Handle has returned nil.
	s.Handle(totals.Handle, kstreamtest.Track[Order](&ledger))
	if err := eng.Add(s); err != nil {
		fmt.Println(err)
		return
	}
	if err := eng.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}

	in := orders(0, 9)
	if err := kstreamtest.ProduceValues(ctx, c, "orders", 3, codec.JSON[Order](), in...); err != nil {
		fmt.Println(err)
		return
	}
	if err := ledger.Await(ctx, len(in)); err != nil {
		fmt.Println(err)
		return
	}
	if err := eng.Stop(ctx); err != nil { // commits what was processed
		fmt.Println(err)
		return
	}

	fmt.Println(totals)
	lag, err := c.Lag(ctx, "billing", "orders")
	fmt.Println("lag:", lag.Total(), err)
	fmt.Println("duplicates:", ledger.CheckNoDuplicates())
	// Output:
	// ann=12 bob=15 cid=18
	// lag: 0 <nil>
	// duplicates: <nil>
}

// A handler that survives a rebalance: a second member (another process of
// the same application) joins the group half-way through; the partitions
// are split between the two, and every order is processed exactly once.
func Example_survivesRebalance() {
	c, err := kstreamtest.Start(kstreamtest.Topic("orders", 4))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	totals := NewTotals()
	var all kstreamtest.Ledger
	// member starts one process of the application: an engine running the
	// handler, recording what it processed in all and in its own ledger.
	member := func(own *kstreamtest.Ledger) (*kstream.Engine, error) {
		eng, err := kstream.NewEngine(kstream.Brokers(c.Brokers()...), kstream.ClientOptions(c.GroupTimings()...))
		if err != nil {
			return nil, err
		}
		s, err := kstream.NewStream(codec.JSON[Order](), kstream.Topics("orders"), kstream.Group("billing"))
		if err != nil {
			return nil, err
		}
		s.Handle(totals.Handle, kstreamtest.Track[Order](&all), kstreamtest.Track[Order](own))
		if err := eng.Add(s); err != nil {
			return nil, err
		}
		return eng, eng.Start(ctx)
	}

	var first, second kstreamtest.Ledger
	eng1, err := member(&first)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer eng1.Stop(ctx)
	if err := kstreamtest.ProduceValues(ctx, c, "orders", 4, codec.JSON[Order](), orders(0, 20)...); err != nil {
		fmt.Println(err)
		return
	}
	if err := all.Await(ctx, 20); err != nil {
		fmt.Println(err)
		return
	}

	eng2, err := member(&second) // joins half-way: a rebalance
	if err != nil {
		fmt.Println(err)
		return
	}
	defer eng2.Stop(ctx)
	g, err := c.AwaitGroupStable(ctx, "billing", 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("members:", len(g.Members))

	if err := kstreamtest.ProduceValues(ctx, c, "orders", 4, codec.JSON[Order](), orders(20, 40)...); err != nil {
		fmt.Println(err)
		return
	}
	if err := all.Await(ctx, 40); err != nil {
		fmt.Println(err)
		return
	}

	fmt.Println(totals)
	fmt.Println("second member processed orders:", second.Count() > 0)
	ends, err := c.EndOffsets(ctx, "orders")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("lost:", all.CheckAtLeastOnce(kstreamtest.Offsets{"orders": ends}))
	fmt.Println("duplicates:", all.CheckNoDuplicates())
	// Output:
	// members: 2
	// ann=287 bob=260 cid=273
	// second member processed orders: true
	// lost: <nil>
	// duplicates: <nil>
}

// The test a user writes with the kit's levers: a second member joins (a
// graceful rebalance: nothing is processed twice), then crashes (no commit,
// no LeaveGroup: its partitions come back after the session timeout and its
// uncommitted records are delivered again). The totals stay right, no order
// is lost, and the group's commits never go backwards.
func TestTotalsSurviveRebalanceAndCrash(t *testing.T) {
	const topic, group = "orders", "billing"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 4))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	totals := NewTotals()
	var ledger kstreamtest.Ledger
	commits := c.MonitorCommits(t, group)

	start := func() *kstream.Stream[Order] {
		eng := kstreamtest.NewEngine(t, c)
		s := kstreamtest.NewStream(t, c, codec.JSON[Order](), kstream.Topics(topic), kstream.Group(group))
		s.Handle(totals.Handle, kstreamtest.Track[Order](&ledger))
		if err := eng.Add(s); err != nil {
			t.Fatal(err)
		}
		if err := eng.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}
	produce := func(from, to int) {
		t.Helper()
		if err := kstreamtest.ProduceValues(ctx, c, topic, 4, codec.JSON[Order](), orders(from, to)...); err != nil {
			t.Fatal(err)
		}
	}

	start()
	produce(0, 40)
	ledger.Wait(t, 40, 10*time.Second)

	second := start()
	c.WaitGroupStable(t, group, 2, 10*time.Second)
	produce(40, 80)
	ledger.Wait(t, 80, 10*time.Second)
	ledger.AssertNoDuplicates(t) // a graceful rebalance repeats nothing

	kstreamtest.Crash(t, second)
	produce(80, 120)
	c.WaitGroupStable(t, group, 1, 10*time.Second)
	ledger.Wait(t, 120, 10*time.Second)
	c.WaitCaughtUp(t, group, 10*time.Second, topic)

	want := NewTotals()
	for i, o := range orders(0, 120) {
		want.Handle(ctx, kstream.Record[Order]{Partition: int32(i % 4), Offset: int64(i / 4), Value: o})
	}
	if got := totals.String(); got != want.String() {
		t.Errorf("totals = %s, want %s", got, want)
	}
	ledger.AssertAtLeastOnce(t, c.Produced(t, topic))
	commits.AssertMonotonic(t)
	t.Logf("records processed again after the crash: %d", ledger.Total()-ledger.Count())
}
