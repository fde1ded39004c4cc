#!/usr/bin/env bash
# The second README command: installs what is missing and runs the whole test suite (unit tests, and
# end-to-end tests against real redis-server and Tansu processes that the tests start themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export TANSU_BIN="${TANSU_BIN:-${CARGO_HOME:-$HOME/.cargo}/bin/tansu}"
cargo test --all-targets -- --test-threads="${K2R_TEST_THREADS:-2}"
