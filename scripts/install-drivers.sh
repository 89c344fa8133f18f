#!/usr/bin/env bash
# Installs the client drivers the compatibility tests use, into the work tree only:
#   Python asyncpg and psycopg 3 into target/drivers/python (pip --target),
#   node-postgres into tests/drivers/node/node_modules (npm).
# Installs python3/pip and nodejs/npm with apt-get when missing and running as root.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "the driver tests need: ${need[*]} (sudo apt-get install -y ${need[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

py_dir=target/drivers/python
if ! PYTHONPATH="$py_dir" python3 -c "import asyncpg, psycopg" >/dev/null 2>&1; then
  echo "installing asyncpg and psycopg into $py_dir"
  mkdir -p "$py_dir"
  python3 -m pip install --quiet --disable-pip-version-check --target "$py_dir" \
    "asyncpg>=0.29" "psycopg[binary]>=3.1"
fi

if [ ! -d tests/drivers/node/node_modules/pg ]; then
  echo "installing node-postgres into tests/drivers/node"
  (cd tests/drivers/node && npm install --silent --no-audit --no-fund >/dev/null)
fi
