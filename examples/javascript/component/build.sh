#!/usr/bin/env bash
# Builds app.js into dist/reverse-lines-js.wasm with componentize-js (npm; the version the
# JavaScript runtime pins). Then:
#   oscar-wasm service apply examples/javascript/component/service.yaml
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out="$here/dist/reverse-lines-js.wasm"
if [ -f "$out" ] && [ -z "$(find "$here/app.js" "$here/build.mjs" "$here/build.sh" -newer "$out")" ]; then
  exit 0
fi
"$root/runtimes/javascript/build.sh" >/dev/null   # installs the pinned componentize-js
mkdir -p "$here/dist"
JS_RUNTIME_DEPS="${JS_RUNTIME_DEPS:-${CARGO_TARGET_DIR:-$root/target}/runtimes-npm}" \
  node "$here/build.mjs" "$out.tmp"
mv "$out.tmp" "$out"
echo "built $out ($(stat -c %s "$out") bytes)"
