// Secure-cluster runs an engine against a Kafka cluster that needs TLS and
// SASL: the kstream.TLS and kstream.SASL options, and the same settings from
// the environment.
//
// With KAFKA_BROKERS unset it starts an in-process cluster whose listener
// speaks only TLS, with a certificate authority made for the run, and which
// authenticates every connection with SASL SCRAM-SHA-256. The program then:
//
//  1. runs an engine with kstream.TLS(&tls.Config{RootCAs: the CA}) and
//     kstream.SASL(SCRAM-SHA-256 of a user the cluster knows), whose
//     streams inherit both; it sends three records through the engine and
//     a stream of the engine handles them;
//
//  2. starts engines with a wrong password, and with the system's trusted
//     roots in place of the run's CA, and prints their errors: each fails
//     at once, naming what is wrong, rather than hanging.
//
//     go run ./examples/secure-cluster
//
// With KAFKA_BROKERS set it uses that cluster with no options of its own:
// TLS and SASL come from the environment, as for every example
// (KAFKA_TLS=true or KAFKA_TLS_CA_FILE, KAFKA_SASL_MECHANISM,
// KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD), with a topic and group named
// for the run, deleted at the end. Step 2 needs a cluster of its own and is
// skipped.
//
//	KAFKA_BROKERS=broker:9093 KAFKA_TLS_CA_FILE=ca.pem \
//	KAFKA_SASL_MECHANISM=SCRAM-SHA-512 KAFKA_SASL_USERNAME=app KAFKA_SASL_PASSWORD=... \
//	go run ./examples/secure-cluster
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// The user the in-process cluster knows.
const (
	user     = "app"
	password = "app-secret"
	nRecords = 3
)

func main() {
	verbose := flag.Bool("v", false, "show the SDK's info logs")
	flag.Parse()
	level := slog.LevelError // the failed connections of step 2 are expected
	if *verbose {
		level = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "secure-cluster:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	topic, group := "secure-events", "secure-service"
	var opts []kstream.Option // the engine's: brokers, TLS, SASL
	var caPool *x509.CertPool
	var brokers []string
	if external := strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) != ""; external {
		suffix := fmt.Sprintf("-%d", time.Now().UnixNano())
		topic, group = topic+suffix, group+suffix
		// kstreamtest reads KAFKA_TLS* and KAFKA_SASL_* as kstream does.
		c, err := kstreamtest.Start(kstreamtest.Topic(topic, 1))
		if err != nil {
			return err
		}
		defer c.Close()
		defer c.Admin().DeleteTopics(context.WithoutCancel(ctx), topic)
		defer c.Admin().DeleteGroups(context.WithoutCancel(ctx), group)
		brokers = c.Brokers()
		fmt.Fprintf(w, "cluster: %v (KAFKA_BROKERS; TLS and SASL from the environment)\n", brokers)
	} else {
		ca, server, err := newCA()
		if err != nil {
			return err
		}
		caPool = ca
		c, err := kfake.NewCluster(
			kfake.NumBrokers(1),
			kfake.SeedTopics(1, topic),
			kfake.TLS(&tls.Config{Certificates: []tls.Certificate{server}}),
			kfake.EnableSASL(),
			kfake.Superuser("SCRAM-SHA-256", user, password),
		)
		if err != nil {
			return fmt.Errorf("start in-process cluster: %w", err)
		}
		defer c.Close()
		brokers = c.ListenAddrs()
		opts = []kstream.Option{
			// RootCAs: trust the run's CA (Kafka's ssl.truststore). An
			// empty ServerName is set to the host dialed.
			kstream.TLS(&tls.Config{RootCAs: caPool}),
			kstream.SASL(scram.Auth{User: user, Pass: password}.AsSha256Mechanism()),
		}
		fmt.Fprintf(w, "cluster: %v (in-process; TLS with the run's CA, SASL SCRAM-SHA-256)\n", brokers)
	}

	if err := roundTrip(ctx, w, brokers, topic, group, opts); err != nil {
		return err
	}
	if caPool == nil {
		return nil
	}

	// Step 2: what a wrong setting looks like.
	wrong := []struct {
		what string
		opts []kstream.Option
	}{
		{"wrong password", []kstream.Option{
			kstream.TLS(&tls.Config{RootCAs: caPool}),
			kstream.SASL(scram.Auth{User: user, Pass: "not-" + password}.AsSha256Mechanism()),
		}},
		{"untrusted certificate", []kstream.Option{
			kstream.TLS(&tls.Config{}), // the system's roots, which lack the run's CA
			kstream.SASL(scram.Auth{User: user, Pass: password}.AsSha256Mechanism()),
		}},
	}
	for _, c := range wrong {
		eng, err := kstream.NewEngine(append([]kstream.Option{kstream.Brokers(brokers...)}, c.opts...)...)
		if err != nil {
			return err
		}
		start := time.Now()
		err = eng.Start(ctx)
		if err == nil {
			eng.Stop(ctx)
			return fmt.Errorf("%s: the engine started", c.what)
		}
		fmt.Fprintf(w, "%s: Start failed after %v: %v\n", c.what, time.Since(start).Round(100*time.Millisecond), err)
	}
	return nil
}

// roundTrip runs an engine with opts whose stream handles the records its
// producer sends.
func roundTrip(ctx context.Context, w io.Writer, brokers []string, topic, group string, opts []kstream.Option) error {
	eng, err := kstream.NewEngine(append([]kstream.Option{kstream.Brokers(brokers...)}, opts...)...)
	if err != nil {
		return err
	}
	// The stream names neither brokers nor security: it inherits the
	// engine's.
	events, err := kstream.NewStream(codec.String(), kstream.Topics(topic), kstream.Group(group), kstream.Name("events"))
	if err != nil {
		return err
	}
	handled := make(chan string, nRecords)
	events.Handle(func(_ context.Context, rec kstream.Record[string]) error {
		handled <- rec.Value
		return nil
	})
	if err := eng.Add(events); err != nil {
		return err
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	defer eng.Stop(context.WithoutCancel(ctx))
	for i := range nRecords {
		if _, err := eng.Send(ctx, topic, fmt.Appendf(nil, "event-%d", i+1)); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "sent %d records to %q\n", nRecords, topic)
	for range nRecords {
		select {
		case v := <-handled:
			fmt.Fprintf(w, "handled %s\n", v)
		case <-ctx.Done():
			return fmt.Errorf("records not handled: %w", context.Cause(ctx))
		}
	}
	if err := eng.Stop(ctx); err != nil {
		return err
	}
	fmt.Fprintf(w, "handled all %d records over the secured connection\n", nRecords)
	return nil
}

// newCA makes a certificate authority for the run and a server certificate
// it signed for 127.0.0.1, the in-process cluster's address.
func newCA() (*x509.CertPool, tls.Certificate, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "secure-cluster example CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
