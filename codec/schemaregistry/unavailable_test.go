package schemaregistry_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/codec/schemaregistry"
	"github.com/gokstreams/kstreams/codec/schemaregistry/internal/testpb"
)

// unavailable checks that err says "retry later": the codec's *Error
// naming subject and ID, wrapping codec.ErrUnavailable and none of the
// bad-record causes.
func unavailable(t *testing.T, err error, subject string, id int) {
	t.Helper()
	var e *schemaregistry.Error
	if !errors.As(err, &e) || e.Subject != subject || e.ID != id {
		t.Fatalf("error %v: want a *schemaregistry.Error naming subject %q and ID %d", err, subject, id)
	}
	if !errors.Is(err, codec.ErrUnavailable) || !schemaregistry.Unavailable(err) {
		t.Fatalf("error %q does not wrap codec.ErrUnavailable", err)
	}
	for _, bad := range []error{schemaregistry.ErrUnknownSchema, schemaregistry.ErrSchemaMismatch, schemaregistry.ErrInvalidValue} {
		if errors.Is(err, bad) {
			t.Fatalf("unavailable error %q also wraps %v", err, bad)
		}
	}
}

// A registry that is stopped refuses connections: every decode of a new ID
// and every first encode is unavailable, nothing of it is cached, and once
// the registry is back the same records decode.
func TestRegistryStoppedIsUnavailableNotBadRecord(t *testing.T) {
	reg := newRegistry(t)
	cl := reg.client(t)
	id := reg.register(t, "orders-value", sr.Schema{Schema: orderV1Schema})
	rec := append([]byte{0, 0, 0, 0, byte(id)}, mustAvro(t, orderV1Schema, orderV1{ID: 1, Customer: "a"})...)
	dec, err := schemaregistry.Avro[orderV1](cl, "orders-value") // reader: the subject's latest
	if err != nil {
		t.Fatal(err)
	}
	enc, err := schemaregistry.Avro[orderV1](cl, "orders-value", schemaregistry.Schema(orderV1Schema), schemaregistry.AutoRegister())
	if err != nil {
		t.Fatal(err)
	}

	reg.stop()
	for range 3 {
		_, err := dec.Decode(rec)
		unavailable(t, err, "orders-value", id)
		_, err = enc.Encode(orderV1{ID: 2})
		unavailable(t, err, "orders-value", 0)
	}
	// Bad records are still told apart without the registry.
	_, err = dec.Decode([]byte("plain text"))
	badInput(t, err, "orders-value", 0, schemaregistry.ErrMagicByte)

	reg.start(t)
	got, err := dec.Decode(rec)
	if err != nil || got.ID != 1 {
		t.Fatalf("after the registry came back: %+v, %v", got, err)
	}
	if _, err := enc.Encode(orderV1{ID: 2}); err != nil {
		t.Fatalf("Encode after the registry came back: %v", err)
	}
}

// What the registry answers decides: a definite "no such schema" is the
// record's; anything that is not a registry's definite answer is
// unavailable.
func TestRegistryAnswersClassified(t *testing.T) {
	rec := append([]byte{0, 0, 0, 0, 42}, 2, 'x')
	for _, tc := range []struct {
		name        string
		status      int
		body        string
		unavailable bool
		want        error // the cause, when not unavailable
	}{
		{"503 with a registry error", 503, `{"error_code":50003,"message":"Error forwarding request to primary"}`, true, nil},
		{"500 plain text", 500, "internal error", true, nil},
		{"502 from a proxy", 502, "<html>Bad Gateway</html>", true, nil},
		{"404 without a registry error code", 404, "<html>Not Found</html>", true, nil},
		{"401", 401, `{"error_code":40101,"message":"Unauthorized"}`, true, nil},
		{"403", 403, `{"error_code":40301,"message":"User cannot access the resource"}`, true, nil},
		{"429", 429, `{"error_code":42901,"message":"Too many requests"}`, true, nil},
		{"200 that is not a registry's", 200, "<html>hello</html>", true, nil},
		{"404 schema not found", 404, `{"error_code":40403,"message":"Schema 42 not found"}`, false, schemaregistry.ErrUnknownSchema},
		{"422 with a registry error", 422, `{"error_code":42202,"message":"The specified id is not valid"}`, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			}))
			t.Cleanup(srv.Close)
			c, err := schemaregistry.Avro[orderV1](newClient(t, srv.URL), "s", schemaregistry.Schema(orderV1Schema))
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Decode(rec)
			if tc.unavailable {
				unavailable(t, err, "s", 42)
				if !strings.Contains(err.Error(), "schema ID 42") {
					t.Fatalf("error %q does not name the ID", err)
				}
				return
			}
			if err == nil || errors.Is(err, codec.ErrUnavailable) {
				t.Fatalf("error %v: want a bad-record error", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %q does not wrap %v", err, tc.want)
			}
			var re *sr.ResponseError
			if !errors.As(err, &re) || re.StatusCode != tc.status {
				t.Fatalf("error %q does not wrap the registry's answer", err)
			}
		})
	}
}

// A registry that does not answer in time is unavailable.
func TestRegistryTimeoutIsUnavailable(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	c, err := schemaregistry.Avro[orderV1](newClient(t, srv.URL), "s", schemaregistry.Schema(orderV1Schema), schemaregistry.RequestTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Decode([]byte{0, 0, 0, 0, 1, 2})
	unavailable(t, err, "s", 1)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Decode took %v with a 50ms request timeout", d)
	}
}

// Encoding: a registry that refuses the schema is the codec's problem, not
// unavailability; a subject that has no version yet is unavailable (it
// mends by registering, without a restart).
func TestEncodeErrorsClassified(t *testing.T) {
	reg := newRegistry(t)
	cl := reg.client(t)
	reg.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/subjects/strict/versions") {
			w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"error_code":409,"message":"Schema being registered is incompatible with an earlier schema"}`))
			return true
		}
		return false
	})
	refused, err := schemaregistry.Avro[orderV1](cl, "strict", schemaregistry.Schema(orderV1Schema), schemaregistry.AutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	_, err = refused.Encode(orderV1{})
	if err == nil || errors.Is(err, codec.ErrUnavailable) || !strings.Contains(err.Error(), "incompatible") || !strings.Contains(err.Error(), `"strict"`) {
		t.Fatalf("Encode with a refused schema: %v", err)
	}
	empty, err := schemaregistry.Avro[orderV1](cl, "empty")
	if err != nil {
		t.Fatal(err)
	}
	_, err = empty.Encode(orderV1{})
	unavailable(t, err, "empty", 0)
	reg.register(t, "empty", sr.Schema{Schema: orderV1Schema})
	if _, err := empty.Encode(orderV1{}); err != nil {
		t.Fatalf("Encode after the subject got a version: %v", err)
	}
}

// DecodeContext gives up waiting for the registry when its context ends
// (as a stream's does on Close), for the goroutine that asked the registry
// and for one waiting for the same ID, with an unavailable error.
func TestDecodeContextEndsTheWait(t *testing.T) {
	release := make(chan struct{})
	asked := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	c, err := schemaregistry.Avro[orderV1](newClient(t, srv.URL), "s", schemaregistry.Schema(orderV1Schema))
	if err != nil {
		t.Fatal(err)
	}
	cd := c.(codec.ContextDecoder[orderV1])
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() {
		_, err := cd.DecodeContext(ctx, []byte{0, 0, 0, 0, 1, 2})
		errs <- err
	}()
	<-asked // the first decode is waiting on the registry
	go func() {
		_, err := cd.DecodeContext(ctx, []byte{0, 0, 0, 0, 1, 2})
		errs <- err
	}()
	cancel()
	for range 2 {
		select {
		case err := <-errs:
			unavailable(t, err, "s", 1)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error %q does not wrap context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("DecodeContext still waiting 10s after its context ended")
		}
	}
}

// Every codec is a ContextDecoder and an AppendEncoder.
func TestCodecsImplementTheOptionalInterfaces(t *testing.T) {
	cl := newRegistry(t).client(t)
	a, _ := schemaregistry.Avro[orderV1](cl, "s")
	p, _ := schemaregistry.Protobuf[*testpb.Order](cl, "s")
	j, _ := schemaregistry.JSONSchema[person](cl, "s")
	for name, c := range map[string]any{"Avro": a, "Protobuf": p, "JSONSchema": j} {
		switch c.(type) {
		case codec.ContextDecoder[orderV1], codec.ContextDecoder[*testpb.Order], codec.ContextDecoder[person]:
		default:
			t.Errorf("%s is not a codec.ContextDecoder", name)
		}
		switch c.(type) {
		case codec.AppendEncoder[orderV1], codec.AppendEncoder[*testpb.Order], codec.AppendEncoder[person]:
		default:
			t.Errorf("%s is not a codec.AppendEncoder", name)
		}
	}
}
