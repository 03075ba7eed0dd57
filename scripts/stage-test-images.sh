#!/usr/bin/env bash
# For the tests (scripts/test.sh runs it): builds both images with scripts/build-images.sh
# --debug, pushes them to a registry started here on loopback (Debian's docker-registry),
# pulls them back into a separate store and mounts them. Prints what the tests read:
#   export OSCAR_TEST_SERVER_IMAGE_ROOT=...    the server image's root file system
#   export OSCAR_TEST_SERVER_IMAGE_CONFIG=...  its configuration (entrypoint, env, user), JSON
#   export OSCAR_TEST_SUPERVISOR=...           the supervisor binary from its image
# tests/images.rs starts the server from that root as the image says; tests/kube.rs runs that
# supervisor in its pods. Needs root (buildah's vfs store and chroot isolation).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target="${CARGO_TARGET_DIR:-$root/target}"
work="$target/images/test"
pulled=(buildah --storage-driver vfs --root "$work/storage" --runroot "$work/run")

# A clean pull store each run: what is mounted is what the registry gave back.
if [ -d "$work/storage" ]; then
  "${pulled[@]}" rm -a >/dev/null 2>&1 || true
  "${pulled[@]}" rmi -a -f >/dev/null 2>&1 || true
fi
rm -rf "$work/registry"
mkdir -p "$work/registry"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break
  sleep 0.1
done

images=$("$root/scripts/build-images.sh" --debug --tag test --push "127.0.0.1:$port" --insecure)
mount_of() {
  "${pulled[@]}" pull --quiet --tls-verify=false "docker://$1" >/dev/null
  local container
  container=$("${pulled[@]}" from --quiet "$1")
  "${pulled[@]}" mount "$container"
}
server=$(grep '/oscar-wasm:' <<<"$images")
supervisor=$(grep '/oscar-wasm-supervisor:' <<<"$images")
server_root=$(mount_of "$server")
supervisor_root=$(mount_of "$supervisor")
"${pulled[@]}" inspect --type image "$server" >"$work/server-config.json"
echo "export OSCAR_TEST_SERVER_IMAGE_ROOT=$server_root"
echo "export OSCAR_TEST_SERVER_IMAGE_CONFIG=$work/server-config.json"
echo "export OSCAR_TEST_SUPERVISOR=$supervisor_root/oscar-wasm-supervisor"
