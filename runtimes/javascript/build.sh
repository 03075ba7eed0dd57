#!/usr/bin/env bash
# Builds oscar-wasm's JavaScript runtime: one wasi:cli/command component (StarlingMonkey, the
# SpiderMonkey embedding of componentize-js, pinned in package.json/package-lock.json) that
# runs the service's script from the read-only folder the server mounts at /oscar/app.
#
# Output: $OSCAR_RUNTIMES_DIR (default runtimes/dist)/javascript-1.wasm (1: the version of
# the API runner.js gives scripts), rebuilt only when an input changed. Needs node >= 18 and
# npm (registry access the first time). Like componentize-py's, the snapshot holds a random
# build path, so two builds differ byte for byte.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out_dir="${OSCAR_RUNTIMES_DIR:-$root/runtimes/dist}"
out="$out_dir/javascript-1.wasm"
deps="${JS_RUNTIME_DEPS:-${CARGO_TARGET_DIR:-$root/target}/runtimes-npm}"

inputs=("$here/build.sh" "$here/build.mjs" "$here/runner.js" "$here/package.json"
        "$here/package-lock.json" "$here/wit/world.wit" "$here"/wit/deps/*.wit)
if [ -f "$out" ] && [ -z "$(find "${inputs[@]}" -newer "$out" 2>/dev/null)" ]; then
  echo "$out is up to date"
  exit 0
fi

start=$(date +%s)
# npm ci from the lock, into a folder of its own (reinstalled when the lock changes).
if ! cmp -s "$here/package-lock.json" "$deps/package-lock.json" || [ ! -d "$deps/node_modules" ]; then
  echo "js runtime: npm ci into $deps"
  mkdir -p "$deps"
  cp "$here/package.json" "$here/package-lock.json" "$deps/"
  (cd "$deps" && npm ci --no-audit --no-fund --loglevel=error)
fi

mkdir -p "$out_dir"
JS_RUNTIME_DEPS="$deps" node "$here/build.mjs" "$out.tmp"
mv "$out.tmp" "$out"
echo "built $out ($(stat -c %s "$out") bytes, sha256 $(sha256sum "$out" | cut -d' ' -f1), $(( $(date +%s) - start ))s)"
