#!/usr/bin/env bash
# Builds the script runtimes into runtimes/dist (or $OSCAR_RUNTIMES_DIR), each only when its
# inputs changed: Python (componentize-py from PyPI) and JavaScript (componentize-js from npm,
# with the machine's Node.js, installed from Debian when missing), both pinned. The tests,
# the benchmark and a server started from the clone use them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

"$root/runtimes/python/build.sh"
command -v npm >/dev/null || {
  echo "runtimes: installing nodejs and npm (Debian packages)"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
}
"$root/runtimes/javascript/build.sh"
