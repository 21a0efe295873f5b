# The root ./... covers only the SDK module; examples/ and integration/ are
# modules of their own, joined by go.work, so every target names all three.
GO ?= go
PKGS := ./... ./examples/... ./integration/...

.PHONY: test run bench lint vet fmt-check bench-compare bench-compare-quick

test: lint
	$(GO) test -race -count=1 -timeout 5m $(PKGS)

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
