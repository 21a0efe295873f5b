# The root ./... covers only the SDK module; codec/schemaregistry, examples/
# and integration/ are modules of their own, joined by go.work, so every
# target names all four.
GO ?= go
PKGS := ./... ./codec/schemaregistry/... ./examples/... ./integration/...

.PHONY: test test-kip848 run bench lint vet fmt-check bench-compare bench-compare-quick fuzz interop chaos chaos-short

test: lint
	$(GO) test -race -count=1 -timeout 5m $(PKGS)

# The SDK's tests again with the consumer group protocol of KIP-848 (the
# broker assigns), for the streams the tests make through their helpers,
# and the in-process churn scenario, bounded (about a minute).
test-kip848:
	KSTREAM_GROUP_PROTOCOL=consumer $(GO) test -race -count=1 -timeout 5m ./kstream/
	CHAOS=1 KSTREAM_GROUP_PROTOCOL=consumer $(GO) test -tags chaos -race -count=1 -short -timeout 5m -run TestChurnInProcess ./integration/chaos/

lint: vet fmt-check

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt needed on:"; echo "$$unformatted"; exit 1; \
	fi

run:
	$(GO) run ./examples/quickstart

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime=1x ./kstream

# kstream vs raw franz-go, kafka-go and sarama (docs/performance.md); a few minutes.
bench-compare:
	$(GO) run ./integration/cmd/benchcompare $(BENCHCOMPARE_FLAGS)

# Smoke run of the same harness, under a minute.
bench-compare-quick:
	$(GO) run ./integration/cmd/benchcompare -quick

# Fuzz the codecs, the schema-registry wire format and the record
# conversion, FUZZTIME each (about 4 minutes).
FUZZTIME ?= 20s
CODEC_FUZZ := FuzzJSONDecode FuzzJSONRoundTrip FuzzString FuzzBytes
SR_FUZZ := FuzzHeader FuzzIndexes FuzzHeaderRoundTrip FuzzAvroPayload FuzzProtobufPayload
KSTREAM_FUZZ := FuzzDecodeInto FuzzDecodeIntoJSON FuzzClassifyFetchError
fuzz:
	@set -e; \
	for f in $(CODEC_FUZZ); do $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./codec; done; \
	for f in $(SR_FUZZ); do $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./codec/schemaregistry; done; \
	for f in $(KSTREAM_FUZZ); do $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./kstream; done

# Interop with librdkafka through kcat (apt-get install kcat); never skipped: fails without kcat.
interop:
	$(GO) vet -tags interop ./integration/interop/
	$(GO) test -tags interop -race -count=1 -timeout 5m ./integration/interop/

# Churn, fault and shutdown suites (docs/reliability.md): about 10 minutes.
# The churn scenarios carry the chaos build tag, so make test does not build them.
chaos:
	CHAOS=1 $(GO) test -tags chaos -race -count=1 -timeout 30m -v ./integration/chaos/
	$(GO) test -race -count=1 -timeout 5m ./integration/faults/

# The bounded subset of the churn suite (under 2 minutes), run by .ci/run.
chaos-short:
	CHAOS=1 $(GO) test -tags chaos -race -count=1 -short -timeout 5m ./integration/chaos/
