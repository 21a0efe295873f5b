// Security: TLS and SASL, from options or from the environment.

package kstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/gokstreams/kstreams/internal/kafkaenv"
)

// TLS dials the brokers with TLS, using cfg (cloned for each connection;
// an empty ServerName is set to the host dialed, so cfg need not name the
// broker), overriding the default of plaintext. It is Kafka's
// security.protocol=SSL (SASL_SSL with SASL), and franz-go's
// kgo.DialTLSConfig; cfg's RootCAs are ssl.truststore's certificates and
// its Certificates the client's own for mutual TLS (ssl.keystore). A nil
// cfg is an error: use &tls.Config{} for the system's trusted roots.
//
// Without the option, a stream uses its engine's, else the environment's:
// KAFKA_TLS=true turns TLS on, with the system's roots, and
// KAFKA_TLS_CA_FILE names a PEM file of the certificate authorities to
// trust instead (and turns TLS on too). It is an option of both: given to an
// engine, it is used by its producer and inherited by its streams.
func TLS(cfg *tls.Config) Option {
	return option{name: "TLS", scope: forBoth, fn: func(c *config) error {
		if cfg == nil {
			return fmt.Errorf("%w: TLS: nil config (use &tls.Config{} for the system's trusted roots)", ErrInvalidOption)
		}
		c.tls = cfg.Clone()
		return nil
	}}
}

// SASL authenticates every connection to the brokers with m, overriding
// the default of no authentication: Kafka's sasl.mechanism and
// sasl.jaas.config, franz-go's kgo.SASL. franz-go's packages provide the
// mechanisms: plain.Auth{User: u, Pass: p}.AsMechanism() (PLAIN; use it with
// TLS, it sends the password as is), scram.Auth{...}.AsSha256Mechanism()
// and AsSha512Mechanism() (SCRAM-SHA-256, SCRAM-SHA-512), oauth and aws.
//
// Without the option, a stream uses its engine's, else the environment's:
// KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512) with
// KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD. It is an option of both:
// given to an engine, it is used by its producer and inherited by its
// streams.
func SASL(m sasl.Mechanism) Option {
	return option{name: "SASL", scope: forBoth, fn: func(c *config) error {
		if m == nil {
			return fmt.Errorf("%w: SASL: nil mechanism", ErrInvalidOption)
		}
		c.sasl = m
		return nil
	}}
}

// security returns the client options of a stream's (or an engine's) TLS
// and SASL: its own, else its engine's, else the environment's. An
// environment that cannot be read is an error wrapping ErrInvalidOption
// that names the variable.
func (c *config) security(in inherited) ([]kgo.Opt, error) {
	tlsCfg, mech := c.tls, c.sasl
	if tlsCfg == nil {
		tlsCfg = in.tls
	}
	if mech == nil {
		mech = in.sasl
	}
	var err error
	if tlsCfg == nil {
		if tlsCfg, err = kafkaenv.ReadTLS(); err != nil {
			return nil, fmt.Errorf("%w: environment: %v", ErrInvalidOption, err)
		}
	}
	if mech == nil {
		if mech, err = kafkaenv.ReadSASL(); err != nil {
			return nil, fmt.Errorf("%w: environment: %v", ErrInvalidOption, err)
		}
	}
	var opts []kgo.Opt
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	return opts, nil
}

// explainConnErr says which setting is wrong when connecting failed for a
// reason of security: the broker's certificate, TLS against a plaintext
// listener (or the reverse), or the SASL credentials or mechanism. tlsOn
// and saslOn say what was in use.
func explainConnErr(err error, tlsOn, saslOn bool) error {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		recordHdr tls.RecordHeaderError
	)
	closed := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return fmt.Errorf("SASL authentication failed: the brokers rejected the credentials (the SASL option, or KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD): %w", err)
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		return fmt.Errorf("SASL: the brokers do not enable this mechanism (the SASL option or KAFKA_SASL_MECHANISM): %w", err)
	case errors.As(err, &unknownCA), errors.As(err, &verify) && errors.As(verify.Err, &unknownCA):
		return fmt.Errorf("TLS: the broker's certificate is not signed by a trusted authority (the TLS option's RootCAs, or KAFKA_TLS_CA_FILE): %w", err)
	case errors.As(err, &hostname):
		return fmt.Errorf("TLS: the broker's certificate is not valid for the address dialed (its names or IP addresses): %w", err)
	case errors.As(err, &invalid):
		return fmt.Errorf("TLS: the broker's certificate is invalid (expired, or not for a server): %w", err)
	case errors.As(err, &verify):
		return fmt.Errorf("TLS: the broker's certificate could not be verified: %w", err)
	case errors.As(err, &recordHdr):
		return fmt.Errorf("TLS: the broker does not speak TLS on this port (turn TLS off, or use its TLS listener): %w", err)
	case closed && saslOn:
		hint := ""
		if !tlsOn {
			hint = ", or whether its listener needs TLS (the TLS option or KAFKA_TLS)"
		}
		return fmt.Errorf("SASL authentication failed: the broker closed the connection while the client authenticated; check the credentials (the SASL option, or KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD) and the mechanism (KAFKA_SASL_MECHANISM)%s: %w", hint, err)
	case closed && tlsOn:
		return fmt.Errorf("TLS: the broker closed the connection during the TLS handshake: does its listener on this port speak TLS? %w", err)
	case closed:
		return fmt.Errorf("the broker closed the connection: if its listener needs TLS or SASL, set the TLS and SASL options, or KAFKA_TLS and KAFKA_SASL_*: %w", err)
	case tlsOn && errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("TLS: no TLS handshake with the broker before the deadline: does its listener on this port speak TLS? %w", err)
	}
	return err
}

// usesTLS reports whether the stream (or engine) dials with TLS: by its
// option, its engine's, or the environment.
func (c *config) usesTLS(in inherited) bool {
	if c.tls != nil || in.tls != nil {
		return true
	}
	cfg, _ := kafkaenv.ReadTLS()
	return cfg != nil
}

// usesSASL reports whether the stream (or engine) authenticates with SASL.
func (c *config) usesSASL(in inherited) bool {
	if c.sasl != nil || in.sasl != nil {
		return true
	}
	m, _ := kafkaenv.ReadSASL()
	return m != nil
}
