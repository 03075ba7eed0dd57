#!/usr/bin/env bash
# Builds oscar-wasm's Python runtime: one wasi:cli/command component (CPython 3.14 from
# componentize-py, pinned) that runs the service's script from the read-only folder the
# server mounts at /oscar/app. Every Python service shares it; the server compiles it once.
#
# Output: $OSCAR_RUNTIMES_DIR (default runtimes/dist)/python-3.14.wasm. Rebuilt only when an
# input changed. componentize-py's snapshot holds build-time randomness (the hash seed), so
# two builds differ byte for byte: the server keys the compiled code by the bytes it loads.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out_dir="${OSCAR_RUNTIMES_DIR:-$root/runtimes/dist}"
out="$out_dir/python-3.14.wasm"
componentize_py=0.25.1 # bundles CPython 3.14.0
venv="${CARGO_TARGET_DIR:-$root/target}/runtimes-venv"

inputs=("$here/build.sh" "$here/app/app.py" "$here/wit/world.wit" "$here"/wit/deps/*.wit)
if [ -f "$out" ] && [ -z "$(find "${inputs[@]}" -newer "$out" 2>/dev/null)" ]; then
  echo "$out is up to date"
  exit 0
fi

if ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -q " $componentize_py\$"; then
  echo "python runtime: installing componentize-py $componentize_py into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "componentize-py==$componentize_py"
fi

mkdir -p "$out_dir"
cd "$here"
# `-p app app`: the runner module is imported at build time (with the standard-library
# modules it preloads) and its memory snapshotted; the user's script never is.
"$venv/bin/componentize-py" -d wit -w command componentize -p app app -o "$out.tmp"
mv "$out.tmp" "$out"
echo "built $out ($(stat -c %s "$out") bytes)"
