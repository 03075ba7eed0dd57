#!/usr/bin/env bash
# Runs the benchmark and writes BENCHMARKS.md: builds release binaries and the example modules,
# installs `wrk` (Debian) when missing and FaaS Supervisor (the peer) into a virtualenv, and
# measures `wasmtime serve` 48 with a wasi-http component when `wasmtime` 48 is installed. With
# --with-wasmtime (or BENCH_WASMTIME=1) it installs `wasmtime` 48.0.8 first (about 10 minutes).
# Other arguments go to the benchmark (`--duration SECS`, `--scale 100,1000,10000,100000`, ...).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"

with_wasmtime="${BENCH_WASMTIME:-0}"
args=()
for a in "$@"; do
  if [ "$a" = "--with-wasmtime" ]; then with_wasmtime=1; else args+=("$a"); fi
done

if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq wrk >/dev/null
fi
args+=(--wrk "$(command -v wrk)")
# Cluster mode's cost is measured on Debian's nats-server (JetStream) on loopback.
if ! command -v nats-server >/dev/null; then
  echo "bench: installing nats-server"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq nats-server >/dev/null
fi
args+=(--nats-server "$(command -v nats-server)")

"$root/scripts/build-guests.sh" >/dev/null
"$root/scripts/build-runtimes.sh" >/dev/null
args+=(--runtimes-dir "$root/runtimes/dist")
cargo build --release --locked -p oscar-wasm -p oscar-wasm-bench

venv="$target_dir/bench-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import faassupervisor' 2>/dev/null; then
  echo "bench: installing faas-supervisor 1.5.8 into $venv"
  python3 -m venv "$venv"
  # Its published metadata has a broken pin (webdavclient3==3.14.6requests): install it
  # without dependencies, then the dependencies by hand.
  "$venv/bin/pip" install -q --no-deps faas-supervisor==1.5.8
  "$venv/bin/pip" install -q webdavclient3==3.14.6 requests boto3 pyyaml setuptools
fi
args+=(--python "$venv/bin/python")

have_wasmtime=0
wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.' && have_wasmtime=1
if [ "$with_wasmtime" = 1 ] || [ "$have_wasmtime" = 1 ]; then
  if [ "$have_wasmtime" = 0 ]; then
    echo "bench: installing wasmtime-cli 48.0.8 (about 10 minutes)"
    cargo install wasmtime-cli --version 48.0.8 --locked
  fi
  # The handler is a cdylib: no crt1 object, and no _start.
  export CARGO_TARGET_DIR="$target_dir/bench-http-upper"
  if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
    cargo build --release --manifest-path bench/http-upper/Cargo.toml --target wasm32-wasip1
  else
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_WASIP1_LINKER=wasm-ld-16 \
    CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-C link-self-contained=no -L /usr/lib/wasm32-wasi" \
      cargo build --release --manifest-path bench/http-upper/Cargo.toml \
        -Zbuild-std=std,panic_abort --target wasm32-wasip1
  fi
  unset CARGO_TARGET_DIR
  args+=(--wasmtime "$(command -v wasmtime)" --http-module "$target_dir/bench-http-upper/wasm32-wasip1/release/http_upper.wasm")
fi

"$target_dir/release/oscar-wasm-bench" \
  --server-bin "$target_dir/release/oscar-wasm" \
  --guests "$root/examples/wasm/dist" \
  --commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  --output "$root/BENCHMARKS.md" \
  "${args[@]}"
