#!/usr/bin/env bash
# Builds the Debian package: target/debian/kafka2redis_<version>-1_<arch>.deb (path printed last).
#
#   1. a release build of the daemon (skipped with K2R_PACKAGE_NO_BUILD=1: the binary already in
#      target/release is packaged as it is);
#   2. `target/release/kafka2redis generate-assets target/assets`: the daemon writes its own man page
#      and shell completions from its command-line definition (a hidden subcommand, built on
#      clap_mangen and clap_complete). The interface it must keep: given a directory, it creates it if
#      needed and writes exactly these files into it, exiting 0:
#        kafka2redis.1      the man page (roff)
#        kafka2redis.bash   bash completion
#        _kafka2redis       zsh completion
#        kafka2redis.fish   fish completion
#      With K2R_PACKAGE_ASSETS=DIR the files are copied from DIR instead (for testing the packaging);
#   3. `cargo deb --no-build --strip` with [package.metadata.deb] in Cargo.toml: the binary stripped in
#      /usr/bin, the systemd unit (deploy/systemd), the config as a conffile in /etc/kafka2redis,
#      maintainer scripts (deploy/debian), the man page, completions, and the Prometheus rules and
#      Grafana dashboard under /usr/share/kafka2redis.
#
# Needs cargo-deb (installed with `cargo install --locked cargo-deb` when missing) and the build
# dependencies of scripts/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

CARGO_DEB_VERSION="${CARGO_DEB_VERSION:-3.8.0}"
if ! cargo deb --version >/dev/null 2>&1; then
  echo "package: installing cargo-deb $CARGO_DEB_VERSION (once)"
  cargo install --locked "cargo-deb@$CARGO_DEB_VERSION"
fi

target_dir="${CARGO_TARGET_DIR:-target}"
bin="$target_dir/release/kafka2redis"
if [ "${K2R_PACKAGE_NO_BUILD:-0}" != 1 ]; then
  scripts/install-deps.sh
  cargo build --release --locked --bin kafka2redis
fi
[ -x "$bin" ] || { echo "package: no binary at $bin" >&2; exit 1; }

# Cargo.toml's assets name target/assets/... whatever CARGO_TARGET_DIR is.
assets=target/assets
rm -rf "$assets"
mkdir -p "$assets"
if [ -n "${K2R_PACKAGE_ASSETS:-}" ]; then
  cp -r "$K2R_PACKAGE_ASSETS"/. "$assets"/
else
  "$bin" generate-assets "$assets"
fi
for f in kafka2redis.1 kafka2redis.bash _kafka2redis kafka2redis.fish; do
  [ -s "$assets/$f" ] || { echo "package: the asset generator did not write $assets/$f" >&2; exit 1; }
done

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo deb --no-build --strip --locked >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
cat "$log" >&2
out="$(tail -1 "$log")"
[ -f "$out" ] || { echo "package: cargo deb did not name a .deb (last line: $out)" >&2; exit 1; }
echo "$out"
