#!/usr/bin/env bash
# Checks the monitoring artefacts under deploy/ (no build, no running services):
#   - the alert rules parse (promtool check rules) and pass their unit tests (promtool test rules);
#   - every metric they, the dashboard and its fixture name is one the daemon exports (read from
#     src/), with the right suffix for its type; deploy/prometheus/proposed-metrics.txt lists the few
#     that a rule uses ahead of the daemon;
#   - the Grafana dashboard is well formed, every panel query and variable query parses, and every
#     one returns data over a fixture of the daemon's series (each query becomes an alert rule
#     `count(QUERY) > 0` that promtool must see firing);
#   - the Prometheus test template is a valid config once its tokens are filled in.
# Ends with "check-deploy: N passed, N failed".
#
# promtool: taken from PATH, else from Debian's `prometheus` package, which is downloaded with apt and
# unpacked into target/deploy-tools (installing it would start a Prometheus server listening on all
# interfaces). The package's `prometheus` server binary lands there too, for the live scrape test.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
tools="$root/target/deploy-tools"

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

command -v python3 >/dev/null || apt_install python3

if command -v promtool >/dev/null; then
  PROMTOOL="$(command -v promtool)"
elif [ -x "$tools/bin/promtool" ]; then
  PROMTOOL="$tools/bin/promtool"
else
  echo "check-deploy: fetching promtool from Debian's prometheus package into $tools"
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  dl="$(mktemp -d)"
  if [ "$(id -u)" = 0 ]; then chown _apt "$dl" 2>/dev/null || true; fi # apt downloads as _apt
  (cd "$dl" && apt-get download -qq prometheus)
  mkdir -p "$tools/bin"
  dpkg-deb -x "$dl"/prometheus_*.deb "$dl/x"
  install -m 755 "$dl/x/usr/bin/promtool" "$dl/x/usr/bin/prometheus" "$tools/bin/"
  rm -rf "$dl"
  PROMTOOL="$tools/bin/promtool"
fi
echo "check-deploy: $("$PROMTOOL" --version 2>&1 | head -1)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
step() {
  local name="$1"
  shift
  echo "--- $name"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "check-deploy: FAILED: $name"
  fi
}

prom=deploy/prometheus
graf=deploy/grafana

step "alert rules parse" "$PROMTOOL" check rules "$prom/kafka2redis.rules.yml"
step "alert rules unit tests" bash -c "cd '$prom' && '$PROMTOOL' test rules kafka2redis.rules.test.yml"
step "metric names are the daemon's" python3 scripts/deploy-check.py metrics src "$prom/proposed-metrics.txt" \
  "$prom/kafka2redis.rules.yml" "$prom/kafka2redis.rules.test.yml" "$graf/kafka2redis.json" "$graf/kafka2redis.fixture.yml"

dashboard_queries() {
  python3 scripts/deploy-check.py dashboard "$graf/kafka2redis.json" "$graf/kafka2redis.fixture.yml" "$work/dashboard" &&
    "$PROMTOOL" check rules "$work/dashboard/dashboard.rules.yml" &&
    (cd "$work/dashboard" && "$PROMTOOL" test rules dashboard.test.yml)
}
step "dashboard queries parse and return data" dashboard_queries

prometheus_template() {
  mkdir -p "$work/rules"
  cp "$prom/kafka2redis.rules.yml" "$work/rules/"
  if [ -f "$work/dashboard/dashboard.rules.yml" ]; then cp "$work/dashboard/dashboard.rules.yml" "$work/rules/"; fi
  sed -e "s|@PORT@|9100|g" -e "s|@RULES_DIR@|$work/rules|g" "$prom/prometheus-test.yml" >"$work/prometheus.yml"
  if grep -n '@[A-Z_]*@' "$work/prometheus.yml"; then
    echo "unreplaced token in $prom/prometheus-test.yml"
    return 1
  fi
  "$PROMTOOL" check config "$work/prometheus.yml"
}
step "Prometheus test template" prometheus_template

echo "check-deploy: $passed passed, $failed failed"
[ "$failed" = 0 ]
