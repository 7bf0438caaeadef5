#!/usr/bin/env bash
# `make run`: the reference system as local processes, under `svckit run`.
#
# Runs every Procfile entry whose program is built (a service still being
# written is skipped, with a note), prints where to reach each one and how to
# log in, then hands the terminal to the supervisor: Ctrl-C stops everything.
# Arguments, and the words of RUN_ARGS, go to `svckit run`:
#
#   make run RUN_ARGS="--scale products=2"     two products, ports 8082 and 8300
#   make run RUN_ARGS=demo                     only the example app
#
# Environment given to the services (each overridable): DATA_DIR=var,
# HOST=127.0.0.1, AUTH_JWKS_URL pointing at auth. NATS runs with one user per
# service (deploy/nats-users.conf): their passwords are made at the first run
# into $DATA_DIR/nats-passwords (0600, kept across runs) and exported, and
# each Procfile entry signs in with its own in its NATS_URL. On a terminal svckit run adds LOG_FORMAT=text and LOG_COLOR=always
# (NO_COLOR=1 for none). SVCKIT_BUILD picks the binaries (build/san: ASan).
set -euo pipefail
cd "$(dirname "$0")/.."

svckit=${SVCKIT_BUILD:-build}/bin/svckit
if [ ! -x "$svckit" ]; then
  echo "run: $svckit is not built; run \`make run\`, which builds it" >&2
  exit 1
fi

args=("$@")
if [ -n "${RUN_ARGS:-}" ]; then
  read -r -a extra <<<"$RUN_ARGS"
  args+=("${extra[@]}")
fi

mkdir -p var
export DATA_DIR=${DATA_DIR:-var}
export HOST=${HOST:-127.0.0.1}
export SVCKIT_BUILD=${SVCKIT_BUILD:-build}
export AUTH_JWKS_URL=${AUTH_JWKS_URL:-http://127.0.0.1:${AUTH_PORT:-8081}/.well-known/jwks.json}
mkdir -p "$DATA_DIR/nats"

# NATS passwords: letters only (nats-server reads "$X" in its configuration as
# a value: "8e51..." would be a number), 48 of a-p, 192 bits each.
passwords=$DATA_DIR/nats-passwords
(
  umask 077
  touch "$passwords"
  # One per user; a user added since the file was made gets its own.
  for user in GATEWAY AUTH PRODUCTS ORDERS PAYMENTS RECOMMENDATIONS OPS; do
    grep -q "^${user}_NATS_PASSWORD=" "$passwords" ||
      printf '%s_NATS_PASSWORD=%s\n' "$user" "$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n' | tr 0-9 g-p)" >>"$passwords"
  done
)
set -a
# shellcheck source=/dev/null
. "$passwords"
set +a

# The Node.js example (Procfile entry recommendations) needs its npm packages,
# installed once from its package-lock.json; when they cannot be (no npm, no
# network and no cache), it is left out with a note rather than restarted in
# a loop. Without node, --skip-missing leaves it out.
recs=examples/recommendations
if [ -x /usr/bin/node ] && [ ! -e "$recs/node_modules/nats/package.json" ] &&
  ! { command -v npm >/dev/null && npm ci --prefix "$recs" --no-audit --no-fund --loglevel=error >/dev/null 2>&1; }; then
  echo "svckit: recommendations left out: cannot install its npm packages (npm ci --prefix $recs)" >&2
  args+=(--scale recommendations=0)
fi

# What will run: "name port command..." per instance. The notes about skipped
# entries come once, from the real run below.
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
if ! plan=$("$svckit" run --dry-run --skip-missing "${args[@]}" 2>"$errors"); then
  cat "$errors" >&2
  exit 1
fi
rm -f "$errors"
trap - EXIT

url_host=$HOST
case $url_host in 0.0.0.0 | "::" | "") url_host=127.0.0.1 ;; esac
echo "svckit: the reference system (make run); state in $DATA_DIR/"
has_auth=0
while read -r name port _; do
  if [ "$port" != "-" ]; then
    if [ "$name" = nats ]; then
      printf '  %-10s nats://%s:%s\n' "$name" "$url_host" "$port"
    else
      printf '  %-10s http://%s:%s\n' "$name" "$url_host" "$port"
    fi
  else
    printf '  %-10s (no port)\n' "$name"
  fi
  [ "$name" = auth ] && has_auth=1
done <<<"$plan"
if [ "$has_auth" = 1 ]; then
  if [ -n "${ADMIN_PASSWORD:-}" ]; then
    echo "  admin login: ${ADMIN_USERNAME:-admin}, password from ADMIN_PASSWORD"
  else
    echo "  admin login: ${ADMIN_USERNAME:-admin}, password: see $DATA_DIR/admin-password"
    echo "               (auth generates it on first start; set ADMIN_PASSWORD to choose it)"
  fi
fi
echo "  svckit status: NATS_URL=nats://ops:\$OPS_NATS_PASSWORD@$url_host:${NATS_PORT:-4222} (password in $passwords)"
echo "  Ctrl-C stops everything."
echo

exec "$svckit" run --skip-missing "${args[@]}"
