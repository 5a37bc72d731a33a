#!/usr/bin/env bash
# Installs, with apt-get, the Debian packages whose files are missing. Arguments are
# `what:package` pairs, `what` being a command on the PATH or an absolute file path:
#   scripts/deps.sh cmake:cmake /usr/include/google/protobuf/descriptor.proto:libprotobuf-dev
set -euo pipefail
PATH="$PATH:/usr/sbin:/sbin"
missing=()
for pair in "$@"; do
  what="${pair%%:*}" package="${pair#*:}"
  if [[ "$what" == /* ]]; then
    [[ -e "$what" ]] && continue
  else
    command -v "$what" >/dev/null 2>&1 && continue
  fi
  missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
echo "missing: $packages- installing with apt-get"
sudo=""
[[ "$(id -u)" == 0 ]] || sudo=sudo
$sudo apt-get update
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $packages
