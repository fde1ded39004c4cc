#!/usr/bin/env bash
# The fault suite in one command, as a table: each fault produced by a real mechanism (kill -9,
# rebalance storms, a Redis crash with AOF, a broker restart, Sentinel and Cluster failovers —
# planned and by kill -9, with a lagging replica —, a lease holder cut off from Redis and a bridge
# cut off from Kafka past its session timeout, each by a link that holds its bytes), and what it
# cost: produced / delivered / missing / duplicated / per-partition order violations.
#   scripts/faults.sh          # the short version (the same tests run in CI through scripts/test.sh)
#   scripts/faults.sh --long   # larger streams and more kills, for people
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh >/dev/null
export TANSU_BIN="${TANSU_BIN:-${CARGO_HOME:-$HOME/.cargo}/bin/tansu}"
if [ "${1:-}" = "--long" ]; then
  export K2R_CHAOS_LONG=1 K2R_TOPOLOGY_MESSAGES=50000
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --release --test exactly_once --test exactly_once_failover --test redis_topologies --test lease --test kafka_cut --test e2e \
  -- --test-threads=1 --nocapture >"$log" 2>&1 || status=$?
echo "| fault | delivery | produced | delivered | missing | duplicated | order violations |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
# A row can follow libtest's "test name ... " on the same line (the test printed nothing before it).
grep -o 'fault: |.*' "$log" | sed 's/^fault: //'
grep -E "^test result:" "$log" | awk '{ passed += $4; failed += $6 } END { printf "\n%d passed, %d failed\n", passed, failed }'
exit "$status"
