#!/usr/bin/env bash
# Builds every example module in examples/wasm/ to wasm32-wasip1 and copies the .wasm files to
# examples/wasm/dist/. Uses an installed rustup wasm32-wasip1 target when there is one;
# otherwise Debian's rustc-web (which knows wasm32-wasip1) with std built from source and
# wasi-libc, installing those packages when they are missing. C examples (a folder with .c files
# and no Cargo.toml) are built with clang's wasm32-wasi target and wasi-libc (`CC_WASM`,
# default clang-16, installed from Debian's packages when missing).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/examples/wasm"
export CARGO_TARGET_DIR="${OSCAR_GUESTS_TARGET_DIR:-$root/examples/wasm/target}"
target=wasm32-wasip1

if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  echo "build-guests: using rustup's $target target"
  cargo build --release --target "$target"
else
  need=()
  { [ -x /usr/bin/rustc ] && /usr/bin/rustc --print target-list 2>/dev/null | grep -qx "$target"; } \
    || need+=(rustc-web)
  [ -d /usr/lib/rustlib/src/rust/library ] || need+=(rust-web-src)
  [ -f /usr/lib/wasm32-wasi/libc.a ] || need+=(wasi-libc)
  command -v wasm-ld-16 >/dev/null || need+=(lld-16)
  if ((${#need[@]})); then
    echo "build-guests: installing ${need[*]} (Debian packages)"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  echo "build-guests: using Debian's rustc-web with -Zbuild-std"
  # Target-specific flags reach only the wasm build, never host build scripts.
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
  CARGO_TARGET_WASM32_WASIP1_LINKER=wasm-ld-16 \
  CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-C link-self-contained=no -L /usr/lib/wasm32-wasi -C link-arg=/usr/lib/wasm32-wasi/crt1-command.o" \
    cargo build --release -Zbuild-std=std,panic_abort --target "$target"
fi

mkdir -p dist
for manifest in */Cargo.toml; do
  name=$(dirname "$manifest")
  cp "$CARGO_TARGET_DIR/$target/release/$name.wasm" "dist/$name.wasm"
done

cc="${CC_WASM:-clang-16}"
c_examples=()
for dir in */; do
  dir=${dir%/}
  [ -f "$dir/Cargo.toml" ] || ! compgen -G "$dir/*.c" >/dev/null || c_examples+=("$dir")
done
if ((${#c_examples[@]})); then
  need=()
  command -v "$cc" >/dev/null || need+=(clang-16)
  [ -f /usr/lib/wasm32-wasi/libc.a ] || need+=(wasi-libc)
  compgen -G "/usr/lib/llvm-16/lib/clang/16/lib/wasi/libclang_rt.builtins-wasm32.a" >/dev/null \
    || need+=(libclang-rt-16-dev-wasm32)
  if ((${#need[@]})) && [ "$cc" = clang-16 ]; then
    echo "build-guests: installing ${need[*]} (Debian packages)"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  for dir in "${c_examples[@]}"; do
    "$cc" --target=wasm32-wasi -O2 -Wall -Werror -Wl,--strip-all -o "dist/$dir.wasm" "$dir"/*.c
  done
fi
ls -l dist/*.wasm
