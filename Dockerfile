# gatehouse's container image.
#   docker build -t gatehouse .
#   docker run -p 8080:8080 gatehouse                                   # the bundled config
#   docker run -p 8080:8080 -e BACKEND_URLS=http://a:3000,http://b:3000 gatehouse   # environment mode
#   docker run -p 8080:8080 -v $PWD/my.yaml:/etc/gatehouse/gatehouse.yaml:ro gatehouse
# The runtime stage is FROM scratch: the binary, the libraries ldd lists, CA certificates,
# a non-root user; no shell (deploy/image/rootfs.sh assembles it). scripts/image.sh builds
# the same runtime stage from a local binary where no registry can be pulled from.

FROM rust:1-bookworm AS builder
# cmake: Pingora's zlib-ng; protoc and the well-known types: the etcd client (fleet mode).
# Unpinned: the build tools follow bookworm's security updates, not the image's output.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake protobuf-compiler libprotobuf-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The `dist` profile: link-time optimisation over the whole program (Cargo.toml says why).
RUN cargo build --profile dist --locked \
    && bash deploy/image/rootfs.sh target/dist/gatehouse /rootfs

FROM scratch
COPY --from=builder /rootfs /
USER 65532:65532
# `gatehouse run` without -c: environment mode when BACKEND_URL(S) or ROUTES_CONFIG_PATH is
# set, else this file.
ENV GATEHOUSE_CONFIG=/etc/gatehouse/gatehouse.yaml
EXPOSE 8080 9901
# SIGTERM drains: keep-alive clients are told to go, in-flight requests finish, the
# process exits when idle (drain_period + grace_period + shutdown_timeout = 9 s by
# default, under `docker stop`'s 10 s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/gatehouse", "health"]
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["run"]
