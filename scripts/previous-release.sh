#!/usr/bin/env bash
# Builds the previous release's kafka2redis binary, for the mid-stream upgrade test in
# tests/fence_and_types.rs (K2R_PREVIOUS_BIN), and prints its path on stdout.
#   scripts/previous-release.sh            # a debug build, beside scripts/test.sh's
#   scripts/previous-release.sh --release  # a release build, beside scripts/faults.sh's
# The previous release is the last commit of the round before numbered fences, commit marks and
# members' fingerprints (2026-12-02, 6481521); there is no tag. K2R_PREVIOUS_COMMIT names another.
# It is built from a temporary git worktree into this checkout's cargo target directory, so the
# dependencies already built are reused and only the crate compiles; the binary is copied to
# <target>/previous/kafka2redis, and the worktree and the old crate's build files are removed. The
# next cargo command of this checkout puts its own binary back in <target>/<profile>/.
# Exit status: 0 built, 2 a bad option, 3 the commit is not in this clone, else the build failed.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=()
dir=debug
for arg in "$@"; do
  case "$arg" in
    --release) profile=(--release) dir=release ;;
    *) echo "previous-release.sh: unknown option $arg (--release)" >&2; exit 2 ;;
  esac
done
commit="${K2R_PREVIOUS_COMMIT:-64815213913d4cdfbb7591dd6bbd4cde1ea37955}"
if ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
  echo "previous-release.sh: commit $commit is not in this clone (a shallow clone? fetch the history)" >&2
  exit 3
fi
target="${CARGO_TARGET_DIR:-$PWD/target}"
mkdir -p "$target/previous"
work="$(mktemp -d)"
stamp="$work/stamp"
touch "$stamp"
cleanup() {
  git worktree remove --force "$work/tree" 2>/dev/null || true
  git worktree prune
  # The old crate's artifacts (its library, binary and test harness), not the shared dependencies.
  find "$target/$dir/deps" -maxdepth 1 -newer "$stamp" \
    \( -name 'kafka2redis-*' -o -name 'libkafka2redis-*' -o -name 'config_errors-*' \) \
    -exec rm -rf {} + 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
git worktree add --quiet --detach "$work/tree" "$commit"
# With a test target, cargo resolves the dependencies' features as `cargo test` does, so the ones
# the test build made are reused as they are.
(cd "$work/tree" && CARGO_TARGET_DIR="$target" cargo build "${profile[@]}" --bin kafka2redis --test config_errors >&2)
cp "$target/$dir/kafka2redis" "$target/previous/kafka2redis"
echo "$target/previous/kafka2redis"
