#!/usr/bin/env bash
# Refreshes the dashboard's one third-party script, js-yaml (MIT), from npm's registry into
# runtime/ui/vendor/, where it is committed: the binary embeds it, so neither a build nor the
# page at run time needs npm or a CDN. Run it only to change the pinned version.
set -euo pipefail
version=4.3.2
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "js-yaml@$version" >/dev/null && tar xzf "js-yaml-$version.tgz")
cp "$work/package/dist/js-yaml.min.js" "$root/runtime/ui/vendor/js-yaml.min.js"
cp "$work/package/LICENSE" "$root/runtime/ui/vendor/LICENSE-js-yaml"
echo "vendor-ui: js-yaml $version in runtime/ui/vendor/"
