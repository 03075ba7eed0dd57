#!/usr/bin/env bash
# Runs every test from a fresh clone: builds the example guest modules (installing the Debian
# packages that needs when there is no rustup wasm32-wasip1 target), then checks formatting,
# lints, and runs the unit and end-to-end tests of the workspace.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

"$root/scripts/build-guests.sh"

# A real OCI registry for the wasm-image tests: the CNCF distribution registry from Debian,
# started by each test on loopback with its own folder (never as the system service).
if ! command -v docker-registry >/dev/null; then
  echo "test: installing docker-registry (Debian package)"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq docker-registry >/dev/null
fi

# A real S3 peer for the storage tests: moto's server mode (S3 and SNS), with boto3 to drive it,
# and OSCAR's own Python client, in a virtualenv beside the build folder.
venv="${CARGO_TARGET_DIR:-$root/target}/test-venv"
if ! "$venv/bin/python" -c 'import moto.server, boto3, oscar_python.client' 2>/dev/null; then
  echo "test: installing moto[server] 5.2.5, boto3 and oscar-python 2.2.0 into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "moto[server]==5.2.5" boto3 "oscar-python==2.2.0"
fi
export OSCAR_TEST_PYTHON="$venv/bin/python"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
