#!/usr/bin/env bash
# Runs the server with its embedded defaults (http://127.0.0.1:8080, data in ./oscar-data)
# from a fresh clone: builds the Python and JavaScript runtimes first (each only when its
# inputs changed; pip and npm, about a minute the first time), then the release binary.
# Arguments go to `oscar-wasm serve`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/build-runtimes.sh"
exec cargo run --release --locked -p oscar-wasm -- serve "$@"
