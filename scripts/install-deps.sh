#!/usr/bin/env bash
# Installs what kafka2redis needs on a Debian machine: redis-server (tests start their own), the C
# libraries librdkafka builds against, Chromium and socat for the status page and Kafka security
# tests, the Tansu Kafka broker (built once with cargo, then reused), and the stock job-framework
# workers (scripts/install-workers.sh).
set -euo pipefail

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v cc >/dev/null || need_apt+=(build-essential)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v make >/dev/null || need_apt+=(make)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
dpkg -s libzstd-dev >/dev/null 2>&1 || need_apt+=(libzstd-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need_apt+=(zlib1g-dev)
# jemalloc, linked in place of glibc's malloc (build.rs).
dpkg -s libjemalloc-dev >/dev/null 2>&1 || need_apt+=(libjemalloc-dev)
# The status page test renders / in headless Chromium; the Kafka security test fronts Tansu with
# socat's TLS listener.
command -v chromium >/dev/null || need_apt+=(chromium)
command -v socat >/dev/null || need_apt+=(socat)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "install-deps: cargo is missing; install Rust (https://rustup.rs) first" >&2
  exit 1
fi

TANSU="${TANSU_BIN:-${CARGO_HOME:-$HOME/.cargo}/bin/tansu}"
if [ -x "$TANSU" ] && "$TANSU" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  echo "install-deps: tansu $TANSU_VERSION already installed at $TANSU"
else
  echo "install-deps: building the Tansu broker $TANSU_VERSION (once; takes a while on a small machine)"
  cargo install --locked "tansu@$TANSU_VERSION" --features dynostore,libsql
fi

# The stock Laravel, Celery and Sidekiq workers that tests/workers.rs runs the job envelopes with.
"$(dirname "$0")/install-workers.sh"
