#!/usr/bin/env bash
# The first README command: installs what the demo and the build need when missing (redis-server;
# a C/C++ toolchain, pkg-config, python3, the OpenSSL, zstd and zlib headers, since librdkafka
# is compiled from source, and jemalloc's static library), builds kafka2redis and runs
# `kafka2redis demo`: Kafka embedded (librdkafka's mock cluster), a redis-server of its own on a
# free loopback port, demo traffic through the bridge until Ctrl-C. Arguments go to
# `kafka2redis demo` (`--help` lists them).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

if ! command -v cargo >/dev/null; then
  echo "demo: cargo is missing; install Rust (https://rustup.rs) first" >&2
  exit 1
fi

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
{ command -v cc && command -v c++ && command -v make; } >/dev/null || need_apt+=(build-essential)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v python3 >/dev/null || need_apt+=(python3)
for lib in libssl-dev libzstd-dev zlib1g-dev libjemalloc-dev; do
  dpkg -s "$lib" >/dev/null 2>&1 || need_apt+=("$lib")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  echo "demo: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

echo "demo: cargo build --release --bin kafka2redis (the first build takes several minutes)"
cargo build --release --bin kafka2redis
# An absolute path, so that the command lines the demo prints work from any directory.
exec "$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release/kafka2redis" demo "$@"
