#!/usr/bin/env bash
# The second README command: installs what is missing and runs the whole test suite (unit tests, and
# end-to-end tests against real redis-server and Tansu processes that the tests start themselves).
# Ends with one line summing every test binary's result: "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Alert rules and dashboard queries (promtool); it also unpacks the Prometheus server that
# tests/prometheus_scrape.rs scrapes the bridge with.
scripts/check-deploy.sh
export TANSU_BIN="${TANSU_BIN:-${CARGO_HOME:-$HOME/.cargo}/bin/tansu}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --no-fail-fast --lib --bins --tests -- --test-threads="${K2R_TEST_THREADS:-2}" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
