#!/usr/bin/env bash
# shellcheck disable=SC2016 # the single-quoted bash -c snippets expand in the child shell
# Builds the Debian package with scripts/package.sh and checks it on this machine, as root:
#   - the .deb: control fields, the conffile, every file in place, the binary stripped;
#   - the systemd unit: `systemd-analyze verify` once the package put the binary in place, and
#     `systemd-analyze security --offline` must rate its exposure low;
#   - install (dpkg -i): files, the kafka2redis system user and group, the config readable by that
#     group only, `kafka2redis --help`, and the shipped config loading cleanly as that user
#     (`kafka2redis check` gets past the config and only fails to reach Kafka and Redis);
#   - upgrade to a newer revision: the admin's edits to the conffile stay;
#   - remove (dpkg -r): binary and unit gone, config and user kept;
#   - purge (dpkg -P): config, /etc/kafka2redis, user and group gone.
# It installs and purges the package system-wide: it refuses to run where kafka2redis is already
# installed. Ends with "check-package: N passed, N failed".
#
# Environment: K2R_PACKAGE_NO_BUILD=1 and K2R_PACKAGE_ASSETS=DIR are passed to scripts/package.sh
# (package the binary already built; take the man page and completions from DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

if [ "$(id -u)" != 0 ]; then
  echo "check-package: run as root (it installs and purges the package)" >&2
  exit 1
fi
if dpkg-query -W -f='${Status}' kafka2redis 2>/dev/null | grep -q "installed\|config-files"; then
  echo "check-package: kafka2redis is already installed here; purge it first (dpkg -P kafka2redis)" >&2
  exit 1
fi
if getent passwd kafka2redis >/dev/null; then
  echo "check-package: a user kafka2redis exists already; this check needs to create it" >&2
  exit 1
fi

need=()
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v readelf >/dev/null || need+=(binutils)
command -v adduser >/dev/null || need+=(adduser)
if [ ${#need[@]} -gt 0 ]; then
  echo "check-package: apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work="$(mktemp -d)"
cleanup() {
  if dpkg-query -W kafka2redis >/dev/null 2>&1; then dpkg -P kafka2redis >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
ok() {
  passed=$((passed + 1))
  echo "  ok: $*"
}
bad() {
  failed=$((failed + 1))
  echo "  FAILED: $*"
}
check() { # check DESCRIPTION COMMAND...
  local what="$1"
  shift
  if "$@" >"$work/out" 2>&1; then ok "$what"; else
    bad "$what"
    sed 's/^/    /' "$work/out" | tail -20
  fi
}
man_excluded() { grep -rqs 'path-exclude=/usr/share/man' /etc/dpkg/dpkg.cfg.d/; }

echo "--- build"
deb="$(scripts/package.sh | tail -1)"
echo "package: $deb"
version="$(dpkg-deb -f "$deb" Version)"

echo "--- the .deb"
dpkg-deb -c "$deb" | awk '{ print $NF }' | sed 's|^\./|/|' >"$work/contents"
expected_files=(
  /usr/bin/kafka2redis
  /usr/lib/systemd/system/kafka2redis.service
  /etc/kafka2redis/kafka2redis.toml
  /usr/share/man/man1/kafka2redis.1.gz
  /usr/share/bash-completion/completions/kafka2redis
  /usr/share/zsh/vendor-completions/_kafka2redis
  /usr/share/fish/vendor_completions.d/kafka2redis.fish
  /usr/share/kafka2redis/prometheus/kafka2redis.rules.yml
  /usr/share/kafka2redis/grafana/kafka2redis.json
  /usr/share/doc/kafka2redis/copyright
)
for f in "${expected_files[@]}"; do
  check "the .deb holds $f" grep -qx "$f" "$work/contents"
done
dpkg-deb -e "$deb" "$work/control"
check "conffiles lists /etc/kafka2redis/kafka2redis.toml" grep -qx /etc/kafka2redis/kafka2redis.toml "$work/control/conffiles"
check "Depends names adduser" bash -c "dpkg-deb -f '$deb' Depends | grep -qw adduser"
check "postinst creates the user, postrm removes it" bash -c \
  "grep -q 'adduser' '$work/control/postinst' && grep -q 'deluser' '$work/control/postrm'"
dpkg-deb -x "$deb" "$work/root"
check "the binary is stripped (no .symtab, no DWARF)" bash -c \
  "! readelf -S '$work/root/usr/bin/kafka2redis' | grep -qE '\\.symtab|\\.debug_(info|line|str|abbrev)'"

echo "--- install $version"
check "dpkg -i" dpkg -i "$deb"
for f in "${expected_files[@]}"; do
  if [ "$f" = /usr/share/man/man1/kafka2redis.1.gz ] && [ ! -e "$f" ] && man_excluded; then
    echo "  skipped: $f (dpkg on this machine excludes man pages)"
    continue
  fi
  check "installed: $f" test -s "$f"
done
check "the binary is executable" test -x /usr/bin/kafka2redis
check "user kafka2redis: a system user without a login shell" bash -c '
  IFS=: read -r _ _ uid _ _ home shell < <(getent passwd kafka2redis)
  [ "$uid" -lt 1000 ] && [ "$home" = /nonexistent ] && [ "${shell##*/}" = nologin -o "${shell##*/}" = false ]'
check "group kafka2redis exists" getent group kafka2redis
check "/etc/kafka2redis is root:kafka2redis 750" bash -c '[ "$(stat -c %U:%G:%a /etc/kafka2redis)" = root:kafka2redis:750 ]'
check "the config is root:kafka2redis 640" bash -c \
  '[ "$(stat -c %U:%G:%a /etc/kafka2redis/kafka2redis.toml)" = root:kafka2redis:640 ]'
check "kafka2redis --help" bash -c '/usr/bin/kafka2redis --help | grep -q "Usage: kafka2redis"'
unit=/usr/lib/systemd/system/kafka2redis.service
man_flag=--man=no
if command -v man >/dev/null && [ -e /usr/share/man/man1/kafka2redis.1.gz ]; then man_flag=--man=yes; fi
check "systemd-analyze verify $man_flag" systemd-analyze verify "$man_flag" "$unit"
check "systemd-analyze security: exposure at most 2.0" systemd-analyze security --offline=true --threshold=20 "$unit"
check "ExecStart is the packaged binary and config" grep -qx \
  'ExecStart=/usr/bin/kafka2redis --config /etc/kafka2redis/kafka2redis.toml' "$unit"
# The shipped config loads as the service user: `check` prints "config: ok" and then fails only on
# reaching Kafka and Redis (exit 1; a config error would exit 2 before connecting).
config_loads() {
  local rc=0
  timeout 60 runuser -u kafka2redis -- /usr/bin/kafka2redis --config /etc/kafka2redis/kafka2redis.toml \
    check >"$work/check.out" 2>&1 || rc=$?
  cat "$work/check.out"
  [ "$rc" != 2 ] && [ "$rc" != 124 ] && grep -q '^config: ok' "$work/check.out"
}
check "the shipped config loads as user kafka2redis (kafka2redis check)" config_loads

echo "--- upgrade keeps the admin's config"
echo '# edited by the admin' >>/etc/kafka2redis/kafka2redis.toml
# The same package as a newer revision: repacked with dpkg-deb (cargo deb would delete the first .deb
# from target/debian).
dpkg-deb -R "$deb" "$work/rev2"
sed -i "s/^Version: .*/Version: ${version%-*}-9999/" "$work/rev2/DEBIAN/control"
deb2="$work/kafka2redis-rev2.deb"
if dpkg-deb -Zgzip -b "$work/rev2" "$deb2" >/dev/null; then
  check "dpkg -i revision 2 (upgrade)" dpkg -i "$deb2"
  check "upgraded to $(dpkg-deb -f "$deb2" Version)" bash -c \
    "[ \"\$(dpkg-query -W -f='\${Version}' kafka2redis)\" = '$(dpkg-deb -f "$deb2" Version)' ]"
  check "the edited config survived the upgrade" grep -qx '# edited by the admin' /etc/kafka2redis/kafka2redis.toml
  check "the config is still root:kafka2redis 640" bash -c \
    '[ "$(stat -c %U:%G:%a /etc/kafka2redis/kafka2redis.toml)" = root:kafka2redis:640 ]'
else
  bad "repack as a newer revision"
fi

echo "--- remove"
check "dpkg -r" dpkg -r kafka2redis
check "binary gone" test ! -e /usr/bin/kafka2redis
check "unit gone" test ! -e "$unit"
check "config kept after remove" test -f /etc/kafka2redis/kafka2redis.toml
check "user kept after remove" getent passwd kafka2redis

echo "--- purge"
check "dpkg -P" dpkg -P kafka2redis
check "config gone" test ! -e /etc/kafka2redis/kafka2redis.toml
check "/etc/kafka2redis gone" test ! -e /etc/kafka2redis
check "user gone" bash -c '! getent passwd kafka2redis'
check "group gone" bash -c '! getent group kafka2redis'
check "no package state left" bash -c '! dpkg-query -W kafka2redis 2>/dev/null'

echo "check-package: $passed passed, $failed failed"
[ "$failed" = 0 ]
