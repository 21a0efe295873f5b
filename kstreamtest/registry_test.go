package kstreamtest_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/gokstreams/kstreams/kstreamtest"
)

func TestRegistryBesideTheCluster(t *testing.T) {
	t.Setenv("SCHEMA_REGISTRY_URL", "")
	c := kstreamtest.NewCluster(t)
	if c.Registry() == nil || c.RegistryURL() == "" {
		t.Fatalf("no in-process registry: Registry() = %v, RegistryURL() = %q", c.Registry(), c.RegistryURL())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := kstreamtest.NewRegistryClient(t, c)
	id, err := cl.RegisterSchema(ctx, "orders-value", sr.Schema{Schema: `"string"`}, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := c.Registry().GetSchema("orders-value", 1); !ok || got.ID != id {
		t.Fatalf("the registry does not have what the client registered: %+v", got)
	}

	outage := c.StopRegistry(t)
	if _, err := cl.SchemaByID(ctx, id); err == nil {
		t.Fatal("a stopped registry answered")
	}
	outage.Restart()
	if s, err := cl.SchemaByID(ctx, id); err != nil || s.Schema != `"string"` {
		t.Fatalf("after Restart, at the same URL: %+v, %v", s, err)
	}
}

// With SCHEMA_REGISTRY_URL set, the cluster uses that registry and starts
// none.
func TestRegistryFromEnvironment(t *testing.T) {
	t.Setenv("SCHEMA_REGISTRY_URL", "")
	other := kstreamtest.NewCluster(t)
	t.Setenv("SCHEMA_REGISTRY_URL", other.RegistryURL())
	c := kstreamtest.NewCluster(t)
	if c.Registry() != nil || c.RegistryURL() != other.RegistryURL() {
		t.Fatalf("Registry() = %v, RegistryURL() = %q; want nil and %q", c.Registry(), c.RegistryURL(), other.RegistryURL())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := kstreamtest.NewRegistryClient(t, c).RegisterSchema(ctx, "s", sr.Schema{Schema: `"long"`}, -1, -1); err != nil {
		t.Fatal(err)
	}
	if !other.Registry().SubjectExists("s") {
		t.Fatal("the schema did not reach the registry named by SCHEMA_REGISTRY_URL")
	}
}

// The registry and its connections are gone once the cluster is closed.
func TestRegistryLeavesNoGoroutine(t *testing.T) {
	t.Setenv("SCHEMA_REGISTRY_URL", "")
	base := runtime.NumGoroutine()
	c, err := kstreamtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := c.RegistryClient()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.Subjects(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := cl.Subjects(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the registry answered, or hung, after Close: %v", err)
	}
	kstreamtest.WaitFor(t, 10*time.Second, "the goroutines of the cluster and its registry to end", func() bool {
		return runtime.NumGoroutine() <= base
	})
}
