#!/usr/bin/env bash
# The container image.
#   scripts/image.sh            the Dockerfile, with podman (or docker): needs a registry to
#                               pull rust:1-bookworm from (`make image`)
#   scripts/image.sh local [BIN]
#                               the Dockerfile's runtime stage, FROM scratch, from a binary
#                               built here (default target/release/gatehouse): the same
#                               filesystem and metadata, no registry needed (`make image-local`).
#                               Then proves the image runs: `podman run` where the machine
#                               allows it, else its filesystem mounted and run in a chroot as
#                               the image's user: --version, check of the bundled config and
#                               of environment mode, and a gateway answering `gatehouse
#                               health` (the HEALTHCHECK) until SIGTERM stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${TAG:-gatehouse:latest}
engine=$(command -v podman || command -v docker || true)
[[ -n "$engine" ]] || { echo "image: podman (or docker) is needed: apt-get install podman" >&2; exit 1; }

if [[ "${1:-}" != local ]]; then
  exec "$engine" build -t "$TAG" .
fi

bin=${2:-target/release/gatehouse}
[[ -x "$bin" ]] || { echo "image: no binary at $bin (cargo build --release)" >&2; exit 1; }
TAG=${TAG/latest/local}
ctx=$(mktemp -d)
mnt="" gw="" name="gatehouse-image-test-$$"
cleanup() {
  [[ -n "$gw" ]] && kill "$gw" 2>/dev/null
  "$engine" rm -f "$name" >/dev/null 2>&1 || true
  [[ -n "$mnt" ]] && podman image unmount "$TAG" >/dev/null 2>&1
  rm -rf "$ctx"
}
trap cleanup EXIT
bash deploy/image/rootfs.sh "$bin" "$ctx/rootfs"
# The runtime stage of the Dockerfile, word for word but for where the filesystem comes from.
awk '/^FROM scratch/ { on = 1 } on' Dockerfile |
  sed 's|^COPY --from=builder /rootfs /$|COPY rootfs /|' >"$ctx/Containerfile"
grep -q '^COPY rootfs /$' "$ctx/Containerfile" || { echo "image: the Dockerfile's runtime stage changed shape" >&2; exit 1; }
format=()
[[ "$engine" == */podman ]] && format=(--format docker) # OCI images drop HEALTHCHECK
# The previous build of this tag would be left behind, untagged, at every run.
"$engine" rmi -f "$TAG" >/dev/null 2>&1 || true
"$engine" build -q "${format[@]}" -t "$TAG" -f "$ctx/Containerfile" "$ctx" >/dev/null
size=$("$engine" image inspect --format '{{.Size}}' "$TAG")
binary=$(stat -c %s "$ctx/rootfs/usr/local/bin/gatehouse")
echo "image $TAG: $((size / 1000000)) MB (the binary: $((binary / 1000000)) MB, the rest: $(((size - binary) / 1000)) kB)"
echo "image-size-bytes $size binary-bytes $binary"


# How to run the image here: `podman run` as it is; else with this machine's limits
# (crun cannot raise RLIMIT_NOFILE/NPROC in some sandboxes, and hybrid cgroups need runc
# with cgroupfs); else its filesystem in a chroot, as its user, with its environment only.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
run_opts=() engine_opts=()
: >"$ctx/err"
# IMAGE_RUN=chroot exercises the last way where the others work.
[[ "${IMAGE_RUN:-}" == chroot ]] && echo "IMAGE_RUN=chroot" >"$ctx/err"
if [[ "${IMAGE_RUN:-}" != chroot ]] && "$engine" run --rm "$TAG" --version >/dev/null 2>"$ctx/err"; then
  way="$engine run"
elif [[ "${IMAGE_RUN:-}" != chroot && "$engine" == */podman ]] && podman --runtime runc --cgroup-manager=cgroupfs run --rm \
    --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$TAG" --version >/dev/null 2>>"$ctx/err"; then
  way="podman run (runc, cgroupfs, --ulimit nofile/nproc=1024)"
  engine_opts=(--runtime runc --cgroup-manager=cgroupfs)
  run_opts=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
elif [[ "$engine" == */podman && "$(id -u)" == 0 ]]; then
  way="chroot into the mounted image (podman run: $(tail -1 "$ctx/err"))"
  mnt=$(podman image mount "$TAG")
else
  echo "image: cannot run the image here: $(tail -1 "$ctx/err")" >&2
  exit 1
fi
echo "running the image by: $way"

# in_image [K=V...] -- ARGS: runs the image's gatehouse with ARGS and only those variables
# (plus the image's own), on the host's network (loopback ports).
in_image() {
  local envs=()
  while [[ "$1" != -- ]]; do envs+=("$1"); shift; done
  shift
  if [[ -z "$mnt" ]]; then
    local flags=()
    for e in "${envs[@]}"; do flags+=(-e "$e"); done
    "$engine" "${engine_opts[@]}" run --rm --net=host --no-healthcheck "${run_opts[@]}" "${flags[@]}" "$TAG" "$@"
  else
    env -i PATH=/usr/local/bin HOME=/home/nonroot GATEHOUSE_CONFIG=/etc/gatehouse/gatehouse.yaml "${envs[@]}" \
      "$(command -v chroot)" --userspec=65532:65532 "$mnt" /usr/local/bin/gatehouse "$@"
  fi
}

echo "in the image: $(in_image -- --version)"
# Without -c the image's GATEHOUSE_CONFIG names the file; the environment's variables win.
in_image -- check
in_image BACKEND_URLS=http://127.0.0.1:1,http://127.0.0.1:2 -- check

# The gateway in the image, in environment mode, answering its HEALTHCHECK; SIGTERM stops it.
p=$(port) a=$(port)
envs=(PORT="$p" ADMIN_LISTEN="127.0.0.1:$a" BACKEND_URL=http://127.0.0.1:1)
if [[ -z "$mnt" ]]; then
  flags=()
  for e in "${envs[@]}"; do flags+=(-e "$e"); done
  # The image's own HEALTHCHECK is run on demand below; podman's timer for it needs
  # systemd, which says so on stderr when there is none.
  "$engine" "${engine_opts[@]}" run -d --name "$name" --net=host \
    "${run_opts[@]}" "${flags[@]}" "$TAG" >/dev/null 2>"$ctx/run.err" || { cat "$ctx/run.err" >&2; exit 1; }
else
  # env and chroot exec what follows: $! is the gateway itself, which SIGTERM reaches.
  env -i PATH=/usr/local/bin HOME=/home/nonroot GATEHOUSE_CONFIG=/etc/gatehouse/gatehouse.yaml "${envs[@]}" \
    "$(command -v chroot)" --userspec=65532:65532 "$mnt" /usr/local/bin/gatehouse run >"$ctx/run.log" 2>&1 &
  gw=$!
fi
# Podman runs the image's HEALTHCHECK (gatehouse health on PORT) in the container itself;
# in a chroot, the same command.
health() {
  if [[ -z "$mnt" ]]; then "$engine" "${engine_opts[@]}" healthcheck run "$name"; else in_image PORT="$p" -- health; fi
}
passed="" said=""
for _ in $(seq 100); do
  if said=$(health 2>&1); then passed=yes; break; fi
  sleep 0.1
done
[[ -n "$passed" ]] || { echo "image: the gateway in the image never passed its HEALTHCHECK: $said" >&2; exit 1; }
echo "HEALTHCHECK passed${said:+: $said}"
if [[ -z "$mnt" ]]; then
  hc=$("$engine" inspect --format '{{json .Config.Healthcheck}}' "$name")
  echo "the image's HEALTHCHECK: $hc"
  "$engine" "${engine_opts[@]}" stop -t 10 "$name" >/dev/null 2>&1
  status=$("$engine" inspect --format '{{.State.ExitCode}}' "$name")
else
  kill -TERM "$gw"
  wait "$gw" && status=0 || status=$?
  gw=""
fi
[[ "$status" == 0 ]] || { echo "image: the gateway exited $status after SIGTERM" >&2; exit 1; }
echo "SIGTERM: exited 0"
