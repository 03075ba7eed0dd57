#!/usr/bin/env bash
# Builds oscar-wasm-supervisor linked statically (glibc's static C runtime, names resolved by
# hickory-dns rather than NSS), so that it starts in any image, musl-based Alpine included;
# prints the binary's path. `--debug` builds the debug profile (the tests' choice).
# Containerfile.supervisor runs this too.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
profile=release
[ "${1:-}" = "--debug" ] && profile=debug
host=$(rustc -vV | sed -n 's/^host: //p')
flags=(--locked -p oscar-wasm-supervisor --target "$host")
[ "$profile" = release ] && flags+=(--release)
# With --target, RUSTFLAGS reach the target's code only, not build scripts or proc macros.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" cargo build -q "${flags[@]}" >&2
echo "${CARGO_TARGET_DIR:-$root/target}/$host/$profile/oscar-wasm-supervisor"
