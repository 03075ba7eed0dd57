#!/usr/bin/env bash
# Builds OSCAR's own web dashboard (grycap/oscar-dashboard, Apache-2.0) at a pinned commit, the
# way OSCAR's image builds it (grycap/oscar Dockerfile: `node scripts/deploy_container.cjs &&
# npm run build`), and copies the static bundle and the LICENSE into OUT_DIR.
#
#   scripts/oscar-dashboard/build.sh OUT_DIR [SOURCE_DIR]
#
# SOURCE_DIR: a checkout (or `git archive` export) of the dashboard to build instead of cloning
# https://github.com/grycap/oscar-dashboard; with a git checkout the pinned commit is checked out.
# Needs git (unless SOURCE_DIR is given), node 20 and npm. Environment:
#   MONACO_OUT=DIR  also copy monaco-editor's min/vs folder (16 MB) into DIR. The dashboard loads
#                   Monaco from cdn.jsdelivr.net at run time; oscar_dashboard.py --monaco DIR
#                   answers those requests from DIR, so that its code editors load offline.
#
# What the bundle is:
# - env.ts "deploy_container" is set to "true" (scripts/deploy_container.cjs): the login form
#   has no endpoint field and the dashboard calls the OSCAR API on window.location.origin, so
#   serve it from the API's origin (OSCAR serves it at /ui/, main.go: r.Static("/ui", ...)).
# - vite.config.ts has base "" (relative asset URLs) and the router is a HashRouter: the pages
#   are /ui/#/ui/services, /ui/#/ui/minio, ...; only /ui/ (index.html) and /ui/assets/* are
#   fetched. The build reads no VITE_* variable; the EGI/Keycloak placeholders of env.ts
#   ($EGI_CHECKIN_ISSUER, ...) are left as they are (no OIDC login).
# - The repository has no lockfile (package-lock.json is in its .gitignore), so the one made
#   here (package-lock.json next to this script, resolved on 2026-12-03) pins the dependencies
#   for `npm ci`. Its .npmrc sends @bithero/* to codearq.net; the same package is on the npm
#   registry, which is used for everything here.
set -euo pipefail

COMMIT=bc98e6c
REPO=https://github.com/grycap/oscar-dashboard
REGISTRY=https://registry.npmjs.org/

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 OUT_DIR [SOURCE_DIR]" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ $# -eq 2 ]; then
    src=$(cd "$2" && pwd)
    if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
        git -C "$src" archive "$COMMIT" | tar -x -C "$work"
    else
        cp -a "$src"/. "$work"/
        rm -rf "$work/node_modules" "$work/dist"
    fi
else
    git clone --quiet "$REPO" "$work"
    git -C "$work" -c advice.detachedHead=false checkout --quiet "$COMMIT"
fi
cd "$work"
test -f package.json -a -f vite.config.ts -a -f src/env.ts || { echo "$work: not the dashboard" >&2; exit 1; }

cp "$here/package-lock.json" package-lock.json
# Everything from the npm registry (the @bithero scope included), no audit, no funding notes.
npm_flags=(--registry="$REGISTRY" "--@bithero:registry=$REGISTRY" --no-audit --no-fund)
npm ci "${npm_flags[@]}"
node scripts/deploy_container.cjs
grep -q '"deploy_container" : "true"' src/env.ts
npm run build

rm -rf "${out:?}"/*
cp -a dist/. "$out"/
cp LICENSE "$out"/LICENSE
if [ -n "${MONACO_OUT:-}" ]; then
    mkdir -p "$MONACO_OUT"
    cp -a node_modules/monaco-editor/min/vs/. "$MONACO_OUT"/
fi
echo "built grycap/oscar-dashboard@$COMMIT into $out: $(find "$out" -type f | wc -l) files, $(du -sh "$out" | cut -f1)"
