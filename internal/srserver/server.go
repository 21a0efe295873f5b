// Package srserver serves an in-process schema registry (franz-go's srfake)
// on a TCP address of its own, for kstreamtest and cmd/kstreams-dev: it can
// stop (connections refused, as when a registry is down) and start again
// at the same address with the same schemas, and it can keep its schemas in
// a file across restarts of the process.
package srserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// Server is a running registry. Its methods are safe for concurrent use.
type Server struct {
	reg  *srfake.Registry
	addr string
	file string

	mu      sync.Mutex
	srv     *http.Server
	done    chan struct{} // closed when srv's Serve has returned
	saveErr error         // the last failure to save, for Close
	saveMu  sync.Mutex    // one save at a time
}

// Start listens on addr (host:port; port 0 picks a free one) and serves a
// registry. With a file, the registry starts with the schemas saved there
// (if it exists) and saves them again after every change.
func Start(addr, file string) (*Server, error) {
	s := &Server{reg: srfake.NewRegistry(), file: file}
	if file != "" {
		if err := s.load(); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("schema registry: %w", err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	return s, nil
}

// URL returns the registry's base URL.
func (s *Server) URL() string { return "http://" + s.addr }

// Registry returns the registry, to seed and inspect it, or to intercept
// requests.
func (s *Server) Registry() *srfake.Registry { return s.reg }

func (s *Server) serve(ln net.Listener) {
	srv := &http.Server{Handler: s.handler()}
	done := make(chan struct{})
	s.mu.Lock()
	s.srv, s.done = srv, done
	s.mu.Unlock()
	go func() {
		defer close(done)
		srv.Serve(ln) // returns http.ErrServerClosed on Stop
	}()
}

// Stop closes the listener and every connection, so that requests are
// refused until Restart. It returns when the server has stopped; stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
		<-done
	}
}

// Stopped reports whether the server is stopped.
func (s *Server) Stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv == nil
}

// Restart listens again at the same address, with the same schemas. On a
// running server it does nothing.
func (s *Server) Restart() error {
	s.mu.Lock()
	running := s.srv != nil
	s.mu.Unlock()
	if running {
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("schema registry: listen again on %s: %w", s.addr, err)
	}
	s.serve(ln)
	return nil
}

// Close stops the server and, with a file, saves the schemas a last time,
// returning the error of that save.
func (s *Server) Close() error {
	s.Stop()
	if s.file == "" {
		return nil
	}
	return s.save()
}

// SaveErr returns the error of the last save after a change, nil if it
// succeeded (or there was none).
func (s *Server) SaveErr() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	return s.saveErr
}

// handler is the registry's, saving after every change when there is a
// file.
func (s *Server) handler() http.Handler {
	h := s.reg.Handler()
	if s.file == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		if r.Method != http.MethodGet && r.Method != http.MethodHead && rec.status < 300 {
			err := s.save()
			s.saveMu.Lock()
			s.saveErr = err
			s.saveMu.Unlock()
		}
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// saved is one subject's version as the file keeps it.
type saved struct {
	Subject    string               `json:"subject"`
	Version    int                  `json:"version"`
	ID         int                  `json:"id"`
	Type       string               `json:"schemaType,omitempty"`
	Schema     string               `json:"schema"`
	References []sr.SchemaReference `json:"references,omitempty"`
}

// snapshot lists every version of every subject, asking the registry's own
// handler (no network involved).
func (s *Server) snapshot() ([]saved, error) {
	h := s.reg.Handler()
	get := func(path string, into any) error {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			return fmt.Errorf("GET %s: %d %s", path, rec.Code, bytes.TrimSpace(rec.Body.Bytes()))
		}
		return json.Unmarshal(rec.Body.Bytes(), into)
	}
	var subjects []string
	if err := get("/subjects", &subjects); err != nil {
		return nil, err
	}
	var out []saved
	for _, subject := range subjects {
		var versions []int
		esc := "/subjects/" + url.PathEscape(subject) + "/versions"
		if err := get(esc, &versions); err != nil {
			return nil, err
		}
		for _, v := range versions {
			var ss sr.SubjectSchema
			if err := get(esc+"/"+strconv.Itoa(v), &ss); err != nil {
				return nil, err
			}
			out = append(out, saved{Subject: subject, Version: v, ID: ss.ID, Type: typeName(ss.Type), Schema: ss.Schema.Schema, References: ss.References})
		}
	}
	slices.SortFunc(out, func(a, b saved) int {
		if a.ID != b.ID {
			return a.ID - b.ID
		}
		if a.Subject != b.Subject {
			if a.Subject < b.Subject {
				return -1
			}
			return 1
		}
		return a.Version - b.Version
	})
	return out, nil
}

func typeName(t sr.SchemaType) string {
	if t == sr.TypeAvro {
		return ""
	}
	return t.String()
}

// save writes the snapshot to the file, atomically.
func (s *Server) save() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	snap, err := s.snapshot()
	if err != nil {
		return fmt.Errorf("schema registry: snapshot: %w", err)
	}
	b, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.file), 0o755); err != nil {
		return fmt.Errorf("schema registry: %w", err)
	}
	tmp := s.file + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("schema registry: save: %w", err)
	}
	if err := os.Rename(tmp, s.file); err != nil {
		return fmt.Errorf("schema registry: save: %w", err)
	}
	return nil
}

// load seeds the registry from the file, keeping every schema's ID and
// every subject's version numbers.
func (s *Server) load() (err error) {
	b, err := os.ReadFile(s.file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("schema registry: %w", err)
	}
	var snap []saved
	if err := json.Unmarshal(b, &snap); err != nil {
		return fmt.Errorf("schema registry: %s: %w", s.file, err)
	}
	defer func() {
		// srfake's SeedSchema panics on what it refuses.
		if r := recover(); r != nil {
			err = fmt.Errorf("schema registry: %s: %v", s.file, r)
		}
	}()
	seeded := map[int]bool{}
	for _, e := range snap {
		var typ sr.SchemaType
		if e.Type != "" {
			if err := typ.UnmarshalText([]byte(e.Type)); err != nil {
				return fmt.Errorf("schema registry: %s: subject %q version %d: %w", s.file, e.Subject, e.Version, err)
			}
		}
		sch := sr.Schema{Schema: e.Schema, Type: typ, References: e.References}
		if !seeded[e.ID] {
			s.reg.SeedSchema(e.Subject, e.Version, e.ID, sch)
			seeded[e.ID] = true
			continue
		}
		// The same schema under another subject: the registry gives it its
		// ID again.
		id, version, err := s.reg.RegisterSchema(e.Subject, sch)
		if err != nil || id != e.ID || version != e.Version {
			return fmt.Errorf("schema registry: %s: subject %q version %d: restored as ID %d version %d (%v), saved as ID %d", s.file, e.Subject, e.Version, id, version, err, e.ID)
		}
	}
	return nil
}
