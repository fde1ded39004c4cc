#!/usr/bin/env bash
# The fault suite in one command, as a table: each fault produced by a real mechanism (kill -9,
# rebalance storms, a Redis crash with AOF, a broker restart, Sentinel and Cluster failovers —
# planned and by kill -9, with a lagging replica —, failovers after the topology changed under a
# running bridge, a Redis restarted from an older snapshot, a lease holder cut off from Redis and a
# bridge cut off from Kafka past its session timeout, each by a link that holds its bytes, a mode
# switch, an out-of-range offset under auto.offset.reset = error, an upgrade from the previous
# release mid-stream, a kill -9 at full speed restarted 2 s later as systemd does), and what it
# cost: produced / delivered / missing / duplicated / per-partition order violations.
#   scripts/faults.sh                  # the short version (the same tests run in CI through scripts/test.sh)
#   scripts/faults.sh --long           # larger streams and more kills, for people
#   scripts/faults.sh lease kafka_cut  # only these test binaries (tests/<name>.rs)
#   scripts/faults.sh --debug …        # a debug build instead of the release one
# Each test binary runs on its own, one after the other, also after one failed; its whole output
# stays in target/faults/<binary>.log. After the table: each binary's result with the names of its
# failed tests, then "N passed, N failed". The exit status is non-zero when anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=(--release)
binaries=()
for arg in "$@"; do
  case "$arg" in
    --long) export K2R_CHAOS_LONG=1 K2R_TOPOLOGY_MESSAGES=50000 ;;
    --debug) profile=() ;;
    -*) echo "faults.sh: unknown option $arg (--long, --debug, or test binary names)" >&2; exit 2 ;;
    *)
      if [ ! -f "tests/$arg.rs" ]; then
        echo "faults.sh: no test binary $arg (tests/$arg.rs does not exist)" >&2
        exit 2
      fi
      binaries+=("$arg")
      ;;
  esac
done
if [ ${#binaries[@]} -eq 0 ]; then
  binaries=(exactly_once exactly_once_failover in_flight redis_topologies live_guard lease fence_and_types kafka_cut redis_rollback reconcile offset_reset_error restart_gap e2e)
fi

scripts/install-deps.sh >/dev/null
export TANSU_BIN="${TANSU_BIN:-${CARGO_HOME:-$HOME/.cargo}/bin/tansu}"

logs=target/faults
mkdir -p "$logs"
# The upgrade row (tests/fence_and_types.rs) runs the previous release: built here, with the same
# profile, unless K2R_PREVIOUS_BIN names one. Without it the row is skipped, and said so.
if [[ " ${binaries[*]} " == *" fence_and_types "* ]] && [ -z "${K2R_PREVIOUS_BIN:-}" ]; then
  echo "faults: building the previous release ..." >&2
  if previous="$(scripts/previous-release.sh "${profile[@]}" 2>"$logs/previous-release.log")"; then
    export K2R_PREVIOUS_BIN="$previous"
  else
    echo "faults: the previous release could not be built (see $logs/previous-release.log); the upgrade row is skipped" >&2
  fi
fi
declare -A exit_code
for binary in "${binaries[@]}"; do
  echo "faults: running $binary ..." >&2
  code=0
  cargo test "${profile[@]}" --test "$binary" -- --test-threads=1 --nocapture \
    >"$logs/$binary.log" 2>&1 || code=$?
  exit_code[$binary]=$code
done

echo "| fault | delivery | produced | delivered | missing | duplicated | order violations |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for binary in "${binaries[@]}"; do
  # A row can follow libtest's "test name ... " on the same line (the test printed nothing before it).
  grep -o 'fault: |.*' "$logs/$binary.log" | sed 's/^fault: //' || true
done

echo
total_passed=0
total_failed=0
status=0
for binary in "${binaries[@]}"; do
  log="$logs/$binary.log"
  read -r passed failed < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")
  # libtest lists the failed tests, indented, under the last "failures:" heading.
  names=$(awk '/^failures:$/ { list = ""; on = 1; next }
               on && /^    [^ ]+$/ { list = list " " $1; next }
               { on = 0 }
               END { print list }' "$log")
  code=${exit_code[$binary]}
  if [ "$code" -eq 0 ]; then
    echo "$binary: passed ($passed)"
  else
    status=1
    if ! grep -q '^test result:' "$log"; then
      # No summary: it did not build, or the binary died before it could print one.
      failed=$((failed + 1))
      names=" (exit status $code before any test result; see the log)"
    fi
    echo "$binary: FAILED ($passed passed, $failed failed):$names"
  fi
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
done
echo "logs: $logs/<binary>.log"
echo "$total_passed passed, $total_failed failed"
exit "$status"
