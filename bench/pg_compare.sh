#!/usr/bin/env bash
# The store on SQLite against PostgreSQL (issue 12 item 2), on this machine:
#   1. durable writes: bench/store.c (row + outbox event per write; one
#      transaction per write, group commit) on a SQLite file, then with
#      DATABASE_URL on a throwaway PostgreSQL server with fsync on;
#   2. products reads: build/bin/products (SQLite) and build/pg/bin/products
#      (PostgreSQL, same server), WORKERS=1, wrk -t1 -c64, 2 s warm-up then
#      5 s, on /products/7 and /products?limit=30 with a valid token.
# Needs make CI=true and make PG=1 CI=true bins, wrk, postgresql. Prints
# markdown; not pinned to CPUs (bench/run.sh is the careful harness).
#
#   bash bench/pg_compare.sh [WRITERS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
WRITERS=${1:-8}
SECONDS_PER=${2:-3}
PY=/usr/bin/python3
PGS=tests/integration/pg_support.py

mkdir -p build/bench
# shellcheck disable=SC2046 # pkg-config's flags are words
cc -std=gnu11 -O2 -Wall -Wextra -Werror -Iinclude bench/store.c build/lib/libsvckit.a -Wl,--require-defined=svc__pg \
  $(pkg-config --libs libuv jansson libsodium sqlite3 zlib libpq) -lhttp_parser -lpthread -lm -o build/bench/store-pg

pgdir=$(mktemp -d /tmp/svckit-pgbench-XXXXXX)
work=$(mktemp -d /tmp/svckit-pgbench-work-XXXXXX)
cleanup() { $PY $PGS stop "$pgdir"; rm -rf "$pgdir" "$work"; }
trap cleanup EXIT
url=$($PY $PGS start "$pgdir" --durable)

echo "### Durable writes ($WRITERS writers, ${SECONDS_PER} s per design)"
echo; echo "SQLite (file under /tmp):"; echo
build/bench/store-pg "$work" "$WRITERS" "$SECONDS_PER"
echo; echo "PostgreSQL (local server over TCP, fsync on):"; echo
DATABASE_URL=$url build/bench/store-pg "$work" "$WRITERS" "$SECONDS_PER"

secret=bench-secret-0123456789-0123456789-abcdef
token=$(cd tests/integration && $PY -c "
from services_fixtures import sign_hs256, claims
print(sign_hs256(b'$secret', claims()))")
free_port() { $PY -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }

# reads NAME PROGRAM DATABASE_URL
reads() {
  local dir port pid path i
  dir=$(mktemp -d "$work/products-XXXXXX")
  port=$(free_port)
  env PORT="$port" HOST=127.0.0.1 WORKERS=1 DATA_DIR="$dir" NATS_URL=none JWT_SECRET=$secret LOG_LEVEL=warn \
    DATABASE_URL="$3" "$2" >"$dir/log" 2>&1 &
  pid=$!
  for i in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true)" = 200 ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$dir/log"; exit 1; }
    sleep 0.1
  done
  for path in "/products/7" "/products?limit=30"; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$port$path")" = 200 ] \
      || { echo "$1 $path: not 200" >&2; exit 1; }
    wrk -t1 -c64 -d2s -H "Authorization: Bearer $token" "http://127.0.0.1:$port$path" >/dev/null
    wrk -t1 -c64 -d5s -H "Authorization: Bearer $token" "http://127.0.0.1:$port$path" |
      awk -v n="$1" -v p="$path" '/Latency/ {lat=$2} /Requests\/sec/ {rps=$2} /Non-2xx/ {bad=$5}
        END {printf "| %s | %s | %s | %s | %s |\n", n, p, rps, lat, bad ? bad : 0}'
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
echo; echo "### products reads (WORKERS=1, wrk -t1 -c64 -d5s)"; echo
echo "| store | path | req/s | mean latency | non-2xx |"
echo "|---|---|---:|---:|---:|"
reads sqlite build/bin/products ""
reads postgres build/pg/bin/products "$url"
