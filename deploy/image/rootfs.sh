#!/usr/bin/env bash
# The runtime image's whole filesystem, assembled from a built binary (the Dockerfile's
# builder stage runs this; so does scripts/image.sh for a local FROM scratch image):
#   deploy/image/rootfs.sh BIN OUT [CONFIG]
# OUT gets: the binary (stripped) at /usr/local/bin/gatehouse, exactly the shared libraries
# `ldd` lists for it (with the loader), the system's CA certificates, a non-root user
# (65532, "nonroot", as distroless images have), /tmp writable by all (pid file, upgrade
# socket, fleet state), and CONFIG (default conf/gatehouse.yaml) at
# /etc/gatehouse/gatehouse.yaml. Nothing else: no shell, no package manager.
set -euo pipefail
bin=$1 out=$2 config=${3:-conf/gatehouse.yaml}
rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc/gatehouse" "$out/etc/ssl/certs" "$out/tmp" "$out/home/nonroot"
strip -o "$out/usr/local/bin/gatehouse" "$bin"
chmod 0755 "$out/usr/local/bin/gatehouse"
# `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and the loader's own line.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
  while read -r lib; do
    mkdir -p "$out$(dirname "$lib")"
    cp -L "$lib" "$out$lib"
  done
cp -L /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$out/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$out/etc/group"
cp "$config" "$out/etc/gatehouse/gatehouse.yaml"
chmod 1777 "$out/tmp"
chown 65532:65532 "$out/home/nonroot" 2>/dev/null || true
