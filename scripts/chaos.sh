#!/usr/bin/env bash
# The chaos suite in one command: kill -9 storms, rebalance storms, a Redis crash (AOF), Sentinel and
# Cluster failovers that lose writes, and a broker restart, checked for exactly-once delivery; at-least-once runs report their duplicates for contrast.
#   scripts/chaos.sh          # the short version (as in CI)
#   scripts/chaos.sh --long   # 100,000 messages over 3 topics / 8 partitions, 10 kills
# Prints produced / delivered / missing / duplicated per topic for every run (lines starting "chaos:").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export TANSU_BIN="${TANSU_BIN:-${CARGO_HOME:-$HOME/.cargo}/bin/tansu}"
if [ "${1:-}" = "--long" ]; then export K2R_CHAOS_LONG=1; fi
cargo test --release --test exactly_once --test exactly_once_failover -- --test-threads=1 --nocapture 2>&1 | grep -E "^chaos:|^test |test result"
