#!/usr/bin/env bash
# Builds app.js into dist/hello-http-js.wasm, a wasi:http/proxy component, with componentize-js
# (npm; the version the JavaScript runtime pins). Then upload it and give the service an
# `expose` section, as for examples/http/hello (README, "HTTP services").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out="$here/dist/hello-http-js.wasm"
if [ -f "$out" ] && [ -z "$(find "$here/app.js" "$here/build.mjs" "$here/build.sh" "$here/wit" -newer "$out")" ]; then
  exit 0
fi
"$root/runtimes/javascript/build.sh" >/dev/null   # installs the pinned componentize-js
mkdir -p "$here/dist"
JS_RUNTIME_DEPS="${JS_RUNTIME_DEPS:-${CARGO_TARGET_DIR:-$root/target}/runtimes-npm}" \
  node "$here/build.mjs" "$out.tmp"
mv "$out.tmp" "$out"
echo "built $out ($(stat -c %s "$out") bytes)"
