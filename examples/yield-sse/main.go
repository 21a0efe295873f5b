// Yield-sse serves a Kafka topic to web clients as Server-Sent Events: each
// request to /events opens a stream of its own, writes every record to the
// client as an event, and closes the stream when the client goes away.
//
// It is the Go counterpart of "Yield from stream" on the kstreams Streams
// page, whose use case is returning results to a frontend with SSE. There a
// stream function yields values and "async with stream as stream_flow"
// starts and stops the stream around the "async for". Here the handler calls
// s.Use(r.Context(), ...): Use opens the stream, hands the loop its records
// and closes the stream whatever happens. When the client disconnects, the
// request's context is canceled, the range ends quietly at the next record
// boundary (or at once if it is waiting for records), and Use closes the
// stream, so no Kafka client or goroutine outlives the request.
//
// Each request's stream has no consumer group: it reads every partition
// from the start and commits nothing, so every client sees the whole topic.
// (Use kstream.ResetOffset(kstream.Latest) for new records only, or a unique
// group per client to have its progress committed.)
//
// The program starts the server on 127.0.0.1, produces three quotes, connects
// with an http.Client, reads them as events, produces two more while the
// client is connected and reads those as they arrive. Then the client goes
// away, the program shows that the server closed that client's stream, and
// shuts the server down.
//
// With KAFKA_BROKERS unset it starts an in-process Kafka cluster:
//
//	go run ./examples/yield-sse
//
// With KAFKA_BROKERS set it uses that cluster, with a topic named for this
// run, which it deletes at the end.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// Quote is the value of each record, and the data of each event.
type Quote struct {
	Symbol string  `json:"symbol"`
	Price  float64 `json:"price"`
}

func main() {
	verbose := flag.Bool("v", false, "show the SDK's info logs")
	flag.Parse()
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "yield-sse:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	topic := "quotes"
	external := strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != ""
	if external {
		topic += fmt.Sprintf("-%d", time.Now().UnixNano())
	}
	brokers, stop, err := kstreamtest.StartCluster(kstreamtest.Topic(topic, 1))
	if err != nil {
		return err
	}
	defer stop()
	cl, err := kstreamtest.NewClient(brokers)
	if err != nil {
		return err
	}
	defer cl.Close()
	if external {
		defer kadm.NewClient(cl).DeleteTopics(context.WithoutCancel(ctx), topic)
	}

	srv, err := startServer(brokers, topic)
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintf(w, "server listening on %s\n", srv.URL)

	quotes := []Quote{{"ACME", 101.25}, {"INITECH", 12.5}, {"GLOBEX", 57.75}, {"ACME", 101.5}, {"UMBRELLA", 8.25}}
	if err := produce(ctx, cl, topic, quotes[:3]...); err != nil {
		return err
	}
	fmt.Fprintln(w, "produced 3 quotes")

	// The client: a plain http.Client reading the response body as it comes.
	reqCtx, leave := context.WithCancel(ctx)
	defer leave()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	events, body, err := subscribe(reqCtx, client, srv.URL+"/events")
	if err != nil {
		return err
	}
	defer body.Close()
	fmt.Fprintln(w, "client connected to /events")

	read := func(n int) error {
		for range n {
			ev, err := events.Next()
			if err != nil {
				return fmt.Errorf("read event: %w", err)
			}
			var q Quote
			if err := json.Unmarshal([]byte(ev.Data), &q); err != nil {
				return fmt.Errorf("event %s: %w", ev.ID, err)
			}
			fmt.Fprintf(w, "client got event id=%s data=%s (%s at %.2f)\n", ev.ID, ev.Data, q.Symbol, q.Price)
		}
		return nil
	}
	if err := read(3); err != nil {
		return err
	}
	// Records produced while the client is connected arrive as they come.
	if err := produce(ctx, cl, topic, quotes[3:]...); err != nil {
		return err
	}
	fmt.Fprintln(w, "produced 2 more quotes")
	if err := read(2); err != nil {
		return err
	}

	// The client goes away: its request's context is canceled, which ends
	// the server's loop and closes that request's stream.
	leave()
	body.Close()
	fmt.Fprintln(w, "client disconnected")
	if err := srv.waitClosed(ctx, 1); err != nil {
		return err
	}
	fmt.Fprintf(w, "server: streams opened %d, closed %d\n", srv.opened.Load(), srv.closed.Load())

	shutdownCtx, cancelShutdown := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancelShutdown()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	fmt.Fprintln(w, "server shut down")
	return nil
}

// Server serves the records of a topic as Server-Sent Events at /events.
type Server struct {
	*http.Server
	URL     string // http://127.0.0.1:port
	brokers []string
	topic   string

	opened, closed atomic.Int64 // streams opened and closed by requests
}

// startServer starts a Server on a free port of 127.0.0.1. Shutdown ends the
// event streams in progress: their requests' contexts derive from one that
// Shutdown cancels.
func startServer(brokers []string, topic string) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	base, cancelBase := context.WithCancel(context.Background())
	s := &Server{URL: "http://" + ln.Addr().String(), brokers: brokers, topic: topic}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", s.events)
	s.Server = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	s.RegisterOnShutdown(cancelBase)
	go func() {
		if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			slog.Error("serve", "err", err)
		}
		cancelBase()
	}()
	return s, nil
}

// events streams the topic to one client: one stream per request, open for
// as long as the client is.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	stream, err := kstream.NewStream(codec.JSON[Quote](),
		kstream.Brokers(s.brokers...),
		kstream.Topics(s.topic),
	)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	ctx := r.Context()
	rc := http.NewResponseController(w)
	opened := false
	err = stream.Use(ctx, func(records iter.Seq2[kstream.Record[Quote], error]) error {
		opened = true
		s.opened.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		// A comment, so that the client has the response before any record.
		io.WriteString(w, ": connected\n\n")
		if err := rc.Flush(); err != nil {
			return err
		}
		for rec, err := range records {
			de, isDecodeErr := errors.AsType[*kstream.DecodeError](err)
			switch {
			case isDecodeErr:
				// Tell the client, and go on with the next record.
				fmt.Fprintf(w, "id: %d-%d\nevent: error\ndata: %q\n\n", de.Partition, de.Offset, de.Err.Error())
			case err != nil:
				return err
			default:
				data, err := json.Marshal(rec.Value)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "id: %d-%d\ndata: %s\n\n", rec.Partition, rec.Offset, data)
			}
			// A failed flush means the client is gone; returning ends the
			// range and Use closes the stream.
			if err := rc.Flush(); err != nil {
				return err
			}
		}
		return nil // ctx canceled: the client left or the server shuts down
	})
	if opened {
		s.closed.Add(1) // Use has closed the stream
	}
	if err != nil && ctx.Err() == nil {
		slog.Error("event stream", "err", err)
		if !opened {
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
	}
}

// waitClosed waits until n streams were closed and none is open.
func (s *Server) waitClosed(ctx context.Context, n int64) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if c := s.closed.Load(); c >= n && c == s.opened.Load() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server closed %d of %d streams: %w", s.closed.Load(), s.opened.Load(), context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// Event is one Server-Sent Event.
type Event struct {
	ID, Name, Data string
}

// EventReader reads Server-Sent Events from a response body.
type EventReader struct {
	r *bufio.Reader
}

// Next returns the next event, skipping comments.
func (er *EventReader) Next() (Event, error) {
	var ev Event
	var data []string
	for {
		line, err := er.r.ReadString('\n')
		if err != nil {
			return Event{}, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if data == nil {
				continue // the end of a comment block
			}
			ev.Data = strings.Join(data, "\n")
			return ev, nil
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			ev.ID = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			ev.Name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		}
	}
}

// subscribe requests url as an event stream. Canceling ctx (or closing body)
// leaves it.
func subscribe(ctx context.Context, client *http.Client, url string) (*EventReader, io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return &EventReader{r: bufio.NewReader(resp.Body)}, resp.Body, nil
}

func produce(ctx context.Context, cl *kgo.Client, topic string, quotes ...Quote) error {
	enc := codec.JSON[Quote]()
	for _, q := range quotes {
		b, err := enc.Encode(q)
		if err != nil {
			return err
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(q.Symbol), Value: b}).FirstErr(); err != nil {
			return fmt.Errorf("produce: %w", err)
		}
	}
	return nil
}
