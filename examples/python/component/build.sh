#!/usr/bin/env bash
# Builds app.py into dist/reverse-lines.wasm with componentize-py (the version the Python
# runtime pins, installed by runtimes/python/build.sh) against the WIT the server runs:
# world `command` (wasi:cli/command 0.2.12), in runtimes/python/wit. Then:
#   oscar-wasm service apply examples/python/component/service.yaml
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out="$here/dist/reverse-lines.wasm"
if [ -f "$out" ] && [ -z "$(find "$here/app.py" "$here/build.sh" -newer "$out")" ]; then
  exit 0
fi
"$root/runtimes/python/build.sh" >/dev/null   # installs the pinned componentize-py
venv="${CARGO_TARGET_DIR:-$root/target}/runtimes-venv"
mkdir -p "$here/dist"
cd "$here"
"$venv/bin/componentize-py" -d "$root/runtimes/python/wit" -w command componentize app -o "$out.tmp"
mv "$out.tmp" "$out"
echo "built $out ($(stat -c %s "$out") bytes)"
