#!/usr/bin/env bash
# A profile-guided release build of pgwarden (`make build-pgo`):
#   1. an instrumented build (target/pgo-gen),
#   2. `pgwarden-bench --train` through it: every pgbench workload of `make bench` for 5 s at
#      10 and 200 clients against a throwaway cluster, which writes the profile,
#   3. the profile merged with llvm-profdata (target/pgo/pgwarden.profdata),
#   4. the optimised build from it: target/pgo-use/release/pgwarden.
# Separate target directories, so the usual target/release build is left as it is.
# llvm-profdata: rustup's llvm-tools if installed, else Debian's llvm-19 (installed if missing,
# as root); it must read the raw profiles of rustc's LLVM (19 reads those of rustc 1.95's 22).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/target/pgo

find_profdata() {
  local sysroot; sysroot=$(rustc --print sysroot)
  for p in "$sysroot"/lib/rustlib/*/bin/llvm-profdata /usr/lib/llvm-19/bin/llvm-profdata; do
    [ -x "$p" ] && { echo "$p"; return 0; }
  done
  return 1
}
profdata=$(find_profdata || true)
if [ -z "$profdata" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "build-pgo: llvm-profdata not found: install Debian's llvm-19 (or rustup's llvm-tools)" >&2
    exit 1
  fi
  echo "build-pgo: installing llvm-19 (for llvm-profdata) ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends llvm-19 >/dev/null
  profdata=$(find_profdata)
fi

rm -rf "$out"
mkdir -p "$out/raw"

echo "build-pgo: 1/4 instrumented build ..."
RUSTFLAGS="-Cprofile-generate=$out/raw" \
  cargo build --quiet --release -p pgwarden --bin pgwarden --target-dir target/pgo-gen
cargo build --quiet --release -p pgwarden-bench --bin pgwarden-bench

echo "build-pgo: 2/4 training run ..."
ulimit -n 65536 2>/dev/null || true
LLVM_PROFILE_FILE="$out/raw/pgwarden-%p-%m.profraw" \
  "${CARGO_TARGET_DIR:-target}/release/pgwarden-bench" --train --pgwarden target/pgo-gen/release/pgwarden
shopt -s nullglob
raws=("$out"/raw/pgwarden-*.profraw)
if [ ${#raws[@]} -eq 0 ]; then
  echo "build-pgo: the training run left no profile in $out/raw" >&2
  exit 1
fi

echo "build-pgo: 3/4 merging ${#raws[@]} profile(s) with $profdata ..."
if ! "$profdata" merge -o "$out/pgwarden.profdata" "${raws[@]}"; then
  echo "build-pgo: $profdata cannot read the profiles of this rustc" \
    "($(rustc --version --verbose | sed -n 's/^LLVM version: //p' | sed 's/^/LLVM /')):" \
    "install an llvm-profdata at least as new (rustup's llvm-tools match it)" >&2
  exit 1
fi

echo "build-pgo: 4/4 optimised build ..."
RUSTFLAGS="-Cprofile-use=$out/pgwarden.profdata -Cllvm-args=-pgo-warn-missing-function=false" \
  cargo build --quiet --release -p pgwarden --bin pgwarden --target-dir target/pgo-use
# The build script reads the flags it was built with: a check that the profile was used.
version=$(target/pgo-use/release/pgwarden --version)
case $version in
  *profile-guided*) ;;
  *) echo "build-pgo: target/pgo-use/release/pgwarden is not a profile-guided build ($version)" >&2; exit 1 ;;
esac
echo "build-pgo: built target/pgo-use/release/pgwarden: $version"
