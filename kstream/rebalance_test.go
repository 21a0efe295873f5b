package kstream_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/kstream"
)

// member is one group member ranging in its own goroutine, recording what it
// processed and what its listener was told.
type member struct {
	name string
	s    *kstream.Stream[string]
	done chan error

	mu       sync.Mutex
	assigned []int32
	revoked  []int32
	owned    map[int32]bool
}

// ledger counts how often each (partition, offset) was processed.
type ledger struct {
	mu   sync.Mutex
	seen map[[2]int64]int
	dups [][2]int64
}

func (l *ledger) add(p int32, off int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := [2]int64{int64(p), off}
	l.seen[k]++
	if l.seen[k] > 1 {
		l.dups = append(l.dups, k)
	}
}

func (l *ledger) distinct() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}

func startMember(t *testing.T, ctx context.Context, e *env, name string, l *ledger, opts ...kstream.Option) *member {
	m := &member{name: name, done: make(chan error, 1), owned: map[int32]bool{}}
	listener := kstream.ListenerFuncs{
		Assigned: func(_ context.Context, s kstream.AnyStream, a map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.assigned = append(m.assigned, a[e.topic]...)
			for _, p := range a[e.topic] {
				m.owned[p] = true
			}
		},
		Revoked: func(_ context.Context, s kstream.AnyStream, r map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.revoked = append(m.revoked, r[e.topic]...)
			for _, p := range r[e.topic] {
				delete(m.owned, p)
			}
		},
	}
	m.s = e.stream(append(opts, kstream.Listener(listener))...)
	if err := m.s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	go func() {
		for rec, err := range m.s.Records(ctx) {
			if err != nil {
				m.done <- err
				return
			}
			m.mu.Lock()
			ok := m.owned[rec.Partition]
			m.mu.Unlock()
			if !ok {
				m.done <- fmt.Errorf("%s got offset %d of partition %d, which its listener says it does not own", name, rec.Offset, rec.Partition)
				return
			}
			l.add(rec.Partition, rec.Offset)
			time.Sleep(time.Millisecond) // the work, so that rebalances meet records in flight
		}
		m.done <- nil
	}()
	return m
}

func (m *member) ownedCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.owned)
}

func TestRebalanceTwoMembersExactlyOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []kstream.Option
	}{
		{"default", nil},
		{"manual", []kstream.Option{kstream.ManualCommit(), kstream.Listener(kstream.ManualCommitRebalanceListener{})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const parts, first, total = 6, 300, 600
			e := newEnv(t, parts, first)
			ctx, cancel := context.WithCancel(e.ctx)
			defer cancel()
			l := &ledger{seen: map[[2]int64]int{}}
			opts := append([]kstream.Option{kstream.Group("rb")}, tc.opts...)

			a := startMember(t, ctx, e, "a", l, opts...)
			defer a.s.Close()
			// a processes records of every partition before b joins, so
			// that whatever moves to b has progress that must be committed
			// before the revoke, or b would process it again.
			eventually(t, 20*time.Second, "a to own all partitions and process the first records", func() bool {
				return a.ownedCount() == parts && l.distinct() == first
			})
			b := startMember(t, ctx, e, "b", l, opts...)
			defer b.s.Close()
			e.produce(first, total) // while the group rebalances
			eventually(t, 30*time.Second, "the partitions to be split between a and b", func() bool {
				return a.ownedCount() > 0 && b.ownedCount() > 0 && a.ownedCount()+b.ownedCount() == parts
			})
			eventually(t, 30*time.Second, fmt.Sprintf("all %d records to be processed", total), func() bool {
				return l.distinct() == total
			})
			cancel()
			for _, m := range []*member{a, b} {
				if err := <-m.done; err != nil {
					t.Fatal(err)
				}
			}

			l.mu.Lock()
			dups := l.dups
			l.mu.Unlock()
			if len(dups) > 0 {
				t.Fatalf("%d records processed twice across the rebalance, e.g. partition/offset %v", len(dups), dups[0])
			}
			// Cooperative rebalancing moved exactly what a gave up to b.
			a.mu.Lock()
			b.mu.Lock()
			defer a.mu.Unlock()
			defer b.mu.Unlock()
			slices.Sort(a.assigned)
			slices.Sort(a.revoked)
			slices.Sort(b.assigned)
			if !slices.Equal(a.assigned, []int32{0, 1, 2, 3, 4, 5}) {
				t.Errorf("a was assigned %v, want all six partitions", a.assigned)
			}
			if len(b.assigned) != parts/2 || !slices.Equal(a.revoked, b.assigned) {
				t.Errorf("a revoked %v, b was assigned %v; want the same three", a.revoked, b.assigned)
			}
			if len(b.revoked) != 0 {
				t.Errorf("b had %v revoked before close", b.revoked)
			}
		})
	}
}

// Close triggers OnRevoked with the member's partitions, and with
// ManualCommitRebalanceListener that commits what was yielded, leaving out a
// record whose body had not finished.
func TestManualCommitListenerCommitsOnClose(t *testing.T) {
	e := newEnv(t, 1, 6)
	var revoked map[string][]int32
	s := e.stream(kstream.Group("g"), kstream.ManualCommit(),
		kstream.Listener(kstream.ManualCommitRebalanceListener{}),
		kstream.Listener(kstream.ListenerFuncs{Revoked: func(_ context.Context, _ kstream.AnyStream, r map[string][]int32) { revoked = r }}))
	if err := s.Open(e.ctx); err != nil {
		t.Fatal(err)
	}
	for rec, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Offset == 3 {
			if err := s.Close(); err != nil { // 3 is in flight
				t.Fatal(err)
			}
		}
	}
	e.wantCommitted("g", map[int32]int64{0: 3})
	if !equalAssignment(revoked, map[string][]int32{e.topic: {0}}) {
		t.Fatalf("OnRevoked got %v", revoked)
	}
}

// Close called from a listener callback does not deadlock (franz-go's leave
// waits for the callback): it commits and returns; the client finishes
// closing when the callback returns.
func TestCloseFromListener(t *testing.T) {
	e := newEnv(t, 1, 3)
	var s *kstream.Stream[string]
	closed := make(chan error, 1)
	s = e.stream(kstream.Group("g"), kstream.Listener(kstream.ListenerFuncs{
		Assigned: func(context.Context, kstream.AnyStream, map[string][]int32) {
			closed <- s.Close()
		},
	}))
	if err := s.Open(e.ctx); errors.Is(err, kstream.ErrClosed) {
		// Assigned before Open's ping returned: the listener's Close made
		// Open give up, as Open documents (about 1 run in 40).
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		return
	} else if err != nil {
		t.Fatal(err)
	}
	var n int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range s.Records(e.ctx) {
			n++
		}
	}()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close from OnAssigned did not return")
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the range did not end after Close from a listener")
	}
	if n != 0 {
		t.Fatalf("yielded %d records after Close in OnAssigned", n)
	}
}
