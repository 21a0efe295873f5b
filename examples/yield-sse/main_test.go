package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// TestRun runs the program and checks that the client got the five quotes
// as events, in order, and that the server closed the client's stream.
func TestRun(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		`client got event id=0-0 data={"symbol":"ACME","price":101.25}`,
		`client got event id=0-2 data={"symbol":"GLOBEX","price":57.75}`,
		"produced 2 more quotes\n" + `client got event id=0-3 data={"symbol":"ACME","price":101.5}`,
		`client got event id=0-4 data={"symbol":"UMBRELLA","price":8.25}`,
		"client disconnected\nserver: streams opened 1, closed 1\nserver shut down\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}

// TestEventStream connects two real HTTP clients at once. Each gets every
// record as an event, including one produced while it is connected; when the
// clients go away the server closes their streams, and the goroutines of the
// streams and connections are gone. Then a third client is connected while
// the server shuts down: Shutdown ends its stream too.
func TestEventStream(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const topic = "quotes"
	c := kstreamtest.NewCluster(t, kstreamtest.Topic(topic, 1))
	quotes := []Quote{{"ACME", 1}, {"INITECH", 2}, {"GLOBEX", 3}}
	if err := kstreamtest.ProduceValues(ctx, c, topic, 1, codec.JSON[Quote](), quotes[:2]...); err != nil {
		t.Fatal(err)
	}

	srv, err := startServer(c.Brokers(), topic)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tr := &http.Transport{}
	client := &http.Client{Transport: tr}
	baseline := runtime.NumGoroutine()

	type conn struct {
		events *EventReader
		body   io.ReadCloser
		leave  context.CancelFunc
	}
	var conns []conn
	for range 2 {
		reqCtx, leave := context.WithCancel(ctx)
		defer leave()
		events, body, err := subscribe(reqCtx, client, srv.URL+"/events")
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn{events, body, leave})
	}
	if err := srv.waitOpened(ctx, 2); err != nil {
		t.Fatal(err)
	}
	// Each stream has a Kafka client of its own, with its goroutines.
	if during := runtime.NumGoroutine(); during <= baseline {
		t.Fatalf("%d goroutines with two event streams open, %d before", during, baseline)
	} else {
		t.Logf("goroutines: %d before the clients connected, %d with two event streams open", baseline, during)
	}
	// A producer of its own, closed before the goroutines are counted, so
	// that only the server's streams and connections are left to count.
	producer, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	if err := produce(ctx, producer, topic, quotes[2]); err != nil {
		t.Fatal(err)
	}
	producer.Close()

	var wg sync.WaitGroup
	errs := make([]error, len(conns))
	for i, cn := range conns {
		wg.Go(func() {
			for off, want := range quotes {
				ev, err := cn.events.Next()
				if err != nil {
					errs[i] = fmt.Errorf("client %d, event %d: %w", i, off, err)
					return
				}
				var got Quote
				if err := json.Unmarshal([]byte(ev.Data), &got); err != nil {
					errs[i] = fmt.Errorf("client %d, event %d: data %q: %w", i, off, ev.Data, err)
					return
				}
				if wantID := fmt.Sprintf("0-%d", off); ev.ID != wantID || ev.Name != "" || got != want {
					errs[i] = fmt.Errorf("client %d got event id=%s name=%q %+v, want id=%s %+v", i, ev.ID, ev.Name, got, wantID, want)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	// The clients go away.
	for _, cn := range conns {
		cn.leave()
		cn.body.Close()
	}
	tr.CloseIdleConnections()
	if err := srv.waitClosed(ctx, 2); err != nil {
		t.Fatal(err)
	}
	waitGoroutines(t, baseline, 5*time.Second)

	// A client connected during Shutdown: the server ends its stream.
	events, body, err := subscribe(ctx, client, srv.URL+"/events")
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	if ev, err := events.Next(); err != nil || ev.ID != "0-0" {
		t.Fatalf("first event of the third client: %+v, %v", ev, err)
	}
	shutdownCtx, cancelShutdown := context.WithTimeout(ctx, 5*time.Second)
	defer cancelShutdown()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		t.Fatalf("shutdown with a client connected: %v", err)
	}
	for {
		if _, err := events.Next(); err != nil {
			break // the server ended the response
		}
	}
	if o, c := srv.opened.Load(), srv.closed.Load(); o != 3 || c != 3 {
		t.Fatalf("after shutdown: %d streams opened, %d closed; want 3 and 3", o, c)
	}
}

// waitGoroutines waits until no more goroutines run than at baseline.
func waitGoroutines(t *testing.T, baseline int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := runtime.NumGoroutine()
		if n <= baseline {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, %d before the clients connected:\n%s", n, baseline, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitOpened waits until n streams are open.
func (s *Server) waitOpened(ctx context.Context, n int64) error {
	for s.opened.Load()-s.closed.Load() < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d streams open, want %d: %w", s.opened.Load()-s.closed.Load(), n, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}
