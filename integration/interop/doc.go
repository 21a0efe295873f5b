// Package interop checks that kstream interoperates with an independent
// Kafka client: kcat (librdkafka) produces records that a stream reads
// exactly, reads back exactly what a kstream engine produced, partitions keys
// the way kstream does when asked to (murmur2), and shares a consumer group
// with a stream without losing records.
//
// The tests talk to the in-process cluster (kfake) on 127.0.0.1 and need
// the kcat binary (Debian package kcat). They are behind the interop build
// tag so that `make test` does not need kcat; `make interop` runs them, and
// fails, rather than skips, when kcat is missing:
//
//	apt-get install -y kcat
//	go test -tags interop -race -count=1 ./integration/interop/
package interop
