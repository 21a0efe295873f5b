package kstream_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// testCA is a certificate authority made for one test, and a server
// certificate it signed for 127.0.0.1.
type testCA struct {
	pool   *x509.CertPool
	pem    []byte // the CA's certificate
	server tls.Certificate
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kstream test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &testCA{
		pool:   pool,
		pem:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		server: tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey},
	}
}

// caFile writes the CA's certificate to a PEM file and returns its path.
func (ca *testCA) caFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// secureCluster starts a kfake cluster with the given options (TLS, SASL)
// and a topic "secure", closed when t ends.
func secureCluster(t *testing.T, opts ...kfake.Opt) []string {
	t.Helper()
	checkNoGoroutineLeak(t)
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, "secure"), kfake.GroupMinSessionTimeout(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

var saslUsers = []struct{ mech, user, pass string }{
	{"PLAIN", "alice", "alice-secret"},
	{"SCRAM-SHA-256", "bob", "bob-secret"},
	{"SCRAM-SHA-512", "carol", "carol-secret"},
}

func saslClusterOpts() []kfake.Opt {
	opts := []kfake.Opt{kfake.EnableSASL()}
	for _, u := range saslUsers {
		opts = append(opts, kfake.Superuser(u.mech, u.user, u.pass))
	}
	return opts
}

func mechanism(mech, user, pass string) sasl.Mechanism {
	switch mech {
	case "PLAIN":
		return plain.Auth{User: user, Pass: pass}.AsMechanism()
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
	}
	return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
}

// roundTrip runs an engine with opts on brokers, sends a record to
// "secure" through its producer and waits for a stream of the engine to
// handle it: both clients connected.
func roundTrip(t *testing.T, brokers []string, opts ...kstream.Option) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eng, err := kstream.NewEngine(append([]kstream.Option{kstream.Brokers(brokers...), kstream.Logger(testLogger(t)), kstream.StopTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	s, err := kstream.NewStream(codec.String(), kstream.Topics("secure"), kstream.Group("secure"),
		kstream.ClientOptions(kgo.HeartbeatInterval(100*time.Millisecond), kgo.FetchMaxWait(100*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	eng.Add(s.Handle(func(_ context.Context, rec kstream.Record[string]) error {
		select {
		case got <- rec.Value:
		default:
		}
		return nil
	}))
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer eng.Stop(context.Background())
	if _, err := eng.Send(ctx, "secure", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-got:
		if v != "hello" {
			t.Fatalf("got %q", v)
		}
	case <-ctx.Done():
		t.Fatalf("the stream handled nothing: %+v", eng.Health())
	}
}

// connectErr returns the errors of Engine.Start and Stream.Open with opts,
// checking that each comes at once.
func connectErr(t *testing.T, brokers []string, opts ...kstream.Option) (startErr, openErr error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := []kstream.Option{kstream.Brokers(brokers...), kstream.Logger(testLogger(t))}
	eng, err := kstream.NewEngine(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	startErr = eng.Start(ctx)
	if startErr == nil {
		eng.Stop(ctx)
	}
	s, err := kstream.NewStream(codec.String(), append(append(base, kstream.Topics("secure"), kstream.Group("g")), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	openErr = s.Open(ctx)
	if openErr == nil {
		s.Close()
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the failures took %v, want at once", took)
	}
	return startErr, openErr
}

func wantErrNaming(t *testing.T, what string, err error, words ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: %v, want it to say %q", what, err, w)
		}
	}
}

func TestTLSOption(t *testing.T) {
	ca := newTestCA(t)
	brokers := secureCluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{ca.server}}))
	roundTrip(t, brokers, kstream.TLS(&tls.Config{RootCAs: ca.pool}))
}

func TestTLSFromEnvironment(t *testing.T) {
	ca := newTestCA(t)
	brokers := secureCluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{ca.server}}))
	t.Setenv("KAFKA_TLS", "true")
	t.Setenv("KAFKA_TLS_CA_FILE", ca.caFile(t))
	roundTrip(t, brokers)
}

func TestTLSBadCertificate(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	brokers := secureCluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{ca.server}}))
	startErr, openErr := connectErr(t, brokers, kstream.TLS(&tls.Config{RootCAs: other.pool}))
	for what, err := range map[string]error{"Start": startErr, "Open": openErr} {
		wantErrNaming(t, what, err, "TLS", "certificate", "KAFKA_TLS_CA_FILE")
	}
	// Plaintext against the TLS listener.
	startErr, openErr = connectErr(t, brokers)
	for what, err := range map[string]error{"Start (plaintext)": startErr, "Open (plaintext)": openErr} {
		wantErrNaming(t, what, err, "TLS")
	}
	// TLS against a plaintext listener: Kafka reads the ClientHello as a
	// request far over its size limit and closes the connection (kfake
	// would wait for the rest of it), so a listener that does that stands
	// for a plaintext broker.
	plainBrokers := closingListener(t)
	startErr, openErr = connectErr(t, plainBrokers, kstream.TLS(&tls.Config{RootCAs: ca.pool}))
	for what, err := range map[string]error{"Start (TLS to plaintext)": startErr, "Open (TLS to plaintext)": openErr} {
		wantErrNaming(t, what, err, "TLS", "does its listener on this port speak TLS")
	}
}

// closingListener accepts connections, reads the first four bytes (a Kafka
// request's size) and closes them, as a Kafka broker does with a request
// over socket.request.max.bytes.
func closingListener(t *testing.T) []string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			var size [4]byte
			c.Read(size[:])
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return []string{l.Addr().String()}
}

func TestSASLOption(t *testing.T) {
	brokers := secureCluster(t, saslClusterOpts()...)
	for _, u := range saslUsers {
		t.Run(u.mech, func(t *testing.T) {
			roundTrip(t, brokers, kstream.SASL(mechanism(u.mech, u.user, u.pass)))
		})
	}
}

func TestSASLFromEnvironment(t *testing.T) {
	brokers := secureCluster(t, saslClusterOpts()...)
	for _, u := range saslUsers {
		t.Run(u.mech, func(t *testing.T) {
			t.Setenv("KAFKA_SASL_MECHANISM", u.mech)
			t.Setenv("KAFKA_SASL_USERNAME", u.user)
			t.Setenv("KAFKA_SASL_PASSWORD", u.pass)
			roundTrip(t, brokers)
		})
	}
}

func TestSASLBadCredentials(t *testing.T) {
	brokers := secureCluster(t, saslClusterOpts()...)
	for _, u := range saslUsers {
		t.Run(u.mech, func(t *testing.T) {
			startErr, openErr := connectErr(t, brokers, kstream.SASL(mechanism(u.mech, u.user, "wrong")))
			for what, err := range map[string]error{"Start": startErr, "Open": openErr} {
				wantErrNaming(t, what, err, "SASL authentication failed", "credentials")
			}
		})
	}
	t.Run("env", func(t *testing.T) {
		t.Setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
		t.Setenv("KAFKA_SASL_USERNAME", "nobody")
		t.Setenv("KAFKA_SASL_PASSWORD", "x")
		startErr, openErr := connectErr(t, brokers)
		for what, err := range map[string]error{"Start": startErr, "Open": openErr} {
			wantErrNaming(t, what, err, "SASL authentication failed", "KAFKA_SASL_USERNAME")
		}
	})
}

// TLS and SASL together, from the environment alone: what every example
// gets against a secured cluster.
func TestTLSAndSASLFromEnvironment(t *testing.T) {
	ca := newTestCA(t)
	brokers := secureCluster(t, append(saslClusterOpts(), kfake.TLS(&tls.Config{Certificates: []tls.Certificate{ca.server}}))...)
	t.Setenv("KAFKA_TLS_CA_FILE", ca.caFile(t))
	t.Setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("KAFKA_SASL_USERNAME", "carol")
	t.Setenv("KAFKA_SASL_PASSWORD", "carol-secret")
	roundTrip(t, brokers)
}

func TestSecurityEnvironmentErrors(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"KAFKA_TLS": "maybe"}, "KAFKA_TLS"},
		{map[string]string{"KAFKA_TLS_CA_FILE": "/nonexistent/ca.pem"}, "KAFKA_TLS_CA_FILE"},
		{map[string]string{"KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SASL_MECHANISM"},
		{map[string]string{"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SASL_USERNAME"},
		{map[string]string{"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SASL_MECHANISM"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			eng, err := kstream.NewEngine(kstream.Brokers("127.0.0.1:1"))
			if err != nil {
				t.Fatal(err)
			}
			err = eng.Start(context.Background())
			wantErrNaming(t, "Start", err, tc.want)
			if !errorsIsInvalid(err) {
				t.Errorf("Start: %v, want ErrInvalidOption", err)
			}
		})
	}
}

func TestSecurityOptionsNil(t *testing.T) {
	for _, o := range []kstream.Option{kstream.TLS(nil), kstream.SASL(nil)} {
		if _, err := kstream.NewEngine(o); !errorsIsInvalid(err) {
			t.Errorf("nil TLS or SASL: %v, want ErrInvalidOption", err)
		}
	}
}

func errorsIsInvalid(err error) bool { return errors.Is(err, kstream.ErrInvalidOption) }

// kstreamtest reaches a secured cluster named by KAFKA_BROKERS with the
// same environment, so the examples (which start their cluster with
// kstreamtest) run against it unchanged.
func TestKstreamtestOnSecuredClusterFromEnvironment(t *testing.T) {
	ca := newTestCA(t)
	brokers := secureCluster(t, append(saslClusterOpts(), kfake.TLS(&tls.Config{Certificates: []tls.Certificate{ca.server}}))...)
	t.Setenv("KAFKA_BROKERS", strings.Join(brokers, ","))
	t.Setenv("KAFKA_TLS", "true")
	t.Setenv("KAFKA_TLS_CA_FILE", ca.caFile(t))
	t.Setenv("KAFKA_SASL_MECHANISM", "PLAIN")
	t.Setenv("KAFKA_SASL_USERNAME", "alice")
	t.Setenv("KAFKA_SASL_PASSWORD", "alice-secret")
	c := kstreamtest.NewCluster(t, kstreamtest.Topic("made-by-kit", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := kstreamtest.ProduceValues(ctx, c, "made-by-kit", 1, codec.String(), "a", "b"); err != nil {
		t.Fatal(err)
	}
	if got := kstreamtest.ReadRecords(t, c, "made-by-kit", codec.String(), 2, 10*time.Second); len(got) != 2 {
		t.Fatalf("read back %d records", len(got))
	}
	roundTrip(t, c.Brokers())
}

// TLS and SASL given to a stream ranged directly (no engine).
func TestTLSAndSASLOptionsOnAStream(t *testing.T) {
	ca := newTestCA(t)
	brokers := secureCluster(t, append(saslClusterOpts(), kfake.TLS(&tls.Config{Certificates: []tls.Certificate{ca.server}}))...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	secure := []kstream.Option{kstream.TLS(&tls.Config{RootCAs: ca.pool}), kstream.SASL(mechanism("SCRAM-SHA-256", "bob", "bob-secret"))}
	eng, err := kstream.NewEngine(append([]kstream.Option{kstream.Brokers(brokers...), kstream.Logger(testLogger(t))}, secure...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer eng.Stop(context.Background())
	if _, err := eng.Send(ctx, "secure", []byte("direct")); err != nil {
		t.Fatal(err)
	}
	s, err := kstream.NewStream(codec.String(), append([]kstream.Option{kstream.Brokers(brokers...), kstream.Topics("secure"), kstream.Logger(testLogger(t))}, secure...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := take(t, ctx, s, 1); got[0].Value != "direct" {
		t.Fatalf("got %q", got[0].Value)
	}
}
