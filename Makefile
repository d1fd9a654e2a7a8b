# troupe — the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
BIN     := bin/troupe
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# Packages whose tests run under the race detector. The process-level
# system tests build their own (race-free) binary, as a real deployment.
PKGS    := ./...

.PHONY: run build test fuzz-smoke bench bench-keyed bench-users bench-ratelimit bench-watch bench-peers soak torture lint imports web web-test clean

## run: build and start a one-node cluster in ./troupe-data (secure: log in as the first admin)
run: build
	./$(BIN) serve --data ./troupe-data

## build: a static binary in bin/
build:
	@echo "building $(BIN) (a first build downloads and compiles the dependencies: a minute or two)"
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/troupe

## test: vet, formatting, lint, every test under -race, and brief fuzzing
test:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(MAKE) lint
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(MAKE) fuzz-smoke

## fuzz-smoke: run each fuzz target briefly: a number of executions, not a
## duration (Go 1.26's fuzz coordinator can fail a duration run at its
## deadline with "context deadline exceeded" and no failing input,
## go.dev/issue/75804)
FUZZ_EXECS ?= 20000x
FUZZ_PKGS := ./storage/ ./transport/api/ ./transport/auth/ ./bench/ ./bench/peers/ ./cluster/ ./internal/feed/
fuzz-smoke:
	@for pkg in $(FUZZ_PKGS); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZ_EXECS) $$pkg || exit 1; \
		done; \
	done

## bench: the load scenarios next to their floor and the Go benchmarks; writes docs/BENCHMARKS.md and its chart docs/BENCHMARKS.svg (≈ 8 min)
bench: build
	$(GO) run ./bench/suite --troupe $(BIN) --out docs/BENCHMARKS.md

## bench-keyed: only the Idempotency-Key rows of make bench, printed, not written (≈ 2 min)
bench-keyed: build
	$(GO) run ./bench/suite --troupe $(BIN) --only keyed

## bench-users: the user rows (create, get, mixed, with floors) of this build against the
## build of BEFORE (a git revision, default HEAD~1), alternately, printed (≈ 4 min)
BEFORE ?= HEAD~1
bench-users: build
	rm -rf /tmp/troupe-before && git worktree add --detach /tmp/troupe-before $(BEFORE)
	cd /tmp/troupe-before && $(GO) build -o $(CURDIR)/bin/troupe-before ./cmd/troupe; \
		status=$$?; cd $(CURDIR) && git worktree remove --force /tmp/troupe-before; exit $$status
	$(GO) run ./bench/suite --troupe $(BIN) --before bin/troupe-before --only users

## bench-ratelimit: the rate-limit rows (check, multi-check of 10, Envoy's gRPC service, with
## floors, load average and node CPU per request) of this build, or of this build against the
## build of BEFORE (a git revision) alternately when BEFORE is given, printed (≈ 2 min a build)
bench-ratelimit: build
	@if [ -n "$(BEFORE)" ] && [ "$(origin BEFORE)" != "file" ]; then \
		rm -rf /tmp/troupe-before && git worktree add --detach /tmp/troupe-before $(BEFORE) && \
		(cd /tmp/troupe-before && $(GO) build -o $(CURDIR)/bin/troupe-before ./cmd/troupe); \
		status=$$?; git worktree remove --force /tmp/troupe-before; [ $$status = 0 ] || exit $$status; \
		$(GO) run ./bench/suite --troupe $(BIN) --before bin/troupe-before --only ratelimit; \
	else \
		$(GO) run ./bench/suite --troupe $(BIN) --only ratelimit --rounds 1; \
	fi

## bench-watch: the change-feed row: creates open loop at half the closed-loop maximum, without
## and with 64 watchers, alternately on one fresh node (WATCH_ROUNDS pairs of 10 s), printed (≈ 2 min)
WATCH_ROUNDS ?= 3
bench-watch: build
	$(GO) run ./bench/suite --troupe $(BIN) --only watch --duration 10s --rounds $(WATCH_ROUNDS)

## bench-peers: troupe next to etcd 3.6 and ShareDB 7 in one run, the same connection counts;
## writes docs/PEERS.md. Builds etcd (go, from the module proxy) and installs ShareDB (npm) into
## PEERS_SCRATCH, outside the repository; a peer whose toolchain is missing is skipped with the
## reason. Not part of make test or CI. ≈ 5 min with the default 10 s per row and system, plus the
## first build of etcd (a few minutes); PEERS_DURATION=2s make bench-peers for a short trial
## (≈ 1.5 min); PEERS_ONLY=etcd or sharedb runs one peer
PEERS_DURATION ?= 10s
PEERS_SCRATCH ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/troupe-peers
PEERS_ONLY ?=
bench-peers: build
	$(GO) run ./bench/peers --troupe $(BIN) --out docs/PEERS.md --duration $(PEERS_DURATION) \
		--scratch $(PEERS_SCRATCH) $(if $(PEERS_ONLY),--only $(PEERS_ONLY))

## soak: a 3-node cluster under a steady mixed load at fixed rates for $(SOAK), a
## follower killed (-9) every 5 minutes; writes docs/SOAK.md and fails on a failed verdict.
## SOAK=3m make soak for a short run; SOAK_KILL_EVERY and SOAK_SAMPLE_EVERY override the
## intervals (by default scaled down for runs under 30 minutes)
SOAK ?= 30m
SOAK_KILL_EVERY ?=
SOAK_SAMPLE_EVERY ?=
soak: build
	$(GO) run ./bench/soak --troupe $(BIN) --duration $(SOAK) --out docs/SOAK.md \
		$(if $(SOAK_KILL_EVERY),--kill-every $(SOAK_KILL_EVERY)) $(if $(SOAK_SAMPLE_EVERY),--sample-every $(SOAK_SAMPLE_EVERY))

## torture: the linearizability tests with 20 leader kills and 20 rounds of partitions (≈ 5 min)
torture:
	TROUPE_TORTURE_ROUNDS=20 $(GO) test -count=1 -timeout 30m -run 'TestLinearizableUnder(LeaderKill|Partitions)' -v ./systemtest/

## lint: the import rules below, then golangci-lint v2 (.golangci.yml) if installed, else vet
GOLANGCI_LINT ?= $(shell command -v golangci-lint || echo $$(go env GOPATH)/bin/golangci-lint)
lint: imports
	@if [ -x "$(GOLANGCI_LINT)" ]; then $(GOLANGCI_LINT) run ./...; else echo "golangci-lint not installed; go vet only"; $(GO) vet ./...; fi

## imports: transport reaches the cluster only through the interfaces it
## declares (cmd/troupe wires the cluster in): no transport package, tests
## aside, may depend on cluster
imports:
	@deps=$$($(GO) list -deps ./transport/... | grep '^github.com/troupe-db/troupe/cluster'); \
	if [ -n "$$deps" ]; then echo "transport must not depend on cluster, but depends on:"; echo "$$deps"; exit 1; fi

## web: rebuild the browser editor's bundle (transport/web/editor.js: CodeMirror 6 and
## transport/web/src/, by esbuild) from the pinned npm packages; needs Node 18+ and npm.
## The bundle is committed: the Go build and make test need no Node.
WEB := transport/web
web:
	cd $(WEB) && npm ci --no-audit --no-fund && node build.mjs

## web-test: the editor's JavaScript modules tested with node (undo and redo of one's own
## changes past others', share links' addresses), and a check that the committed bundle is
## what make web builds
web-test:
	cd $(WEB) && npm ci --no-audit --no-fund && node --test test/ && node build.mjs --check

clean:
	rm -rf bin
