# RIV — Remote Integrity Verification for network devices.
# `make demo` and `make test` do all set-up themselves (see `make help`).

GO        ?= go
FUZZTIME  ?= 60s
DEMO_ARGS ?=
# Debian packages the tests and the demo use (NOTES.md).
DEB_PKGS  := gcc libssl-dev curl swtpm swtpm-tools tpm2-tools libyang2-tools snmp snmpd snmptrapd smitools \
             python3-ncclient python3-pysnmp4 yangcli ssh-audit chromium postgresql
BINARIES  := rivctl riv-agent riv-demo riv-router riv-collector riv-fleetsim
# What `version` prints: the nearest tag and commit.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/openriv/riv/internal/cli.Version=$(VERSION)
export CGO_ENABLED := 1

.PHONY: help setup build test demo bench fuzz generate check-generated lint clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: ## install missing Debian packages (as root) and Go modules
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "setup: installing $$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
		else \
			echo "setup: missing Debian packages; run as root:"; \
			echo "  apt-get update && apt-get install -y $$missing"; exit 1; \
		fi; \
	fi
	@$(GO) mod download
	@$(GO) -C tools mod download

build: setup ## build the binaries into bin/
	@mkdir -p bin
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/rivctl ./collector/cmd/rivctl
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/riv-collector ./collector/cmd/riv-collector
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/riv-demo ./testbed/cmd/riv-demo
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/riv-router ./testbed/cmd/riv-router
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/riv-agent ./agent/cmd/riv-agent
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/riv-fleetsim ./testbed/cmd/riv-fleetsim

test: setup lint ## run every test (fuzz seed corpora included)
	$(GO) test -count=1 -timeout 20m ./...

demo: build ## run the demo on its embedded defaults
	./bin/riv-demo --agent bin/riv-agent --router bin/riv-router --collector bin/riv-collector $(DEMO_ARGS)

bench: setup ## run the benchmarks (see docs/BENCHMARKS.md)
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./pkg/...
	$(GO) test -run '^$$' -bench BenchmarkSave -benchtime 3000x -count 3 ./collector/store
	$(GO) test -run '^$$' -bench BenchmarkPoll -benchtime 100x -count 2 ./testbed/e2e
	$(GO) test -run '^$$' -bench BenchmarkRestart10k -benchtime 3x ./testbed/e2e
	$(GO) test -run '^$$' -bench BenchmarkAppraisalFloor -benchtime 400x -cpu 1 ./testbed/fleetsim
	$(GO) test -run '^$$' -bench BenchmarkStatePerDevice -benchtime 1x -count 3 ./testbed/fleetsim
	$(GO) test -run '^$$' -bench 'BenchmarkKeptSession|BenchmarkCollectorAtScale|BenchmarkColdRestart' -benchtime 1x -timeout 30m ./testbed/e2e
	RIV_BENCH_DEVICES=250000 $(GO) test -run '^$$' -bench 'BenchmarkRestart10k/restore' -benchtime 1x -timeout 30m ./testbed/e2e

fuzz: setup ## fuzz every Fuzz target of the repository for FUZZTIME each (found with go test -list)
	@for p in $$($(GO) list ./...); do \
		for n in $$($(GO) test -list '^Fuzz' $$p 2>/dev/null | grep '^Fuzz'); do \
			echo "== $$p $$n ($(FUZZTIME))"; \
			$(GO) test $$p -run '^$$' -fuzz "^$$n\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s || exit 1; \
		done; \
	done

generate: ## regenerate generated code (none yet: YANG bindings come with the agent)
	@echo "generate: no generated code in this tree yet"

check-generated: generate ## fail if generated code is stale
	@git diff --exit-code -- . ':!go.sum' >/dev/null || { echo "generated code differs; run make generate"; exit 1; }

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean: ## remove build output
	rm -rf bin
