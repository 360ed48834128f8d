# Outpost: `make run` starts the demo, `make test` runs every test.
# Both install the system packages the build needs when they are missing
# (Debian/Ubuntu, through apt-get; as root or with sudo).

CARGO ?= cargo
# Packages BoringSSL's build needs: cmake and a C/C++ compiler for its
# sources, libclang for the Rust bindings.
APT_PACKAGES := cmake g++ libclang-dev

.PHONY: run test build release deps lint bench clean-demo

run: release
	./target/release/outpost demo

release: deps
	$(CARGO) build --release -p outpost-edge --bin outpost

build: deps
	$(CARGO) build --workspace --all-targets

# The whole suite: unit tests beside the code, the CLI tests, and the
# end-to-end tests in tests/ (they run target/debug/outpost, which the
# build of the workspace's test targets makes).
test: build
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: deps
	$(CARGO) bench --workspace

deps:
	@if command -v dpkg >/dev/null 2>&1; then \
		missing=""; \
		for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then \
			echo "Installing build packages:$$missing"; \
			sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
			$$sudo apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
		fi; \
	else \
		echo "not a Debian system: make sure cmake, a C++ compiler and libclang are installed"; \
	fi
