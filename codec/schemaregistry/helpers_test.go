package schemaregistry_test

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// registry is an in-process schema registry (franz-go's srfake) served on
// a listener of the test's own, so that the test can stop it (connections
// refused) and start it again at the same address with the same schemas.
type registry struct {
	*srfake.Registry
	addr string
	url  string

	mu  sync.Mutex
	srv *http.Server
	wg  sync.WaitGroup
}

func newRegistry(t testing.TB) *registry {
	t.Helper()
	r := &registry{Registry: srfake.NewRegistry()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.url = "http://" + r.addr
	r.serve(ln)
	t.Cleanup(r.stop)
	return r
}

func (r *registry) serve(ln net.Listener) {
	srv := &http.Server{Handler: r.Handler()}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			panic(err)
		}
	}()
}

// stop closes the listener and every connection: requests are refused
// until start.
func (r *registry) stop() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Close()
		r.wg.Wait()
	}
}

// start listens again at the same address.
func (r *registry) start(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", r.addr, err)
	}
	r.serve(ln)
}

// client returns a registry client with a transport of its own, whose idle
// connections the end of the test closes.
func (r *registry) client(t testing.TB, opts ...sr.ClientOpt) *sr.Client {
	t.Helper()
	return newClient(t, r.url, opts...)
}

func newClient(t testing.TB, url string, opts ...sr.ClientOpt) *sr.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	opts = append([]sr.ClientOpt{sr.URLs(url), sr.HTTPClient(&http.Client{Transport: tr})}, opts...)
	cl, err := sr.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// register registers a schema and returns its ID.
func (r *registry) register(t testing.TB, subject string, s sr.Schema) int {
	t.Helper()
	id, _, err := r.RegisterSchema(subject, s)
	if err != nil {
		t.Fatalf("register %s: %v", subject, err)
	}
	return id
}

// mustEqual fails the test when got and want differ.
func mustEqual[T comparable](t testing.TB, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// countLookups counts the registry's lookups of schemas by ID.
func countLookups(r *registry) func() int32 {
	var n atomic.Int32
	r.Intercept(func(_ http.ResponseWriter, req *http.Request) bool {
		if strings.HasPrefix(req.URL.Path, "/schemas/ids/") {
			n.Add(1)
		}
		return false
	})
	return n.Load
}
