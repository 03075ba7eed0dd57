#!/usr/bin/env bash
# Builds app.py into dist/hello-http-py.wasm, a wasi:http/proxy component, with componentize-py
# (the version the Python runtime pins, installed by runtimes/python/build.sh) against ./wit
# (world `proxy`: wasi:http/proxy 0.2.12). Then upload it and give the service an `expose`
# section, as for examples/http/hello (README, "HTTP services").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out="$here/dist/hello-http-py.wasm"
if [ -f "$out" ] && [ -z "$(find "$here/app.py" "$here/build.sh" "$here/wit" -newer "$out")" ]; then
  exit 0
fi
"$root/runtimes/python/build.sh" >/dev/null   # installs the pinned componentize-py
venv="${CARGO_TARGET_DIR:-$root/target}/runtimes-venv"
mkdir -p "$here/dist"
cd "$here"
"$venv/bin/componentize-py" -d wit -w proxy componentize app -o "$out.tmp"
mv "$out.tmp" "$out"
echo "built $out ($(stat -c %s "$out") bytes)"
