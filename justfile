# Tasks for oscar-wasm. `just --list` shows them. Each is a plain command you can also run by hand.

# Run the server with its embedded defaults (127.0.0.1:8080, data in ./oscar-data).
serve *ARGS:
    ./scripts/serve.sh {{ARGS}}

# Every test, as CI runs it (builds the guest modules first).
test:
    ./scripts/test.sh

# Build the server's and the supervisor's container images (buildah); --push REGISTRY pushes them.
images *ARGS:
    ./scripts/build-images.sh {{ARGS}}

# Build the example modules in examples/wasm/ to examples/wasm/dist/*.wasm.
guests:
    ./scripts/build-guests.sh

# Format all Rust code.
fmt:
    cargo fmt --all

# Lints, warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The benchmark: writes BENCHMARKS.md (add --with-wasmtime to compare with `wasmtime serve`).
bench *ARGS:
    ./scripts/bench.sh {{ARGS}}
