#!/usr/bin/env bash
# Builds the two container images from the repository's Containerfiles with buildah, and
# pushes them when asked:
#   oscar-wasm             the server (Containerfile)
#   oscar-wasm-supervisor  what image services' pods take the supervisor from
#                          (Containerfile.supervisor, --kube-supervisor-image)
#
# Usage: scripts/build-images.sh [--debug] [--tag TAG] [--push REGISTRY[/PREFIX]] [--insecure]
#   --debug     the debug build (what the tests use: no release build in CI); debug info is
#               stripped from the image's copy either way
#   --tag       the images' tag (default: the workspace version)
#   --push      push both to REGISTRY[/PREFIX] as oscar-wasm:TAG and oscar-wasm-supervisor:TAG
#   --insecure  the registry speaks plain HTTP
#
# Both images start FROM scratch: base images cannot be pulled where this project is built,
# and the server needs no distribution, only its binary, the C libraries it links (copied from
# the build machine, Debian 12), CA certificates, and a non-root user. The server runs as
# 65532:65532, writes only to /data (a volume) and /tmp, and has no shell. The script runtimes
# (runtimes/dist, built by scripts/build-runtimes.sh) go in when they were built.
#
# buildah runs as root with the vfs storage driver and chroot isolation (no overlay or user
# namespaces needed), with its own storage under the build folder ($CARGO_TARGET_DIR/images),
# so the machine's container storage is left alone. Prints the images' names, one a line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

profile=release
tag=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
push=""
tls_verify=true
while (($#)); do
  case "$1" in
    --debug) profile=debug ;;
    --tag) tag="$2"; shift ;;
    --push) push="$2"; shift ;;
    --insecure) tls_verify=false ;;
    *) echo "build-images: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if ! command -v buildah >/dev/null; then
  echo "build-images: installing buildah (Debian package)" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq buildah >/dev/null
fi
target="${CARGO_TARGET_DIR:-$root/target}"
store="$target/images"
buildah=(buildah --storage-driver vfs --root "$store/storage" --runroot "$store/run")

# The binaries.
flags=(--locked -p oscar-wasm)
[ "$profile" = release ] && flags+=(--release)
cargo build -q "${flags[@]}" >&2
server_bin="$target/$profile/oscar-wasm"
supervisor_flag=(); [ "$profile" = debug ] && supervisor_flag=(--debug)
supervisor_bin=$("$root/scripts/build-supervisor.sh" "${supervisor_flag[@]}")

# The server's file system: the binary and exactly the shared objects it loads.
context="$store/context"
rm -rf "$context"
server_root="$context/server-root"
mkdir -p "$server_root/usr/local/bin" "$server_root/etc/ssl/certs" "$server_root/tmp"
# /data goes in on its own, owned by the server's user (COPY makes what it copies root's).
mkdir -p "$context/server-data/data"
objcopy --strip-debug "$server_bin" "$server_root/usr/local/bin/oscar-wasm"
ldd "$server_bin" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | while read -r lib; do
  mkdir -p "$server_root$(dirname "$lib")"
  cp -L "$lib" "$server_root$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$server_root/etc/ssl/certs/"
printf 'root:x:0:0:root:/:/sbin/nologin\noscar:x:65532:65532:oscar-wasm:/data:/sbin/nologin\n' > "$server_root/etc/passwd"
printf 'root:x:0:\noscar:x:65532:\n' > "$server_root/etc/group"
chmod 1777 "$server_root/tmp"
if [ -d runtimes/dist ] && compgen -G "runtimes/dist/*.wasm" >/dev/null; then
  mkdir -p "$server_root/usr/local/share/oscar-wasm/runtimes"
  cp runtimes/dist/*.wasm "$server_root/usr/local/share/oscar-wasm/runtimes/"
else
  echo "build-images: no script runtimes in runtimes/dist (scripts/build-runtimes.sh); the image serves modules only" >&2
fi
mkdir -p "$context/supervisor-root"
cp "$supervisor_bin" "$context/supervisor-root/oscar-wasm-supervisor"

# Same inputs, same layers: fixed timestamps, no build-host history.
export SOURCE_DATE_EPOCH=0
find "$context" -exec touch -h -d @0 {} +
build() {
  "${buildah[@]}" build --isolation chroot --quiet --layers=false --timestamp 0 \
    -f "$1" -t "$2" "$context" >/dev/null
}
build Containerfile "oscar-wasm:$tag"
build Containerfile.supervisor "oscar-wasm-supervisor:$tag"

for image in oscar-wasm:server-root oscar-wasm-supervisor:supervisor-root; do
  folder=${image#*:}
  image=${image%:*}
  echo "build-images: $image:$tag, $(du -sm "$context/$folder" | cut -f1) MiB" >&2
  if [ -n "$push" ]; then
    "${buildah[@]}" push --quiet --tls-verify="$tls_verify" "$image:$tag" "docker://$push/$image:$tag" >&2
    echo "$push/$image:$tag"
  else
    echo "localhost/$image:$tag"
  fi
done
