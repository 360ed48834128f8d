# Outpost: `make run` starts the demo, `make test` runs every test,
# `make bench` measures Outpost against nginx and Varnish. They install the
# system packages they need when they are missing (Debian/Ubuntu, through
# apt-get; as root or with sudo).

CARGO ?= cargo
# Packages BoringSSL's build needs: cmake and a C/C++ compiler for its
# sources, libclang for the Rust bindings; and nats-server, which the fleet
# tests start as they start their own origins.
APT_PACKAGES := cmake g++ libclang-dev nats-server
# What the status page's browser tests drive: headless Chromium over
# WebDriver (chromedriver).
BROWSER_APT_PACKAGES := chromium chromium-driver
# What the side-by-side benchmark runs besides Outpost: the two peers,
# python3 (the slow origin and the table), openssl (a certificate), curl,
# wrk and h2load (the independent load generators, HTTP/1.1 and HTTP/2).
BENCH_APT_PACKAGES := nginx varnish python3 openssl curl wrk nghttp2-client
# What `make api-fuzz` needs besides the build packages: python3 and its
# venv module, for schemathesis from PyPI in a virtualenv under target/.
API_FUZZ_APT_PACKAGES := python3 python3-venv

.PHONY: run test build release deps browser-deps bench-deps lint bench bench-peers bench-edge bench-slices microbench fleet-bench fleet-demo clean-demo api-fuzz soak fuzz

# $(call apt-install,PACKAGES,WHAT): installs those of PACKAGES that dpkg
# does not know yet; WHAT names them in the messages.
define apt-install
	@if command -v dpkg >/dev/null 2>&1; then \
		missing=""; \
		for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then \
			echo "Installing $(2):$$missing"; \
			sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
			$$sudo apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
		fi; \
	else \
		echo "not a Debian system: make sure these are installed: $(1)"; \
	fi
endef

run: release
	./target/release/outpost demo

release: deps
	$(CARGO) build --release -p outpost-edge --bin outpost

build: deps
	$(CARGO) build --workspace --all-targets

# The whole suite: unit tests beside the code, the CLI tests, and the
# end-to-end tests in tests/ (they run target/debug/outpost, which the
# build of the workspace's test targets makes).
test: build browser-deps
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Outpost, nginx and Varnish side by side behind one origin (see
# docs/benchmarks.md); BENCH_SECONDS and the other BENCH_* variables of
# loadtest/scripts/bench.sh tune it.
bench: deps bench-deps
	$(CARGO) build --release -p outpost-edge -p outpost-loadtest --bin outpost --bin outpost-loadtest
	loadtest/scripts/bench.sh
	python3 loadtest/scripts/bench-peers.py
	python3 loadtest/scripts/bench-edge.py
	python3 loadtest/scripts/bench-slices.py

# Hits against nginx tuned for hits and Varnish, driven by wrk and h2load,
# with our own generator as a check on them (issue 18, docs/benchmarks.md).
bench-peers: deps bench-deps
	$(CARGO) build --release -p outpost-edge -p outpost-loadtest --bin outpost --bin outpost-loadtest
	python3 loadtest/scripts/bench-peers.py

# Edge rules side by side (issue 20): 100 KiB text hits compressed once
# and stored against nginx's gzip on every hit, and a rule's ten actions
# against none, driven by wrk (docs/benchmarks.md).
bench-edge: deps bench-deps
	$(CARGO) build --release -p outpost-edge --bin outpost
	python3 loadtest/scripts/bench-edge.py

# Slices (issue 22): a 1 GiB object read by 32 clients seeking to random
# offsets, through Outpost with and without a rule's `slice`, and through
# nginx's slice module: origin bytes and time to first byte
# (docs/benchmarks.md).
bench-slices: deps bench-deps
	$(CARGO) build --release -p outpost-edge --bin outpost
	python3 loadtest/scripts/bench-slices.py

# A fleet of three nodes and one nats-server on loopback: purge propagation
# and the shield tier (see docs/benchmarks.md).
fleet-bench: release
	loadtest/scripts/fleet-bench.sh

# nats-server and three nodes with the shield tier on loopback, until Ctrl-C.
fleet-demo: release
	loadtest/scripts/fleet-bench.sh --demo

# The side API fuzzed from its OpenAPI document (docs/openapi.yaml) by
# schemathesis, on a node on its own and on a node in a fleet of one: no
# 5xx, and every answer's status, content type, headers and body as the
# document says (see docs/purge-api.md). Not part of `make test`; the
# API_FUZZ_* variables of loadtest/scripts/api-fuzz.sh tune it.
api-fuzz: deps
	$(call apt-install,$(API_FUZZ_APT_PACKAGES),API fuzzing packages)
	$(CARGO) build -p outpost-edge --bin outpost
	loadtest/scripts/api-fuzz.sh

# A bounded soak: SOAK_SECONDS (default 30 minutes) of mixed traffic at a
# fixed rate, with purges, reloads and a binary upgrade, sampling memory
# and descriptors; fails on any error answer or on growth (see
# docs/benchmarks.md).
SOAK_SECONDS ?= 1800
soak: deps
	$(call apt-install,python3,the soak's driver)
	$(CARGO) build --release -p outpost-edge -p outpost-loadtest --bin outpost --bin outpost-loadtest
	python3 loadtest/scripts/soak.py target/release/outpost target/release/outpost-loadtest target/soak $(SOAK_SECONDS)

# The criterion microbenchmarks (ring selection, purge speed).
microbench: deps
	$(CARGO) bench --workspace

# The fuzz targets in fuzz/ (docs/fuzzing.md), one after another, each for
# FUZZ_SECONDS from the seeds in fuzz/corpus/ and what earlier runs kept in
# fuzz/work/; a crash, a failed check or a leak stops it with an error and
# leaves the input in fuzz/artifacts/. Not part of `make test`. Needs the
# nightly toolchain; installs cargo-fuzz when it is missing. FUZZ_TARGETS
# picks some; FUZZ_FLAGS passes more to `cargo fuzz run` (e.g. `-j 2`).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= h1_check cache_control vary range http_date cache_key disk_record purge_body config_yaml
# Debug assertions and overflow checks on; AddressSanitizer, the default,
# builds BoringSSL's C as it is and only instruments the Rust code.
FUZZ_BUILD := --debug-assertions
FUZZ_FLAGS ?=

fuzz: deps
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@$(CARGO) +nightly fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	$(CARGO) +nightly fuzz build $(FUZZ_BUILD)
	@set -e; for target in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/work/$$target; \
		echo "== fuzzing $$target for $(FUZZ_SECONDS)s"; \
		$(CARGO) +nightly fuzz run $(FUZZ_BUILD) $(FUZZ_FLAGS) $$target \
			fuzz/work/$$target fuzz/corpus/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; \
	done

deps:
	$(call apt-install,$(APT_PACKAGES),build packages)

bench-deps:
	$(call apt-install,$(BENCH_APT_PACKAGES),benchmark packages)

browser-deps:
	$(call apt-install,$(BROWSER_APT_PACKAGES),browser test packages)
