package srserver_test

import (
	"context"
	"net/http"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/gokstreams/kstreams/internal/srserver"
)

func client(t *testing.T, url string) *sr.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	cl, err := sr.NewClient(sr.URLs(url), sr.HTTPClient(&http.Client{Transport: tr, Timeout: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// Schemas registered through the API come back after a restart of the
// process with the same IDs, subjects and versions.
func TestFileKeepsSchemasAcrossRestarts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	file := filepath.Join(t.TempDir(), "data", "schema-registry.json")
	s, err := srserver.Start("127.0.0.1:0", file)
	if err != nil {
		t.Fatal(err)
	}
	cl := client(t, s.URL())
	avro := sr.Schema{Schema: `{"type":"record","name":"A","fields":[{"name":"x","type":"long"}]}`}
	money := sr.Schema{Schema: `syntax = "proto3"; message Money { int64 units = 1; }`, Type: sr.TypeProtobuf}
	var want []sr.SubjectSchema
	for _, r := range []struct {
		subject string
		schema  sr.Schema
	}{
		{"a-value", avro},
		{"money.proto", money},
		{"b-value", avro}, // the same schema: the same ID under a second subject
		{"order-value", sr.Schema{Type: sr.TypeProtobuf, Schema: `syntax = "proto3"; import "money.proto"; message Order { Money m = 1; }`,
			References: []sr.SchemaReference{{Name: "money.proto", Subject: "money.proto", Version: 1}}}},
		{"a-value", sr.Schema{Schema: `{"type":"record","name":"A","fields":[{"name":"x","type":"long"},{"name":"y","type":"long","default":0}]}`}},
	} {
		ss, err := cl.CreateSchema(ctx, r.subject, r.schema)
		if err != nil {
			t.Fatalf("register %s: %v", r.subject, err)
		}
		want = append(want, ss)
	}
	if want[0].ID != want[2].ID {
		t.Fatalf("the same schema under two subjects got IDs %d and %d", want[0].ID, want[2].ID)
	}
	if err := s.SaveErr(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	again, err := srserver.Start("127.0.0.1:0", file)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	cl = client(t, again.URL())
	for _, w := range want {
		got, err := cl.SchemaByVersion(ctx, w.Subject, w.Version)
		if err != nil {
			t.Fatalf("%s version %d after the restart: %v", w.Subject, w.Version, err)
		}
		if !reflect.DeepEqual(w, got) {
			t.Errorf("%s version %d after the restart:\n got %+v\nwant %+v", w.Subject, w.Version, got, w)
		}
		byID, err := cl.SchemaByID(ctx, w.ID)
		if err != nil || byID.Schema != w.Schema.Schema {
			t.Errorf("schema ID %d after the restart: %v, %v", w.ID, byID, err)
		}
	}
	// New registrations go on from the highest ID.
	ss, err := cl.CreateSchema(ctx, "c-value", sr.Schema{Schema: `"string"`})
	if err != nil || ss.ID <= want[len(want)-1].ID {
		t.Fatalf("a new schema after the restart: %+v, %v", ss, err)
	}
}

// A stopped server refuses connections; restarted, it answers at the same
// URL with the same schemas.
func TestStopAndRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := srserver.Start("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cl := client(t, s.URL())
	id, err := cl.RegisterSchema(ctx, "s", sr.Schema{Schema: `"string"`}, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if !s.Stopped() {
		t.Fatal("Stopped() = false after Stop")
	}
	if _, err := cl.SchemaByID(ctx, id); err == nil {
		t.Fatal("a stopped registry answered")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if got, err := cl.SchemaByID(ctx, id); err != nil || got.Schema != `"string"` {
		t.Fatalf("after Restart: %+v, %v", got, err)
	}
}
