package examples_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// TestEveryExampleRunsOnASecuredCluster runs every example, unchanged,
// against a cluster that needs TLS and SASL (SCRAM-SHA-256), configured by
// the environment alone: KAFKA_BROKERS, KAFKA_TLS_CA_FILE and KAFKA_SASL_*.
func TestEveryExampleRunsOnASecuredCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every example again")
	}
	caPEM, server := testCertificates(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(os.PathSeparator), "./...")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./...: %v\n%s", err, out)
	}
	dirs, err := filepath.Glob("*/main.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		name := filepath.Dir(d)
		t.Run(name, func(t *testing.T) {
			// A cluster per example: they reuse topic names.
			c, err := kfake.NewCluster(kfake.NumBrokers(1),
				kfake.TLS(&tls.Config{Certificates: []tls.Certificate{server}}),
				kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "app", "app-secret"),
				kfake.GroupMinSessionTimeout(100*time.Millisecond),
				kfake.BrokerConfigs(map[string]string{"group.consumer.heartbeat.interval.ms": "250"}))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(bin, name))
			cmd.Env = append(os.Environ(),
				"KAFKA_BROKERS="+strings.Join(c.ListenAddrs(), ","),
				"KAFKA_TLS=true", "KAFKA_TLS_CA_FILE="+caFile,
				"KAFKA_SASL_MECHANISM=SCRAM-SHA-256", "KAFKA_SASL_USERNAME=app", "KAFKA_SASL_PASSWORD=app-secret")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", name, err, stdout.String(), stderr.String())
			}
			// On a cluster of KAFKA_BROKERS the examples give their
			// topics a unique suffix.
			out := uniqueSuffix.ReplaceAllStringFunc(stdout.String(), func(m string) string {
				if strings.ContainsAny(m, "0123456789") {
					return ""
				}
				return m
			})
			if line := want[name]; !strings.Contains(out, line) {
				t.Fatalf("%s did not print %q; stdout:\n%s", name, line, stdout.String())
			}
		})
	}
}

var uniqueSuffix = regexp.MustCompile(`-[0-9a-z]{10,}`)

// testCertificates returns a CA's certificate (PEM) and a server
// certificate it signed for 127.0.0.1.
func testCertificates(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "examples test CA"},
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
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
