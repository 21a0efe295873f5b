package kstream

import (
	"os"

	"github.com/twmb/franz-go/pkg/kgo"
)

// internalGroupProtocol is groupProtocol (helpers_test.go) for the tests
// inside the package: the classic protocol, or with
// KSTREAM_GROUP_PROTOCOL=consumer the consumer protocol of KIP-848 (make
// test-kip848).
func internalGroupProtocol() Option {
	if os.Getenv("KSTREAM_GROUP_PROTOCOL") == "consumer" {
		return ClientOptions(kgo.ServerSideBalancer())
	}
	return ClientOptions()
}
