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
# HOST=127.0.0.1, AUTH_JWKS_URL pointing at auth. NATS runs with one NKEY
# user per service (deploy/nats-users.conf): their seeds are made at the first
# run into $DATA_DIR/nkeys/<name>.nk (`svckit nkey`, mode 600, kept across
# runs), their public keys exported as <NAME>_NKEY for nats-server, and each
# Procfile entry signs in with its own seed (NATS_NKEY_SEED_FILE). On a
# terminal svckit run adds LOG_FORMAT=text and LOG_COLOR=always
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

# NATS users: a seed per service, made once, and its public key for
# deploy/nats-users.conf ($GATEWAY_NKEY, ...).
keys=$DATA_DIR/nkeys
nkeys=$(SVCKIT=$svckit scripts/nats-nkeys.sh "$keys")
while IFS= read -r line; do export "${line?}"; done <<<"$nkeys"

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
  [ "$name" = gateway ] && [ "$port" != "-" ] && gateway_url=http://$url_host:$port
done <<<"$plan"
if [ -n "${gateway_url:-}" ]; then
  echo "  API explorer: $gateway_url/docs    dashboard (admin token): $gateway_url/dashboard"
fi
if [ "$has_auth" = 1 ]; then
  if [ -n "${ADMIN_PASSWORD:-}" ]; then
    echo "  admin login: ${ADMIN_USERNAME:-admin}, password from ADMIN_PASSWORD"
  else
    echo "  admin login: ${ADMIN_USERNAME:-admin}, password: see $DATA_DIR/admin-password"
    echo "               (auth generates it on first start; set ADMIN_PASSWORD to choose it)"
  fi
fi
echo "  svckit status: NATS_URL=nats://$url_host:${NATS_PORT:-4222} NATS_NKEY_SEED_FILE=$keys/ops.nk"
echo "  Ctrl-C stops everything."
echo

exec "$svckit" run --skip-missing "${args[@]}"
