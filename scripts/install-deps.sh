#!/usr/bin/env bash
# Installs what pgwarden's demo and tests need on a Debian machine, and only what is missing.
#   scripts/install-deps.sh           PostgreSQL server binaries, pgbench, redis-server
#   scripts/install-deps.sh bench     the same plus PgBouncer
# As root it uses apt-get; otherwise it names the packages to install and fails.
set -euo pipefail

want_bench=${1:-}
missing=()

have_pg_server() {
  [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/initdb" ] && return 0
  if command -v pg_config >/dev/null 2>&1; then
    local bindir; bindir=$(pg_config --bindir 2>/dev/null || true)
    [ -x "$bindir/initdb" ] && [ -x "$bindir/postgres" ] && return 0
  fi
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

have_pg_server || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v pgbench >/dev/null 2>&1 || missing+=(postgresql-client)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "$want_bench" = bench ]; then
  command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
fi

# Rust: the workspace's rust-version. Debian's own cargo is older than that on Debian 12 and
# 13, so the toolchain comes from rustup (Debian 13 packages it; elsewhere its installer).
need_rust=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$(dirname "$0")/../Cargo.toml")
rust_ok() {
  local v; v=$(cargo --version 2>/dev/null | awk '{print $2}') || return 1
  [ -n "$v" ] && [ "$(printf '%s\n%s\n' "$need_rust" "$v" | sort -V | head -n1)" = "$need_rust" ]
}
if ! rust_ok; then
  if [ "$(id -u)" -eq 0 ] && ! command -v rustup >/dev/null 2>&1 \
     && apt-get install -y -qq --no-install-recommends rustup >/dev/null 2>&1; then
    rustup default stable >/dev/null
  elif command -v rustup >/dev/null 2>&1; then
    rustup default stable >/dev/null
  fi
  if ! rust_ok; then
    echo "pgwarden needs Rust $need_rust or newer (found: $(cargo --version 2>/dev/null || echo none))." >&2
    echo "Install it with rustup (Debian 13: apt-get install rustup; then rustup default stable)." >&2
    exit 1
  fi
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
# De-duplicate.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

if [ "$(id -u)" -ne 0 ]; then
  echo "pgwarden needs these Debian packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts a cluster and a redis service on install; pgwarden never uses them.
