#!/usr/bin/env bash
# Builds the HTTP service examples into dist/: each folder with a Cargo.toml is a Rust library
# for wasm32-wasip1 (the rustup target when installed; otherwise Debian's rustc-web with std
# built from source, installed by scripts/build-guests.sh), made into a `wasi:http/proxy`
# component by componentize-proxy (this workspace). Then, for example:
#   oscar-wasm module upload examples/http/dist/hello-http.wasm   # or an `image` in a registry
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=wasm32-wasip1
guests_target="${OSCAR_GUESTS_TARGET_DIR:-$root/examples/wasm/target}"
mkdir -p "$here/dist"
for manifest in "$here"/*/Cargo.toml; do
  dir=$(dirname "$manifest")
  name=$(basename "$dir")
  [ "$name" = componentize ] && continue
  crate=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -1)
  out="$here/dist/$crate.wasm"
  if [ -f "$out" ] && [ -z "$(find "$dir" "$here/build.sh" -newer "$out" -not -path '*/target*')" ]; then
    continue
  fi
  # The library has no _start and no crt1 object: it is a reactor that exports the handler.
  if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    CARGO_TARGET_DIR="$guests_target" cargo build -q --release --manifest-path "$manifest" --target "$target"
  else
    "$root/scripts/build-guests.sh" >/dev/null   # installs rustc-web, wasi-libc and lld
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_WASIP1_LINKER=wasm-ld-16 \
    CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-C link-self-contained=no -L /usr/lib/wasm32-wasi" \
    CARGO_TARGET_DIR="$guests_target" \
      cargo build -q --release --manifest-path "$manifest" -Zbuild-std=std,panic_abort --target "$target"
  fi
  core="$guests_target/$target/release/${crate//-/_}.wasm"
  (cd "$root" && cargo run -q --locked -p componentize-proxy -- "$core" "$out.tmp")
  mv "$out.tmp" "$out"
done
