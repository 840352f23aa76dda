# nftlimitd. `make demo` shows limits biting in throwaway namespaces;
# `make test` runs everything (unit + real-kernel integration, needs root).
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Integration tests need root; as a normal user, `make test` re-runs itself
# under sudo when it can.
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo -E env PATH="$$PATH")

.PHONY: all build test unit lint demo bench clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/nftlimitd ./cmd/nftlimitd

lint:
	@out=$$(gofmt -s -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt -s needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck -checks all ./...
	$(GO) mod tidy -diff

# Unit tests only: no root, no kernel.
unit:
	$(GO) test -race -count=1 ./internal/... ./pkg/...

test: lint
	$(SUDO) $(GO) test -race -count=1 -timeout 9m ./...

demo: build
	$(SUDO) $(GO) run ./contrib/demo -bin bin/nftlimitd -config nftlimit.conf

bench:
	$(SUDO) $(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 20m ./...

clean:
	rm -rf bin
