// Package kafkaenv reads a Kafka connection's security settings from the
// environment, beside KAFKA_BROKERS, for package kstream and for
// kstreamtest's client of a cluster named by KAFKA_BROKERS:
//
//   - KAFKA_TLS: "true" (or 1, yes, on) dials the brokers with TLS, "false"
//     (0, no, off, or unset) without;
//   - KAFKA_TLS_CA_FILE: a PEM file of the certificate authorities to trust
//     in place of the system's; it turns TLS on;
//   - KAFKA_SASL_MECHANISM: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512;
//   - KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD: the credentials.
package kafkaenv

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The variables read.
const (
	TLS          = "KAFKA_TLS"
	TLSCAFile    = "KAFKA_TLS_CA_FILE"
	SASLMech     = "KAFKA_SASL_MECHANISM"
	SASLUsername = "KAFKA_SASL_USERNAME"
	SASLPassword = "KAFKA_SASL_PASSWORD"
)

// ReadTLS returns the TLS config the environment asks for, or nil when it
// asks for none. The error names the variable at fault.
func ReadTLS() (*tls.Config, error) {
	on := false
	if v := strings.TrimSpace(os.Getenv(TLS)); v != "" {
		switch strings.ToLower(v) {
		case "true", "1", "yes", "on":
			on = true
		case "false", "0", "no", "off":
		default:
			return nil, fmt.Errorf("%s=%q: want true or false", TLS, v)
		}
	}
	caFile := strings.TrimSpace(os.Getenv(TLSCAFile))
	if !on && caFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", TLSCAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s=%q: no PEM certificate in the file", TLSCAFile, caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// ReadSASL returns the SASL mechanism the environment asks for, or nil when
// it asks for none. The error names the variable at fault.
func ReadSASL() (sasl.Mechanism, error) {
	mech := strings.ToUpper(strings.TrimSpace(os.Getenv(SASLMech)))
	user, pass := os.Getenv(SASLUsername), os.Getenv(SASLPassword)
	if mech == "" {
		if user != "" || pass != "" {
			return nil, fmt.Errorf("%s or %s is set but %s is not (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", SASLUsername, SASLPassword, SASLMech)
		}
		return nil, nil
	}
	if user == "" {
		return nil, fmt.Errorf("%s=%s needs %s", SASLMech, mech, SASLUsername)
	}
	if pass == "" {
		return nil, fmt.Errorf("%s=%s needs %s", SASLMech, mech, SASLPassword)
	}
	return Mechanism(mech, user, pass)
}

// Mechanism returns the mechanism of Kafka's name mech with the
// credentials.
func Mechanism(mech, user, pass string) (sasl.Mechanism, error) {
	switch mech {
	case "PLAIN":
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("%s=%q: unknown mechanism (want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", SASLMech, mech)
}
