#!/usr/bin/env bash
# Runs every test from a fresh clone: builds the example guest modules (installing the Debian
# packages that needs when there is no rustup wasm32-wasip1 target), then checks formatting,
# lints, and runs the unit and end-to-end tests of the workspace.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

"$root/scripts/build-guests.sh"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
