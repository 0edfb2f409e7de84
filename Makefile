# The two commands a newcomer needs are `make up` (the local wiki farm) and `make test`.

.PHONY: up down test check lint bench packages

# The binaries `up` runs. `down` builds the same set: cargo unifies features per set of
# packages, so building wikikube-cli alone rebuilt half the tree (3 minutes) after an `up`.
BUILD = cargo build --release -q -p wikikube-cli -p edge -p mcrouter -p redis-proxy
# Where cargo puts them: a CARGO_TARGET_DIR in the environment moves them out of ./target.
WIKIKUBE = $(or $(CARGO_TARGET_DIR),target)/release/wikikube

# The main job: build the images (cached after the first time) and serve the example farm.
up: packages
	$(BUILD)
	$(WIKIKUBE) up examples/farm

down:
	$(BUILD)
	$(WIKIKUBE) down examples/farm

# Every test of the workspace (cargo test's, two binaries at a time: scripts/run-tests), after
# installing the Debian packages they use.
test: packages
	./scripts/run-tests

# What CI checks before the tests (the crate docs too: broken links and links to private items).
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps -q

check: lint test

packages:
	./scripts/install-packages

# Benchmarks print their figures; see docs/benchmarks.md.
bench: packages
	cargo bench -p wikikube-render --bench render_farm
