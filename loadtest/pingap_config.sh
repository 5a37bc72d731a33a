# shellcheck shell=bash
# Sourced by run.sh and instructions.sh: Pingap's config for the `pingap` peers. Uses the
# caller's TMP (the temp dir) and ORIGIN_PORT.
#
# Pingap (optional): the minimal gatehouse peer's equivalent in its TOML. One server on its
# port, one location `/` (a prefix: every path) to one upstream, the origin, whose idle
# connections are kept 60 s like gatehouse's (Pingap's upstream pool: Pingora's, 128 idle
# connections, as gatehouse's); one thread; no access log (Pingap's default), no plugin,
# no admin listener; pid file and upgrade socket in the temp dir; logging at RUST_LOG=info,
# to stderr. pingap-full adds, on the location, its `jwt` plugin (HS256, gatehouse-hs256's
# secret, the token in `Authorization: Bearer`) and its `limit` plugin with a rate per
# client IP that never triggers (10^6 a second, as the gatehouse peers' limit); Pingap's
# Prometheus metrics need its `full` feature, which this build leaves out, and its access
# log stays off: so pingap-full is gatehouse-hs256 + gatehouse-rl-local, not gatehouse-full.
pingap_config() {   # $1 = peer name, $2 = port, $3 = extra TOML (plugins), $4 = the location's plugin list
    cat > "$TMP/$1.toml" <<EOF
[basic]
threads = 1
pid_file = "$TMP/$1.pid"
upgrade_sock = "$TMP/${1}_upgrade.sock"

[upstreams.origin]
addrs = ["127.0.0.1:$ORIGIN_PORT"]
idle_timeout = "60s"

[locations.bench]
upstream = "origin"
path = "/"
${4:+plugins = [$4]}

[servers.bench]
addr = "127.0.0.1:$2"
locations = ["bench"]
threads = 1
${3:+
$3}
EOF
}
