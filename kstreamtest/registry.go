package kstreamtest

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/gokstreams/kstreams/internal/srserver"
)

// The schema registry beside a Cluster: the one at SCHEMA_REGISTRY_URL when
// that is set, else an in-process one (franz-go's srfake, a Confluent
// Schema Registry REST API on 127.0.0.1), started with the cluster and
// stopped by Close. The in-process registry keeps its schemas in memory,
// accepts every schema as compatible, and answers the requests the
// schema-registry codecs and franz-go's sr client make.

// startRegistry starts the in-process registry, unless SCHEMA_REGISTRY_URL
// names one.
func (c *Cluster) startRegistry() error {
	if env := strings.TrimSpace(os.Getenv("SCHEMA_REGISTRY_URL")); env != "" {
		c.registryURL = env
		return nil
	}
	s, err := srserver.Start("127.0.0.1:0", "")
	if err != nil {
		return fmt.Errorf("kstreamtest: start in-process schema registry: %w", err)
	}
	c.registry = s
	c.registryURL = s.URL()
	return nil
}

// RegistryURL returns the base URL of the cluster's schema registry: the
// value of SCHEMA_REGISTRY_URL when set, else the in-process registry's.
func (c *Cluster) RegistryURL() string { return c.registryURL }

// Registry returns the in-process schema registry, to seed, inspect or
// intercept (srfake's SeedSchema, GetSchema, Intercept), or nil when the
// registry is the one at SCHEMA_REGISTRY_URL.
func (c *Cluster) Registry() *srfake.Registry {
	if c.registry == nil {
		return nil
	}
	return c.registry.Registry()
}

// RegistryClient returns a franz-go schema registry client for the
// cluster's registry: sr.URLs set to RegistryURL (split at commas), a 5s
// HTTP timeout, then opts. Its idle connections are closed by Close.
func (c *Cluster) RegistryClient(opts ...sr.ClientOpt) (*sr.Client, error) {
	var urls []string
	for _, u := range strings.Split(c.registryURL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	base := []sr.ClientOpt{
		sr.URLs(urls...),
		sr.HTTPClient(&http.Client{Transport: c.registryTransport, Timeout: 5 * time.Second}),
	}
	cl, err := sr.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kstreamtest: schema registry client: %w", err)
	}
	return cl, nil
}

// NewRegistryClient is RegistryClient for a test: it fails t if the client
// cannot be made.
func NewRegistryClient(t testing.TB, c *Cluster, opts ...sr.ClientOpt) *sr.Client {
	t.Helper()
	cl, err := c.RegistryClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// RegistryOutage is an in-process registry stopped by StopRegistry.
type RegistryOutage struct {
	c *Cluster
	t testing.TB
}

// StopRegistry stops the in-process schema registry as a crashed registry
// stops: its listener and every connection close, and requests fail with
// "connection refused" (schema-registry codecs report them wrapping
// codec.ErrUnavailable) until Restart, or the end of the test, starts it
// again at the same URL with the same schemas. It fails t when the
// registry is the one at SCHEMA_REGISTRY_URL.
func (c *Cluster) StopRegistry(t testing.TB) *RegistryOutage {
	t.Helper()
	if c.registry == nil {
		t.Fatalf("kstreamtest: StopRegistry needs the in-process schema registry, but this test runs against the one at SCHEMA_REGISTRY_URL (%s)", c.registryURL)
	}
	c.registry.Stop()
	o := &RegistryOutage{c: c, t: t}
	t.Cleanup(func() {
		if err := c.registry.Restart(); err != nil {
			t.Errorf("kstreamtest: restart the schema registry at the end of the test: %v", err)
		}
	})
	return o
}

// Restart starts the registry again at the same URL, with the schemas it
// had. It fails the test if the address cannot be listened on again.
// Restarting a running registry does nothing.
func (o *RegistryOutage) Restart() {
	o.t.Helper()
	if err := o.c.registry.Restart(); err != nil {
		o.t.Fatalf("kstreamtest: %v", err)
	}
}
