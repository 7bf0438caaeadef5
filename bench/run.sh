#!/usr/bin/env bash
# bench/run.sh: the svckit benchmark (`make bench`). Method and numbers: bench/README.md.
#
# Every scenario (a server) is run in the same invocation, pinned to one CPU, with
# wrk pinned to the other: requests/s and p50/p99 latency (median of ROUNDS rounds,
# order alternating), RSS idle and under load, RSS with N idle connections, and the
# time from exec to the first 200 on its readiness path. The groups:
#   demo      GET /products of examples/demo (cached and rendered) vs nginx and the ceiling
#   products  GET /products?limit=30 with a token on services/products vs the same
#             bytes from nginx and the ceiling
#   login     POST /auth/login on services/auth (Argon2id: slow on purpose)
#   gateway   GET /products/1 through the gateway (client -> gateway -> NATS -> products)
#             against products directly, with 1 and 3 products instances (issue 4)
#   auth-timing  POST /auth/login one at a time: unknown user vs wrong password vs
#             right password, medians and p90 of each (bench/login_timing.py; not wrk)
#   search-flood one user's distinct searches on products against another user's
#             cached reads, with and without the search limit (bench/search_flood.py)
#   gzip      the products group's request without and with Accept-Encoding: gzip (issue 8)
#   store     durable writes/s: group commit (svc_db_write) against one transaction per
#             write, BENCH_STORE_WRITERS threads, synchronous=FULL, on the disk under
#             build/bench (bench/store.c; issue 10)
# Results go to build/bench/results.{md,json} and the table is printed at the end.
#
# Environment (all optional):
#   BENCH_DURATION=10     seconds of each measured wrk run
#   BENCH_WARMUP=2        seconds of wrk warm-up before each measured run (not counted)
#   BENCH_CONNS=64        wrk keep-alive connections (wrk -t1 -c CONNS)
#   BENCH_ROUNDS=3        rounds; even rounds run the scenarios in reverse order
#   BENCH_IDLE_CONNS=10000  idle connections for the idle-connection cost; 0 skips it
#   BENCH_READY_RUNS=5    exec-to-ready samples per scenario; 0 skips it
#   BENCH_LOGIN_DURATION=5 BENCH_LOGIN_WARMUP=1 BENCH_LOGIN_CONNS=8   the login scenario's
#   BENCH_TIMING_SAMPLES=200   auth-timing: logins of each kind
#   BENCH_FLOOD_SECONDS=8 BENCH_FLOOD_CONNS=32   search-flood: each flood, its connections
#   BENCH_STORE_WRITERS=8 BENCH_STORE_SECONDS=5   store: writer threads, seconds per design
#   BENCH_LAT_CONNS=1 BENCH_LAT_DURATION=5   the gateway group's fixed-concurrency
#                         latency runs (after the -c CONNS run, same server), one per value
#   BENCH_HALF_DURATION=10 BENCH_HALF_WARMUP=2   the gateway group's constant-rate runs
#                         (bench/rate.c) at half of the gateway's maximum req/s, per round
#   BENCH_KILL_DURATION=30 BENCH_KILL_RATE=1000   the kill loop: 3 products instances
#                         behind the gateway, one SIGKILLed every 2 s and restarted 1 s
#                         later, under a constant BENCH_KILL_RATE req/s; 0 skips it
#   BENCH_GW_PIN=0        1: the gateway group's servers (gateway, nats-server, products)
#                         all on BENCH_SERVER_CPU, like the other groups; 0: unpinned
#   BENCH_NATS_GOMAXPROCS=1  GOMAXPROCS of the group's nats-server, as Procfile runs it
#                         (empty: Go's default, one per CPU)
#   BENCH_GATEWAY_BIN=build/bin/gateway   the gateway of the gateway group
#   BENCH_SERVER_CPU=0 BENCH_CLIENT_CPU=1   the CPUs of the server and of wrk
#   BENCH_PORT=18400      first port; scenario i listens on BENCH_PORT+i (+92..+99: helpers,
#                         +60..+62: the products instances behind the gateway)
#   BENCH_ONLY="ceiling nginx nginx-nolog svckit svckit-render ceiling-products nginx-products products products-plain products-gzip auth-login direct gateway gateway-3 auth-timing search-flood store"
#                         scenarios to run, in this order
#   BENCH_SVCKIT_BIN=build/bin/demo   the svckit server of the demo group
#   BENCH_AUTH_BIN=build/bin/auth BENCH_PRODUCTS_BIN=build/bin/products   the reference services
#   BENCH_SVCKIT_STANDIN=1  harness testing only: run the ceiling in the svckit slots
#   BENCH_BODY=FILE       serve this body instead of the one fetched from the demo
#   BENCH_NATS_URL=none   NATS_URL of the svckit services (default: none, HTTP only)
#   BENCH_NO_DEPS=1       do not run scripts/deps.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNS:-64}
ROUNDS=${BENCH_ROUNDS:-3}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
READY_RUNS=${BENCH_READY_RUNS:-5}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
BASE_PORT=${BENCH_PORT:-18400}
LOGIN_DURATION=${BENCH_LOGIN_DURATION:-5}
LOGIN_WARMUP=${BENCH_LOGIN_WARMUP:-1}
LOGIN_CONNS=${BENCH_LOGIN_CONNS:-8}
LAT_CONNS=${BENCH_LAT_CONNS:-1}
LAT_DURATION=${BENCH_LAT_DURATION:-5}
HALF_DURATION=${BENCH_HALF_DURATION:-10}
HALF_WARMUP=${BENCH_HALF_WARMUP:-2}
KILL_DURATION=${BENCH_KILL_DURATION:-30}
KILL_RATE=${BENCH_KILL_RATE:-1000}
KILL_EVERY_S=2             # one products instance is SIGKILLed this often...
KILL_DOWN_S=1              # ...and restarted this long after
RATE_CONNS=256             # most connections bench/rate.c may open
GW_PIN=${BENCH_GW_PIN:-0}
NATS_GOMAXPROCS=${BENCH_NATS_GOMAXPROCS-1}
read -ra SCENARIOS <<<"${BENCH_ONLY:-ceiling nginx nginx-nolog svckit svckit-render ceiling-products nginx-products products products-plain products-gzip auth-login direct gateway gateway-3 auth-timing search-flood store}"
# Groups with a driver of their own instead of wrk: taken out of the list, run apart.
SCRIPT_GROUPS=()
for i in "${!SCENARIOS[@]}"; do
    case ${SCENARIOS[$i]} in
    auth-timing | search-flood | store) SCRIPT_GROUPS+=("${SCENARIOS[$i]}"); unset 'SCENARIOS[i]' ;;
    esac
done
SCENARIOS=("${SCENARIOS[@]}")
TIMING_SAMPLES=${BENCH_TIMING_SAMPLES:-200}
FLOOD_SECONDS=${BENCH_FLOOD_SECONDS:-8}
FLOOD_CONNS=${BENCH_FLOOD_CONNS:-32}
STORE_WRITERS=${BENCH_STORE_WRITERS:-8}
STORE_SECONDS=${BENCH_STORE_SECONDS:-5}
SVCKIT_BIN=${BENCH_SVCKIT_BIN:-build/bin/demo}
AUTH_BIN=${BENCH_AUTH_BIN:-build/bin/auth}
PRODUCTS_BIN=${BENCH_PRODUCTS_BIN:-build/bin/products}
GATEWAY_BIN=${BENCH_GATEWAY_BIN:-build/bin/gateway}
STANDIN=${BENCH_SVCKIT_STANDIN:-0}
NATS=${BENCH_NATS_URL:-none}   # the services run HTTP only unless this names a NATS server
HOST=127.0.0.1
NOFILE=20000               # room for IDLE_CONNS on both ends
READY_TIMEOUT_S=10         # a server not answering by then is a failed scenario
IDLE_SETUP_TIMEOUT_S=90
SAMPLE_S=0.2               # RSS sampling period during a measured run
SETTLE_S=0.3               # pause after ready (and after idle setup) before reading RSS

OUT=build/bench
RUN=$OUT/run               # per-run scratch: configs, logs, wrk output; wiped each time
RAW=$OUT/raw.txt           # one line per measurement, read by bench/report.py
BODY=$PWD/$OUT/products30.json       # the demo group's body (from the demo)
PBODY=$PWD/$OUT/products-limit30.json # the products group's body (from products)
PRODUCTS_PATH="/products?limit=30"
# The reference services share one data directory for the whole run (the catalog
# is seeded once, so its bytes, timestamps included, are the same in every round).
SVC_DATA=$PWD/$RUN/svc-data
AUTH_PORT=$((BASE_PORT + 98))        # the helper auth: JWKS for products, tokens
# The gateway group: its own nats-server (started once, for the whole run, when the
# group is selected), products' reply to GET /products/1, and the ports of the
# products instances behind the gateway.
NATS_PORT=$((BASE_PORT + 96))
GW_NATS=nats://$HOST:$NATS_PORT
GW_PATH=/products/1
GBODY=$PWD/$OUT/products-1.json
GW_BACKEND_PORT=$((BASE_PORT + 60))
GW_DISCOVERY_TIMEOUT_S=10
ADMIN_PASSWORD=bench-admin-password
export BENCH_LOGIN_USER=benchuser BENCH_LOGIN_PASSWORD=bench-user-password  # bench/login.lua
LOGIN_JSON="{\"username\":\"$BENCH_LOGIN_USER\",\"password\":\"$BENCH_LOGIN_PASSWORD\"}"

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------
# Scenarios. scenario_<name> PORT sets the fields below; it returns 1 with S_SKIP
# set to leave the scenario out (it then shows as skipped in the results).
#   S_CMD    array: the server command line (run pinned to SERVER_CPU)
#   S_ENV    array: VAR=value added to the server's environment
#   S_PATH   the path wrk requests
#   S_BODY   what S_PATH must reply, byte for byte (default: the demo group's body)
#   S_READY  path that answers 200 once the server is ready
#   S_HDRS   array: extra request headers ("Name: value") for wrk, curl and idleconns
#   S_OUT    file the server's stdout is appended to (default /dev/null)
#   S_LOG    the server's access log file, or empty: emptied after warm-up, its size
#            per request is reported (proof that logging was on), removed after
#   S_NOTE   one line shown in the results
#   S_LABEL  the row's name in the results (default: the scenario's name)
#   S_GROUP  the results table it belongs to: demo (default), products, login, gateway
#            or gzip; req/s are compared with the group's ceiling* scenario (gateway:
#            direct; gzip: products-plain)
#   S_SETUP  optional function run after the server is ready, before any request
#            (e.g. log in and append "Authorization: Bearer ..." to S_HDRS)
#   S_CHECK  function checking the reply before the load, given the URL
#            (default check_body: a GET with S_HDRS must reply S_BODY exactly)
#   S_SCRIPT wrk's Lua script (default bench/latency.lua; it must print BENCH_WRK)
#   S_DURATION S_WARMUP S_CONNS   per-scenario wrk settings (default: the globals)
#   S_IDLE   0: no idle-connection test;  S_READYT  0: no exec-to-ready test
#   S_PIN    1 (default): the server runs on SERVER_CPU;  0: on every CPU, unpinned
#   S_PRE    optional function run before the server starts, given its port: starts
#            the processes it needs (e.g. the products instances behind the gateway)
#            with start_extra; they are stopped with the server, and their CPU and
#            RSS are counted with the server's
#   S_ACCT   array: PIDs of shared processes (the group's nats-server) whose CPU and
#            RSS are counted with the server's, but which are not stopped
#   S_LATCONNS  extra wrk runs after the measured one, one per connection count
#            ("4 1"), LAT_DURATION s each: latency at a fixed concurrency
# To add a scenario: write scenario_<name> and add <name> to BENCH_ONLY's default.
# ---------------------------------------------------------------------------
scenario_ceiling() {
    S_CMD=("$PWD/$OUT/ceiling" "$1" "$BODY" "$HOST")
    S_PATH=/products S_READY=/readyz S_LOG=
    S_NOTE="minimal epoll server, precomputed response (bench/ceiling.c)"
}

nginx_conf() { # PORT ACCESS_LOG BODY -> prints the config directory
    local dir=$PWD/$RUN/nginx-$1 user=
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && user="user root;"
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$1|g" -e "s|@HOST@|$HOST|g" \
        -e "s|@ACCESS_LOG@|$2|g" -e "s|@USER@|$user|g" -e "s|@PATH@|/products|g" \
        -e "s|@BODY@|$3|g" bench/nginx.conf.in >"$dir/nginx.conf"
    printf '%s' "$dir"
}

scenario_nginx() {
    local dir
    dir=$(nginx_conf "$1" "$PWD/$RUN/nginx-$1/access.log" "$BODY")
    S_CMD=(/usr/sbin/nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf")
    S_PATH=/products S_READY=/readyz S_LOG=$dir/access.log
    S_NOTE="nginx $NGINX_VERSION, static file, access log on (to a file, like svckit's)"
}

scenario_nginx-nolog() {
    local dir
    dir=$(nginx_conf "$1" off "$BODY")
    S_CMD=(/usr/sbin/nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf")
    S_PATH=/products S_READY=/readyz S_LOG=
    S_NOTE="nginx $NGINX_VERSION, static file, access_log off"
}

# The demo, as the svckit scenarios run it; $2 is DEMO_CACHE.
demo_scenario() {
    if [ "$STANDIN" = 1 ]; then
        scenario_ceiling "$1"
        S_LABEL="$S_LABEL STAND-IN"
        S_NOTE="STAND-IN (ceiling binary), for testing the harness only: not svckit"
        return 0
    fi
    if [ ! -x "$SVCKIT_BIN" ]; then
        S_SKIP="pending: $SVCKIT_BIN is not built"
        return 1
    fi
    S_CMD=("$(realpath "$SVCKIT_BIN")")
    S_ENV=(PORT="$1" HOST="$HOST" WORKERS=1 LOG_LEVEL=info SHUTDOWN_TIMEOUT=2 DRAIN_DELAY=0
           DEMO_CACHE="$2" NATS_URL="$NATS")
    S_PATH=/products S_READY=/readyz S_LOG=$PWD/$RUN/svckit-$1.log S_OUT=$S_LOG
}

# The recommended design for read-mostly data: the rendered list is kept in the
# worker's response cache (svckit/cache.h) and served from it with an ETag.
scenario_svckit() {
    S_LABEL="svckit (cached)"
    demo_scenario "$1" 1 || return 1
    [ "$STANDIN" = 1 ] ||
        S_NOTE="$SVCKIT_BIN, DEMO_CACHE=1: the list comes from svckit's per-worker response cache (svckit/cache.h), the recommended design for read-mostly data; WORKERS=1, access log on (stdout to a file)"
}

# The same binary rendering the 30 products with svckit's JSON writer on every
# request: the raw speed of request handling plus rendering.
scenario_svckit-render() {
    S_LABEL="svckit-render (no cache)"
    demo_scenario "$1" 0 || return 1
    S_IDLE=0 S_READYT=0 # the same binary as svckit: those two are svckit's row
    [ "$STANDIN" = 1 ] ||
        S_NOTE="$SVCKIT_BIN, DEMO_CACHE=0: renders the JSON on every request (raw writer speed, no cache); WORKERS=1, access log on; idle connections and ready time: see svckit (same binary)"
}

# The products group: the same request (path and a token of the same length) to
# every server, and the same reply bytes.
scenario_ceiling-products() {
    S_GROUP=products
    [ -s "$PBODY" ] || { S_SKIP="pending: ${PRODUCTS_SKIP:-no products body}"; return 1; }
    S_CMD=("$PWD/$OUT/ceiling" "$1" "$PBODY" "$HOST")
    S_PATH=$PRODUCTS_PATH S_READY=/readyz S_LOG='' S_BODY=$PBODY
    S_HDRS=("Authorization: Bearer $PTOKEN")
    S_IDLE=0 S_READYT=0 # the ceiling's row has them
    S_NOTE="the ceiling (bench/ceiling.c) sending products' reply to GET $PRODUCTS_PATH"
}

scenario_nginx-products() {
    S_GROUP=products
    [ -s "$PBODY" ] || { S_SKIP="pending: ${PRODUCTS_SKIP:-no products body}"; return 1; }
    local dir
    dir=$(nginx_conf "$1" "$PWD/$RUN/nginx-$1/access.log" "$PBODY")
    S_CMD=(/usr/sbin/nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf")
    S_PATH=$PRODUCTS_PATH S_READY=/readyz S_LOG=$dir/access.log S_BODY=$PBODY
    S_HDRS=("Authorization: Bearer $PTOKEN")
    S_IDLE=0 S_READYT=0 # nginx's row has them
    S_NOTE="nginx $NGINX_VERSION, products' reply as a static file, access log on"
}

# Logs in to the helper auth (prints the token, fails if there is none).
auth_token() {
    local reply
    reply=$(curl -sf -X POST -H 'Content-Type: application/json' -d "$LOGIN_JSON" \
        "http://$HOST:$AUTH_PORT/auth/login") || return 1
    reply=$(printf '%s' "$reply" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
    [ -n "$reply" ] || return 1
    printf '%s' "$reply"
}

products_login() {
    local token
    token=$(auth_token) || { log "products: login to auth on port $AUTH_PORT failed"; return 1; }
    S_HDRS+=("Authorization: Bearer $token")
}

products_env() { # PORT
    S_ENV=(PORT="$1" HOST="$HOST" WORKERS=1 LOG_LEVEL=info NATS_URL="$NATS" DATA_DIR="$SVC_DATA"
           AUTH_JWKS_URL="http://$HOST:$AUTH_PORT/.well-known/jwks.json"
           SHUTDOWN_TIMEOUT=2 DRAIN_DELAY=0)
}

scenario_products() {
    S_GROUP=products S_LABEL="products (svckit)"
    [ -z "$PRODUCTS_SKIP" ] || { S_SKIP="pending: $PRODUCTS_SKIP"; return 1; }
    S_CMD=("$(realpath "$PRODUCTS_BIN")")
    products_env "$1"
    S_PATH=$PRODUCTS_PATH S_READY=/readyz S_BODY=$PBODY
    S_LOG=$PWD/$RUN/products-$1.log S_OUT=$S_LOG
    S_SETUP=products_login
    S_NOTE="$PRODUCTS_BIN (SQLite catalog, per-worker response cache), WORKERS=1, token checked on every request (Authorization header; Ed25519 verified once, then a hit in the verified-token cache: one BLAKE2b; keys from the helper auth's JWKS), access log on"
}

# The gzip group (issue 8): the products group's request without and with
# `Accept-Encoding: gzip`, to the same binary in the same run. Both are served
# from products' response cache, which compressed the page once, when it stored it.
scenario_products-plain() {
    scenario_products "$1" || return 1
    S_GROUP=gzip S_LABEL="products, plain"
    S_IDLE=0 S_READYT=0 # the products row has them
    S_NOTE="$PRODUCTS_BIN as in the products group, no Accept-Encoding: the plain page"
}

scenario_products-gzip() {
    scenario_products "$1" || return 1
    S_GROUP=gzip S_LABEL="products, gzip"
    S_HDRS+=("Accept-Encoding: gzip")
    S_CHECK=check_gzip
    S_IDLE=0 S_READYT=0
    S_NOTE="$PRODUCTS_BIN as in the products group, with Accept-Encoding: gzip: the page's gzip form, kept by the cache"
}

auth_env() { # PORT
    S_ENV=(PORT="$1" HOST="$HOST" LOG_LEVEL=info NATS_URL="$NATS" DATA_DIR="$SVC_DATA"
           ADMIN_PASSWORD="$ADMIN_PASSWORD" LOGIN_RATE_PER_MIN=1000000
           SHUTDOWN_TIMEOUT=2 DRAIN_DELAY=0)
}

check_login() { # URL: a login answers a token
    curl -sf -X POST -H 'Content-Type: application/json' -d "$LOGIN_JSON" "$1" | grep -q '"access_token":"'
}

scenario_auth-login() {
    S_GROUP=login S_LABEL="auth login"
    [ -n "$AUTH_READY" ] || { S_SKIP="pending: $AUTH_BIN is not built"; return 1; }
    S_CMD=("$(realpath "$AUTH_BIN")")
    auth_env "$1" # WORKERS: the default (CPUs available: 1 when pinned)
    S_PATH=/auth/login S_READY=/readyz S_CHECK=check_login
    S_SCRIPT=bench/login.lua
    S_DURATION=$LOGIN_DURATION S_WARMUP=$LOGIN_WARMUP S_CONNS=$LOGIN_CONNS
    S_LOG=$PWD/$RUN/auth-$1.log S_OUT=$S_LOG
    S_IDLE=0 # its path is a POST
    S_NOTE="$AUTH_BIN, POST /auth/login with valid credentials (Argon2id t=2 m=19 MiB p=1 on the thread pool, slow on purpose), default WORKERS, LOGIN_RATE_PER_MIN=1000000 (the limiter never refuses), wrk -c$LOGIN_CONNS for ${LOGIN_DURATION}s, access log on"
}

# The gateway group (issue 4): GET /products/1 with a token, straight to products
# and through the gateway (client -> gateway -> NATS -> products -> back). Nothing
# is pinned but wrk: the gateway, nats-server and products share both CPUs, as
# they would on a 2-core host, and a pinned set would make the scheduler's choice
# for them. The group's nats-server, the products instances and the gateway all
# count as "the server" (CPU, RSS).
gw_products_env() { # PORT
    products_env "$1"
    S_ENV+=(NATS_URL="$GW_NATS")
}

scenario_direct() {
    S_GROUP=gateway S_LABEL="direct (products)"
    [ -z "$GW_SKIP" ] || { S_SKIP="pending: $GW_SKIP"; return 1; }
    S_CMD=("$(realpath "$PRODUCTS_BIN")")
    gw_products_env "$1"
    S_PATH=$GW_PATH S_READY=/readyz S_BODY=$GBODY S_PIN=$GW_PIN
    S_LOG=$PWD/$RUN/direct-$1.log S_OUT=$S_LOG
    S_SETUP=products_login S_LATCONNS=$LAT_CONNS S_IDLE=0 S_READYT=0
    S_ACCT=(${NATS_PID:+"$NATS_PID"})
    S_NOTE="$PRODUCTS_BIN, WORKERS=1, connected to the group's nats-server (idle here), GET $GW_PATH with a token over HTTP, $(gw_placement); access log on"
}

gw_placement() {
    if [ "$GW_PIN" = 1 ]; then printf 'all pinned to CPU %s' "$SERVER_CPU"; else printf 'all unpinned'; fi
}

# Starts N products instances (S_PRE of the gateway scenarios) on GW_BACKEND_PORT+i.
gw_backends() { # N
    local i rc=0
    local -a saved=("${S_ENV[@]}")
    for ((i = 0; i < $1; i++)); do
        gw_products_env $((GW_BACKEND_PORT + i))
        start_extra $((GW_BACKEND_PORT + i)) "$RUN/products-gw-$i.log" "$(realpath "$PRODUCTS_BIN")" ||
            { rc=1; break; }
    done
    S_ENV=("${saved[@]}")
    return $rc
}
gw_backends_1() { gw_backends 1; }
gw_backends_3() { gw_backends 3; }

# The gateway's configuration: deploy/gateway.json's routes and settings, but no
# per-client rate limit (all of wrk is one client address, 127.0.0.1).
gw_config() {
    local f=$PWD/$RUN/gateway.json
    cat >"$f" <<'JSON'
{
  "routes": [
    {"prefix": "/auth/", "service": "auth", "auth": "none", "timeout_ms": 5000, "retry": true},
    {"prefix": "/.well-known/", "service": "auth", "auth": "none", "timeout_ms": 2000, "retry": true},
    {"prefix": "/products", "service": "products", "auth": "user", "timeout_ms": 3000, "retry": true},
    {"prefix": "/orders", "service": "orders", "auth": "user", "timeout_ms": 5000, "retry": true}
  ],
  "cors": {"origins": ["http://localhost:3000", "http://127.0.0.1:3000"], "max_age_s": 600},
  "limits": {"rate_per_client_per_s": 0, "burst": 2000, "max_concurrency": 2048},
  "retry_budget": {"ratio": 0.2, "window_s": 10},
  "breaker": {"failures": 5, "open_ms": 2000},
  "discovery": {"interval_ms": 1000}
}
JSON
    printf '%s' "$f"
}

# S_SETUP of the gateway scenarios: wait until the gateway's discovery knows every
# products instance (else the first requests could find fewer), then log in.
GW_WANT=1
gw_setup() { # PORT
    local i n
    for ((i = 0; i < GW_DISCOVERY_TIMEOUT_S * 10; i++)); do
        n=$(curl -s "http://$HOST:$1/metrics" | sed -n 's/^gateway_instances{service="products"} \([0-9]*\).*/\1/p')
        [ "${n:-0}" -ge "$GW_WANT" ] && { products_login; return; }
        sleep 0.1
    done
    log "gateway on port $1: discovery found ${n:-0} products instances, not $GW_WANT"
    return 1
}

gateway_scenario() { # PORT INSTANCES
    S_GROUP=gateway
    [ -z "$GW_SKIP" ] || { S_SKIP="pending: $GW_SKIP"; return 1; }
    S_CMD=("$(realpath "$GATEWAY_BIN")")
    S_ENV=(PORT="$1" HOST="$HOST" WORKERS=1 LOG_LEVEL=info NATS_URL="$GW_NATS"
           AUTH_JWKS_URL="http://$HOST:$AUTH_PORT/.well-known/jwks.json"
           GATEWAY_CONFIG="$GW_CONFIG" SHUTDOWN_TIMEOUT=2 DRAIN_DELAY=0)
    S_PATH=$GW_PATH S_READY=/readyz S_BODY=$GBODY S_PIN=$GW_PIN
    S_LOG=$PWD/$RUN/gateway-$1.log S_OUT=$S_LOG
    S_PRE=gw_backends_$2 S_SETUP=gw_setup GW_WANT=$2
    S_LATCONNS=$LAT_CONNS S_IDLE=0 S_READYT=0
    S_ACCT=(${NATS_PID:+"$NATS_PID"})
}

scenario_gateway() {
    S_LABEL="gateway -> products"
    gateway_scenario "$1" 1 || return 1
    S_NOTE="$GATEWAY_BIN (WORKERS=1, rate_per_client_per_s 0, otherwise deploy/gateway.json) -> nats-server -> one $PRODUCTS_BIN (WORKERS=1), GET $GW_PATH with a token (checked by the gateway and by products), $(gw_placement); access logs on"
}

scenario_gateway-3() {
    S_LABEL="gateway -> 3 products"
    gateway_scenario "$1" 3 || return 1
    S_NOTE="the same with 3 products instances (WORKERS=1 each) behind the gateway, round robin"
}

# Sets the S_* fields of scenario $1 on port $2; returns 1 if it is skipped.
load_scenario() {
    S_CMD=() S_ENV=() S_HDRS=() S_PATH='' S_READY='' S_OUT=/dev/null S_BODY=$BODY S_LOG='' S_NOTE='' S_SETUP='' S_SKIP=''
    S_LABEL=$1 S_GROUP=demo S_CHECK=check_body S_SCRIPT=bench/latency.lua
    S_DURATION=$DURATION S_WARMUP=$WARMUP S_CONNS=$CONNS S_IDLE=1 S_READYT=1
    S_PIN=1 S_PRE='' S_ACCT=() S_LATCONNS=''
    declare -F "scenario_$1" >/dev/null || die "unknown scenario '$1'"
    "scenario_$1" "$2"
}

# ---------------------------------------------------------------------------
# Processes. Only processes started here are ever signalled, by PID.
# ---------------------------------------------------------------------------
SPID='' SPIDS=() CHILD_PIDS=() AUTH_PID='' NATS_PID='' EXTRA_PIDS=() EXTRA_LOGS=()

cleanup() {
    local p
    for p in "${CHILD_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    [ -n "$SPID" ] && stop_server
    stop_extra
    stop_auth
    stop_nats
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The CPUs a server may use: SERVER_CPU, or all of them when S_PIN=0 (this script
# is pinned to CLIENT_CPU and its children would inherit that).
server_cpus() {
    if [ "$S_PIN" = 1 ]; then printf '%s' "$SERVER_CPU"; else printf '0-%d' $(($(nproc --all) - 1)); fi
}

# Starts a helper process of the loaded scenario (S_PRE), with S_ENV, on the
# server's CPUs, and waits until it answers 200 on /readyz at port $1.
start_extra() { # PORT LOGFILE CMD...
    local port=$1 out=$2 i pid
    shift 2
    env "${S_ENV[@]}" taskset -c "$(server_cpus)" "$@" >>"$out" 2>&1 &
    pid=$!
    EXTRA_PIDS+=("$pid") EXTRA_LOGS+=("$out")
    for ((i = 0; i < READY_TIMEOUT_S * 50; i++)); do
        kill -0 "$pid" 2>/dev/null || { cat "$out" >&2; return 1; }
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$HOST:$port/readyz" 2>/dev/null)" = 200 ] && return 0
        sleep 0.02
    done
    log "helper on port $port not ready after ${READY_TIMEOUT_S}s"
    return 1
}

stop_extra() {
    local p
    for p in "${EXTRA_PIDS[@]}"; do stop_pid "$p"; done
    [ ${#EXTRA_LOGS[@]} -eq 0 ] || rm -f "${EXTRA_LOGS[@]}" # access logs: large
    EXTRA_PIDS=() EXTRA_LOGS=()
}

# Starts the loaded scenario on port $1 and waits until S_READY answers 200.
start_server() {
    local port=$1 i
    local -a envs=("${S_ENV[@]}")
    [ -n "$S_LOG" ] && : >"$S_LOG"
    if [ -n "$S_PRE" ] && ! "$S_PRE" "$port"; then
        log "$S_PRE failed for port $port"
        stop_extra
        return 1
    fi
    env "${envs[@]}" taskset -c "$(server_cpus)" "${S_CMD[@]}" \
        >>"$S_OUT" 2>"$RUN/server-$port.err" &
    SPID=$!
    for ((i = 0; i < READY_TIMEOUT_S * 50; i++)); do
        kill -0 "$SPID" 2>/dev/null || { SPID=; cat "$RUN/server-$port.err" >&2; stop_extra; return 1; }
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$HOST:$port$S_READY" 2>/dev/null)" = 200 ]; then
            # The server and its children (nginx's worker), fixed from here on, with
            # the helpers it needs and the shared processes counted with it.
            mapfile -t SPIDS < <(echo "$SPID"; pgrep -P "$SPID" || true)
            SPIDS+=("${EXTRA_PIDS[@]}" "${S_ACCT[@]}")
            if [ -n "$S_SETUP" ] && ! "$S_SETUP" "$port"; then
                log "setup $S_SETUP failed on port $port"
                stop_server
                return 1
            fi
            return 0
        fi
        sleep 0.02
    done
    log "server on port $port not ready after ${READY_TIMEOUT_S}s"
    stop_server
    return 1
}

stop_pid() { # SIGTERM, then SIGKILL after 5 s
    local i
    kill -TERM "$1" 2>/dev/null || true
    for ((i = 0; i < 250; i++)); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.02
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

stop_server() {
    [ -n "$SPID" ] && stop_pid "$SPID"
    stop_extra
    SPID='' SPIDS=()
}

# The helper auth of the products group, for the whole run, on the client CPU (it
# is idle during the measurements: products verifies tokens with the keys it
# fetched at start). It also registers the benchmark's user.
start_auth() {
    local i
    mkdir -p "$SVC_DATA"
    auth_env "$AUTH_PORT"
    # With the gateway group it joins that group's NATS (the gateway sees it there).
    env "${S_ENV[@]}" WORKERS=1 ${NATS_PID:+NATS_URL="$GW_NATS"} taskset -c "$CLIENT_CPU" "$(realpath "$AUTH_BIN")" \
        >"$RUN/auth-helper.log" 2>&1 &
    AUTH_PID=$!
    for ((i = 0; i < READY_TIMEOUT_S * 50; i++)); do
        kill -0 "$AUTH_PID" 2>/dev/null || { AUTH_PID=; cat "$RUN/auth-helper.log" >&2; return 1; }
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$HOST:$AUTH_PORT/readyz")" = 200 ] && break
        sleep 0.02
    done
    [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        -d "$LOGIN_JSON" "http://$HOST:$AUTH_PORT/auth/register")" = 201 ] || {
        log "$AUTH_BIN: registering $BENCH_LOGIN_USER failed"; cat "$RUN/auth-helper.log" >&2; return 1; }
}

stop_auth() {
    [ -n "$AUTH_PID" ] || return 0
    stop_pid "$AUTH_PID"
    AUTH_PID=''
}

# The gateway group's nats-server, for the whole run (no JetStream), placed like
# the rest of that group, with GOMAXPROCS as the Procfile sets it.
start_nats() {
    local i cpus="0-$(($(nproc --all) - 1))"
    [ "$GW_PIN" = 1 ] && cpus=$SERVER_CPU
    env ${NATS_GOMAXPROCS:+GOMAXPROCS="$NATS_GOMAXPROCS"} taskset -c "$cpus" \
        /usr/sbin/nats-server -a "$HOST" -p "$NATS_PORT" >"$RUN/nats.log" 2>&1 &
    NATS_PID=$!
    for ((i = 0; i < READY_TIMEOUT_S * 50; i++)); do
        kill -0 "$NATS_PID" 2>/dev/null || { NATS_PID=; cat "$RUN/nats.log" >&2; return 1; }
        (exec 3<>"/dev/tcp/$HOST/$NATS_PORT") 2>/dev/null && return 0
        sleep 0.02
    done
    return 1
}

stop_nats() {
    [ -n "$NATS_PID" ] || return 0
    stop_pid "$NATS_PID"
    NATS_PID=''
}

# Reads /proc without forking, so sampling during a run costs the client CPU little.
RSS_KIB=0 CPU_TICKS=0
read_rss() { # sum of VmRSS over SPIDS -> RSS_KIB
    local p k v
    RSS_KIB=0
    for p in "${SPIDS[@]}"; do
        while read -r k v _; do
            [ "$k" = VmRSS: ] && { RSS_KIB=$((RSS_KIB + v)); break; }
        done <"/proc/$p/status" 2>/dev/null || true
    done
}
read_ticks() { # utime+stime summed over the given PIDs -> CPU_TICKS
    local p s
    local -a f
    CPU_TICKS=0
    for p in "$@"; do
        read -r s <"/proc/$p/stat" 2>/dev/null || continue
        s=${s##*) }
        read -ra f <<<"$s"
        CPU_TICKS=$((CPU_TICKS + f[11] + f[12]))
    done
}
now_s() { printf '%s' "$EPOCHREALTIME"; }
read_machine() { # user+nice+system+steal ticks of all CPUs -> MACHINE_TICKS
    local -a c
    read -ra c </proc/stat
    MACHINE_TICKS=$((c[1] + c[2] + c[3] + c[8]))
}

# Percent of all CPUs busy over one second (other engineers' builds skew numbers).
machine_busy_pct() {
    local -a a b
    read -ra a </proc/stat
    sleep 1
    read -ra b </proc/stat
    local i tot=0 idle
    for ((i = 1; i < ${#a[@]}; i++)); do tot=$((tot + b[i] - a[i])); done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    ((tot > 0)) && echo $((100 * (tot - idle) / tot)) || echo 0
}

hdr_args() { # prefix each of S_HDRS with $1 (-H)
    local h
    HDR_ARGS=()
    for h in "${S_HDRS[@]}"; do HDR_ARGS+=("$1" "$h"); done
}

# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------

# The default S_CHECK: GET URL with S_HDRS replies S_BODY, byte for byte.
check_body() {
    hdr_args -H
    curl -sf "${HDR_ARGS[@]}" "$1" | cmp -s - "$S_BODY" && return 0
    log "GET $S_PATH is not $S_BODY, byte for byte"
    return 1
}

# S_CHECK of the gzip scenario: the reply to GET URL with S_HDRS is gzip-coded and
# inflates to S_BODY, byte for byte; its size goes to the results.
check_gzip() {
    local head=$RUN/gzip-head.txt body=$RUN/gzip-body.gz
    hdr_args -H
    curl -sf -D "$head" -o "$body" "${HDR_ARGS[@]}" "$1" || { log "GET $S_PATH failed"; return 1; }
    grep -qi '^content-encoding: gzip' "$head" || { log "GET $S_PATH with Accept-Encoding: gzip is not gzip-coded"; return 1; }
    gzip -dc "$body" | cmp -s - "$S_BODY" || { log "GET $S_PATH: the gzip body does not inflate to $S_BODY"; return 1; }
    echo "META gzbody_bytes=$(stat -c %s "$body")" >>"$RAW"
}

# One round of scenario $1 on port $2: fresh start, idle RSS, reply check, warm-up,
# measured run.
measure_load() {
    local name=$1 port=$2 round=$3 url wpid max=0 t0 t1 c0 c1 m0 m1 w_ticks=0 w_t=0 line log_bytes=0
    start_server "$port" || { echo "RUN scenario=$name round=$round error=start" >>"$RAW"; return 0; }
    url="http://$HOST:$port$S_PATH"
    # Idle means before the first request other than the readiness probes (one
    # login would leave auth's 19 MiB Argon2id block behind).
    sleep "$SETTLE_S"
    read_rss
    local rss_idle=$RSS_KIB
    if ! "$S_CHECK" "$url"; then
        log "$name: the reply check ($S_CHECK) failed"
        echo "RUN scenario=$name round=$round error=body" >>"$RAW"
        stop_server
        return 0
    fi
    hdr_args -H
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$S_CONNS" -d"${S_WARMUP}s" -s "$S_SCRIPT" "${HDR_ARGS[@]}" "$url" >/dev/null
    [ -n "$S_LOG" ] && : >"$S_LOG" # count only the measured run's log bytes

    read_ticks "${SPIDS[@]}"; c0=$CPU_TICKS; read_machine; m0=$MACHINE_TICKS; t0=$(now_s)
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$S_CONNS" -d"${S_DURATION}s" -s "$S_SCRIPT" \
        "${HDR_ARGS[@]}" "$url" >"$RUN/wrk.out" 2>&1 &
    wpid=$!
    CHILD_PIDS=("$wpid")
    while kill -0 "$wpid" 2>/dev/null; do
        read_rss
        ((RSS_KIB > max)) && max=$RSS_KIB
        read_ticks "$wpid"
        ((CPU_TICKS > 0)) && { w_ticks=$CPU_TICKS; w_t=$(now_s); }
        sleep "$SAMPLE_S"
    done
    wait "$wpid" || true
    CHILD_PIDS=()
    read_ticks "${SPIDS[@]}"; c1=$CPU_TICKS; read_machine; m1=$MACHINE_TICKS; t1=$(now_s)
    [ -n "$S_LOG" ] && [ -f "$S_LOG" ] && log_bytes=$(stat -c %s "$S_LOG")
    line=$(grep '^BENCH_WRK ' "$RUN/wrk.out" || true)
    if [ -z "$line" ]; then
        log "$name: wrk printed no result:"; cat "$RUN/wrk.out" >&2
        echo "RUN scenario=$name round=$round error=wrk" >>"$RAW"
    else
        echo "RUN scenario=$name round=$round conns=$S_CONNS ${line#BENCH_WRK } rss_idle_kib=$rss_idle" \
             "rss_load_kib=$max cpu_ticks=$((c1 - c0)) wall_s=$(awk "BEGIN{print $t1-$t0}")" \
             "client_ticks=$w_ticks client_wall_s=$(awk "BEGIN{print $w_t-$t0}") machine_ticks=$((m1 - m0)) log_bytes=$log_bytes log_expected=$([ -n "$S_LOG" ] && echo 1 || echo 0)" >>"$RAW"
    fi
    measure_latency "$name" "$url" "$round"
    stop_server
    [ -n "$S_LOG" ] && rm -f "$S_LOG" # access logs of a run are large; keep the disk clean
    return 0
}

# The CPU the server's processes (SPIDS) and the machine used during a run:
# cpu_begin before it, then $(cpu_end) prints "cpu_ticks=N wall_s=S machine_ticks=N".
cpu_begin() {
    read_ticks "${SPIDS[@]}"; CPU_BEGIN=$CPU_TICKS
    read_machine; MACHINE_BEGIN=$MACHINE_TICKS
    T_BEGIN=$(now_s)
}
cpu_end() {
    local t1
    read_ticks "${SPIDS[@]}"; read_machine; t1=$(now_s)
    printf 'cpu_ticks=%d wall_s=%s machine_ticks=%d' $((CPU_TICKS - CPU_BEGIN)) \
        "$(awk "BEGIN{print $t1-$T_BEGIN}")" $((MACHINE_TICKS - MACHINE_BEGIN))
}

# S_LATCONNS: on the same (warm) server, one wrk run per connection count, LAT_DURATION
# s each: the latency at a fixed concurrency (Debian's wrk has no constant-rate -R).
measure_latency() { # NAME URL ROUND
    local c line used
    for c in $S_LATCONNS; do
        hdr_args -H
        cpu_begin
        taskset -c "$CLIENT_CPU" wrk -t1 -c"$c" -d"${LAT_DURATION}s" -s "$S_SCRIPT" \
            "${HDR_ARGS[@]}" "$2" >"$RUN/wrk.out" 2>&1 || true
        used=$(cpu_end)
        line=$(grep '^BENCH_WRK ' "$RUN/wrk.out" || true)
        if [ -z "$line" ]; then
            log "$1: wrk -c$c printed no result:"; cat "$RUN/wrk.out" >&2
            echo "LAT scenario=$1 round=$3 conns=$c error=wrk" >>"$RAW"
        else
            # wrk's own CPU is not sampled here: at this concurrency it is small, and it
            # counts in "others" (an upper bound on other processes' share).
            echo "LAT scenario=$1 round=$3 conns=$c ${line#BENCH_WRK } $used" >>"$RAW"
        fi
    done
}

# The gateway group at a constant rate (bench/rate.c, open loop: latency counted
# from each request's due time): a fresh server, HALF_WARMUP s at the rate (not
# counted), then HALF_DURATION s. One HALF line per run.
measure_half() { # NAME PORT ROUND RATE
    local name=$1 port=$2 round=$3 rate=$4 line used
    start_server "$port" || { echo "HALF scenario=$name round=$round error=start" >>"$RAW"; return 0; }
    if ! "$S_CHECK" "http://$HOST:$port$S_PATH"; then
        log "$name: the reply check ($S_CHECK) failed"
        echo "HALF scenario=$name round=$round error=body" >>"$RAW"
        stop_server
        return 0
    fi
    hdr_args -H
    cpu_begin
    taskset -c "$CLIENT_CPU" "$OUT/rate" -r "$rate" -d "$HALF_DURATION" -w "$HALF_WARMUP" -c "$RATE_CONNS" \
        "${HDR_ARGS[@]}" "$HOST" "$port" "$S_PATH" >"$RUN/rate.out" 2>"$RUN/rate.err" || true
    used=$(cpu_end)
    line=$(grep '^RATE ' "$RUN/rate.out" || true)
    if [ -z "$line" ]; then
        log "$name: rate printed no result:"; cat "$RUN/rate.err" >&2
        echo "HALF scenario=$name round=$round error=rate" >>"$RAW"
    else
        echo "HALF scenario=$name round=$round ${line#RATE } $used" >>"$RAW"
    fi
    stop_server
    [ -n "$S_LOG" ] && rm -f "$S_LOG"
    return 0
}

# Half of the gateway's maximum load: the median req/s of scenario $1's -c CONNS
# runs in RAW, halved; empty when it has none.
half_rate() { # NAME
    awk -v n="scenario=$1" '$1 == "RUN" && $2 == n {
            r = d = 0
            for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "requests") r = kv[2]; if (kv[1] == "duration_us") d = kv[2] }
            if (d > 0) v[k++] = r / (d / 1e6)
        }
        END {
            if (!k) exit
            for (i = 0; i < k; i++) for (j = i + 1; j < k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            m = k % 2 ? v[int(k / 2)] : (v[k / 2 - 1] + v[k / 2]) / 2
            printf "%d", m / 2
        }' "$RAW"
}

# (Re)starts products instance $1 behind the gateway without waiting for it: the
# kill loop's restart.
restart_backend() { # INDEX
    local i=$1 port=$((GW_BACKEND_PORT + $1))
    local -a saved=("${S_ENV[@]}")
    gw_products_env "$port"
    env "${S_ENV[@]}" taskset -c "$(server_cpus)" "$(realpath "$PRODUCTS_BIN")" >>"$RUN/products-gw-$i.log" 2>&1 &
    EXTRA_PIDS[i]=$!
    S_ENV=("${saved[@]}")
}

# The kill loop (issue 4): gateway-3 under a constant KILL_RATE req/s for
# KILL_DURATION s; every KILL_EVERY_S s one products instance (in turn) gets SIGKILL
# and is restarted KILL_DOWN_S s later. Every failed GET counts (bench/rate.c: a
# non-2xx reply, a reset or closed connection, or no reply within 10 s).
measure_kill() { # PORT
    local port=$1 rpid line kills=0 victim t_end retries exhausted
    start_server "$port" || { echo "KILL scenario=gateway-3 error=start" >>"$RAW"; return 0; }
    hdr_args -H
    taskset -c "$CLIENT_CPU" "$OUT/rate" -r "$KILL_RATE" -d "$KILL_DURATION" -w 1 -c 64 -t 10000 \
        "${HDR_ARGS[@]}" "$HOST" "$port" "$S_PATH" >"$RUN/kill.out" 2>"$RUN/kill.err" &
    rpid=$!
    CHILD_PIDS=("$rpid")
    sleep 1 # the warm-up
    t_end=$((${EPOCHREALTIME/./} + KILL_DURATION * 1000000))
    while kill -0 "$rpid" 2>/dev/null &&
        ((${EPOCHREALTIME/./} + (KILL_EVERY_S + 1) * 1000000 < t_end)); do
        sleep $((KILL_EVERY_S - KILL_DOWN_S))
        victim=$((kills % 3))
        kill -KILL "${EXTRA_PIDS[victim]}" 2>/dev/null || true
        wait "${EXTRA_PIDS[victim]}" 2>/dev/null || true
        kills=$((kills + 1))
        sleep "$KILL_DOWN_S"
        restart_backend "$victim"
    done
    wait "$rpid" || true
    CHILD_PIDS=()
    retries=$(curl -s "http://$HOST:$port/metrics" | sed -n 's/^gateway_retries_total \([0-9]*\).*/\1/p')
    exhausted=$(curl -s "http://$HOST:$port/metrics" | sed -n 's/^gateway_retry_budget_exhausted_total \([0-9]*\).*/\1/p')
    line=$(grep '^RATE ' "$RUN/kill.out" || true)
    if [ -z "$line" ]; then
        log "kill loop: rate printed no result:"; cat "$RUN/kill.err" >&2
        echo "KILL scenario=gateway-3 error=rate" >>"$RAW"
    else
        echo "KILL scenario=gateway-3 kills=$kills every_s=$KILL_EVERY_S down_s=$KILL_DOWN_S duration_s=$KILL_DURATION" \
             "retries=${retries:-0} budget_exhausted=${exhausted:-0} ${line#RATE }" >>"$RAW"
        grep '^FAIL ' "$RUN/kill.err" | head -20 | sed 's/^/bench: kill loop: /' >&2 || true
    fi
    stop_server
    [ -n "$S_LOG" ] && rm -f "$S_LOG"
    return 0
}

# RSS before and after IDLE_CONNS keep-alive connections that each made one request.
measure_idle() {
    local name=$1 port=$2 ipid before i established='' closed=''
    start_server "$port" || { echo "IDLE scenario=$name error=start" >>"$RAW"; return 0; }
    sleep "$SETTLE_S"
    read_rss; before=$RSS_KIB
    hdr_args -H
    : >"$RUN/idle.out"
    "$OUT/idleconns" -n "$IDLE_CONNS" -w 300 -T "$IDLE_SETUP_TIMEOUT_S" "${HDR_ARGS[@]}" \
        "$HOST" "$port" "$S_PATH" >"$RUN/idle.out" 2>&1 &
    ipid=$!
    CHILD_PIDS=("$ipid")
    for ((i = 0; i < (IDLE_SETUP_TIMEOUT_S + 5) * 20; i++)); do
        grep -q '^IDLE established=' "$RUN/idle.out" && break
        kill -0 "$ipid" 2>/dev/null || break
        sleep 0.05
    done
    established=$(sed -n 's/^IDLE established=\([0-9]*\) failed=\([0-9]*\).*/established=\1 failed=\2/p' "$RUN/idle.out")
    sleep "$SETTLE_S"
    read_rss
    local after=$RSS_KIB
    kill -TERM "$ipid" 2>/dev/null || true
    wait "$ipid" 2>/dev/null || true
    CHILD_PIDS=()
    closed=$(sed -n 's/^IDLE closed_by_server=\([0-9]*\)/\1/p' "$RUN/idle.out")
    if [ -z "$established" ]; then
        log "$name: idleconns failed:"; cat "$RUN/idle.out" >&2
        echo "IDLE scenario=$name error=idleconns" >>"$RAW"
    else
        echo "IDLE scenario=$name conns=$IDLE_CONNS $established closed_by_server=${closed:-?}" \
             "rss_before_kib=$before rss_after_kib=$after" >>"$RAW"
    fi
    stop_server
    [ -n "$S_LOG" ] && rm -f "$S_LOG"
    return 0
}

# Exec to first 200 on S_READY, READY_RUNS times (median in the report).
measure_ready() {
    local name=$1 port=$2 line
    local -a envs=("${S_ENV[@]}")
    line=$( (
        [ ${#envs[@]} -eq 0 ] || export "${envs[@]}"
        "$OUT/readytime" -n "$READY_RUNS" -c "$SERVER_CPU" -o "$S_OUT" \
            -t $((READY_TIMEOUT_S * 1000)) "$HOST" "$port" "$S_READY" -- "${S_CMD[@]}"
    ) 2>"$RUN/ready.err" ) || true
    if [[ $line == READY* ]]; then
        echo "READY scenario=$name ${line#READY }" >>"$RAW"
    else
        log "$name: readytime failed:"; cat "$RUN/ready.err" >&2
        echo "READY scenario=$name error=readytime" >>"$RAW"
    fi
    [ -n "$S_LOG" ] && rm -f "$S_LOG"
    return 0
}

# The body: what the demo serves on GET /products, so every server sends those bytes.
prepare_body() {
    local port=$((BASE_PORT + 99)) ct
    if [ -n "${BENCH_BODY:-}" ]; then
        cp "$BENCH_BODY" "$BODY"
        BODY_SOURCE="file $BENCH_BODY (BENCH_BODY)"
    elif [ "$STANDIN" != 1 ] && [ -x "$SVCKIT_BIN" ]; then
        load_scenario svckit "$port"
        start_server "$port" || die "$SVCKIT_BIN did not start"
        ct=$(curl -sf -o "$BODY" -w '%{content_type}' "http://$HOST:$port/products") ||
            { stop_server; die "GET /products on $SVCKIT_BIN failed"; }
        stop_server
        rm -f "$S_LOG"
        [[ $ct == application/json* ]] || die "$SVCKIT_BIN: GET /products has Content-Type '$ct'"
        BODY_SOURCE="GET /products from $SVCKIT_BIN"
    else
        cp bench/products30.sample.json "$BODY"
        BODY_SOURCE="fallback bench/products30.sample.json (the demo is not built)"
    fi
    [ -s "$BODY" ] || die "empty body file"
}

# The products group's body: products' reply to GET PRODUCTS_PATH with a token, so
# that nginx and the ceiling send the same bytes. Starts the helper auth (kept for
# the whole run) when a scenario needs it; sets PTOKEN, the token the peers send.
prepare_products() {
    local port=$((BASE_PORT + 97)) ct need=0 n
    for n in "${SCENARIOS[@]}"; do
        case $n in ceiling-products | nginx-products | products* | auth-login | direct | gateway*) need=1 ;; esac
    done
    [ "$need" = 1 ] || return 0
    if [ ! -x "$AUTH_BIN" ]; then PRODUCTS_SKIP="$AUTH_BIN is not built"; GW_SKIP=$PRODUCTS_SKIP; return 0; fi
    start_auth || die "$AUTH_BIN (helper on port $AUTH_PORT) did not start"
    AUTH_READY=1
    if [ ! -x "$PRODUCTS_BIN" ]; then PRODUCTS_SKIP="$PRODUCTS_BIN is not built"; GW_SKIP=$PRODUCTS_SKIP; return 0; fi
    PTOKEN=$(auth_token) || die "login to the helper auth on port $AUTH_PORT failed"
    load_scenario products "$port" || die "products: $S_SKIP"
    start_server "$port" || die "$PRODUCTS_BIN did not start"
    hdr_args -H
    ct=$(curl -sf -o "$PBODY" -w '%{content_type}' "${HDR_ARGS[@]}" "http://$HOST:$port$PRODUCTS_PATH") ||
        { stop_server; die "GET $PRODUCTS_PATH on $PRODUCTS_BIN failed"; }
    stop_server
    rm -f "$S_LOG"
    [[ $ct == application/json* ]] || die "$PRODUCTS_BIN: GET $PRODUCTS_PATH has Content-Type '$ct'"
    [ -s "$PBODY" ] || die "$PRODUCTS_BIN: empty reply to GET $PRODUCTS_PATH"
    PBODY_SOURCE="GET $PRODUCTS_PATH with a token from $PRODUCTS_BIN"
}

# The gateway group: starts its nats-server (before the helper auth, which joins it)
# when one of its scenarios is selected; GW_SKIP says why the group cannot run.
prepare_nats() {
    local n need=0
    for n in "${SCENARIOS[@]}"; do case $n in direct | gateway*) need=1 ;; esac; done
    [ "$need" = 1 ] || return 0
    [ -x /usr/sbin/nats-server ] || { GW_SKIP="/usr/sbin/nats-server is missing"; return 0; }
    [ -x "$GATEWAY_BIN" ] || { GW_SKIP="$GATEWAY_BIN is not built"; return 0; }
    start_nats || die "nats-server on port $NATS_PORT did not start"
}

# The gateway group's body: products' reply to GET /products/1 (with a token), from an
# instance connected to the group's NATS. Runs after prepare_products (auth, seed).
prepare_gateway() {
    local port=$((BASE_PORT + 97))
    [ -n "$NATS_PID" ] && [ -z "$GW_SKIP" ] || return 0
    GW_CONFIG=$(gw_config)
    load_scenario direct "$port" || die "direct: $S_SKIP"
    start_server "$port" || die "$PRODUCTS_BIN (with NATS) did not start"
    hdr_args -H
    curl -sf -o "$GBODY" "${HDR_ARGS[@]}" "http://$HOST:$port$GW_PATH" ||
        { stop_server; die "GET $GW_PATH on $PRODUCTS_BIN failed"; }
    stop_server
    rm -f "$S_LOG"
    [ -s "$GBODY" ] || die "$PRODUCTS_BIN: empty reply to GET $GW_PATH"
}

enc() { # a value for raw.txt: no spaces (report.py decodes %XX)
    local v=${1//%/%25}
    printf '%s' "${v// /%20}"
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
[ "${BENCH_NO_DEPS:-0}" = 1 ] || SVCKIT_DEPS_BENCH=1 bash scripts/deps.sh
tools=(taskset curl cc python3 pgrep gzip)
[ ${#SCENARIOS[@]} = 0 ] || tools+=(wrk /usr/sbin/nginx) # auth-timing alone needs neither
for t in "${tools[@]}"; do
    command -v "$t" >/dev/null || die "$t is missing (SVCKIT_DEPS_BENCH=1 bash scripts/deps.sh)"
done
[ "$(nproc --all)" -ge 2 ] || die "needs 2 CPUs (server and client pinned apart)"
[ "$SERVER_CPU" != "$CLIENT_CPU" ] || die "BENCH_SERVER_CPU and BENCH_CLIENT_CPU must differ"

hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$NOFILE" ]; then NOFILE=$hard; fi
ulimit -n "$NOFILE"
if [ "$IDLE_CONNS" -gt 0 ] && [ $((IDLE_CONNS + 100)) -gt "$NOFILE" ]; then
    die "ulimit -n is $NOFILE: too low for BENCH_IDLE_CONNS=$IDLE_CONNS"
fi

# This script, curl, the samplers and the helpers run on the client CPU; servers
# are started with taskset on SERVER_CPU.
taskset -cp "$CLIENT_CPU" $$ >/dev/null

rm -rf "$RUN"
mkdir -p "$RUN"
for t in ceiling readytime idleconns rate wakeup; do
    cc -std=gnu11 -O2 -Wall -Wextra -Werror "bench/$t.c" -o "$OUT/$t"
done
# The groups with their own drivers; each leaves its table in $OUT/<group>.md.
run_script_group() { # NAME
    local name=$1
    rm -f "$OUT/$name.md" "$OUT/$name.json"
    case $name in
    auth-timing)
        [ -x "$AUTH_BIN" ] || { log "$name: skipped ($AUTH_BIN is not built)"; return 0; }
        log "$name: $TIMING_SAMPLES logins of each kind"
        python3 bench/login_timing.py --auth "$(realpath "$AUTH_BIN")" --port $((BASE_PORT + 94)) \
            --data "$PWD/$RUN/$name" --server-cpu "$SERVER_CPU" --samples "$TIMING_SAMPLES" \
            --out "$OUT/$name" >/dev/null || die "$name failed"
        ;;
    search-flood)
        [ -x "$AUTH_BIN" ] && [ -x "$PRODUCTS_BIN" ] ||
            { log "$name: skipped ($AUTH_BIN or $PRODUCTS_BIN is not built)"; return 0; }
        log "$name: $ROUNDS rounds x 2 settings x ${FLOOD_SECONDS}s"
        python3 bench/search_flood.py --auth "$(realpath "$AUTH_BIN")" --products "$(realpath "$PRODUCTS_BIN")" \
            --port $((BASE_PORT + 92)) --data "$PWD/$RUN/$name" --server-cpu "$SERVER_CPU" \
            --client-cpu "$CLIENT_CPU" --rounds "$ROUNDS" --seconds "$FLOOD_SECONDS" --conns "$FLOOD_CONNS" \
            --out "$OUT/$name" >/dev/null || die "$name failed"
        ;;
    store)
        [ -f build/lib/libsvckit.a ] || { log "$name: skipped (build/lib/libsvckit.a is not built)"; return 0; }
        log "$name: $STORE_WRITERS writers x ${STORE_SECONDS}s per design"
        # shellcheck disable=SC2046 # pkg-config's flags are words
        cc -std=gnu11 -O2 -Wall -Wextra -Werror -Iinclude bench/store.c build/lib/libsvckit.a \
            $(pkg-config --libs libuv jansson libsodium sqlite3 zlib) -lhttp_parser -lpthread -lm -o "$OUT/store"
        mkdir -p "$RUN/$name"
        { echo "### Durable writes: group commit against one transaction per write (issue 10)"; echo
          "$OUT/store" "$RUN/$name" "$STORE_WRITERS" "$STORE_SECONDS"; } >"$OUT/$name.md" || die "$name failed"
        ;;
    esac
}
for g in "${SCRIPT_GROUPS[@]}"; do run_script_group "$g"; done
if [ ${#SCENARIOS[@]} = 0 ]; then
    for g in "${SCRIPT_GROUPS[@]}"; do cat "$OUT/$g.md" 2>/dev/null; done
    rm -rf "$RUN"
    exit 0
fi

NGINX_VERSION=$(/usr/sbin/nginx -v 2>&1 | sed 's|.*nginx/||')

START=$(date +%s)
BUSY=$(machine_busy_pct)
((BUSY < 10)) || log "warning: the machine is ${BUSY}% busy before the run; numbers will be low and noisy"
PRODUCTS_SKIP='' AUTH_READY='' PTOKEN='' PBODY_SOURCE='' GW_SKIP='' GW_CONFIG=''
rm -f "$PBODY" "$GBODY"
prepare_body
prepare_nats
prepare_products
prepare_gateway
: >"$RAW"
{
    echo "META date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "META kernel=$(uname -r)"
    echo "META cpu=$(enc "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)")"
    echo "META nproc=$(nproc --all)"
    echo "META loadavg_start=$(cut -d' ' -f1 /proc/loadavg) busy_pct_start=$BUSY"
    echo "META git_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "META wrk=$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
    echo "META nginx=$NGINX_VERSION"
    echo "META duration_s=$DURATION warmup_s=$WARMUP conns=$CONNS rounds=$ROUNDS"
    echo "META idle_conns=$IDLE_CONNS ready_runs=$READY_RUNS server_cpu=$SERVER_CPU client_cpu=$CLIENT_CPU"
    echo "META body_bytes=$(stat -c %s "$BODY") body_sha256=$(sha256sum "$BODY" | cut -c1-16)"
    echo "META body_source=$(enc "$BODY_SOURCE")"
    if [ -s "$PBODY" ]; then
        echo "META pbody_bytes=$(stat -c %s "$PBODY") pbody_sha256=$(sha256sum "$PBODY" | cut -c1-16)"
        echo "META pbody_source=$(enc "$PBODY_SOURCE") pbody_path=$(enc "$PRODUCTS_PATH")"
    fi
    echo "META login_duration_s=$LOGIN_DURATION login_warmup_s=$LOGIN_WARMUP login_conns=$LOGIN_CONNS"
    echo "META nats_url=$(enc "$NATS")"
    echo "META lat_conns=$(enc "$LAT_CONNS") lat_duration_s=$LAT_DURATION gw_pin=$GW_PIN"
    echo "META nats_gomaxprocs=${NATS_GOMAXPROCS:-default} kill_rate=$KILL_RATE kill_duration_s=$KILL_DURATION"
    if [ -s "$GBODY" ]; then
        echo "META gbody_bytes=$(stat -c %s "$GBODY") gbody_path=$(enc "$GW_PATH")"
        # What one process-to-process hand-off costs here (bench/wakeup.c).
        line=$("$OUT/wakeup" -p $((BASE_PORT + 95)) "$CLIENT_CPU" "$SERVER_CPU" 2>/dev/null || true)
        [ -z "$line" ] || echo "META ${line#WAKEUP }"
        echo "META nats_server=$(/usr/sbin/nats-server --version 2>&1 | awk '{print $NF}')"
    fi
    echo "META clk_tck=$(getconf CLK_TCK)"
} >>"$RAW"

# Scenarios that load: their port, note and whether they are a stand-in.
ACTIVE=()
for i in "${!SCENARIOS[@]}"; do
    name=${SCENARIOS[$i]}
    port=$((BASE_PORT + i))
    if load_scenario "$name" "$port"; then
        ACTIVE+=("$name:$port")
        echo "SCENARIO name=$name port=$port group=$S_GROUP label=$(enc "$S_LABEL") note=$(enc "$S_NOTE")" >>"$RAW"
    else
        echo "SCENARIO name=$name port=$port group=$S_GROUP label=$(enc "$S_LABEL") skipped=$(enc "$S_SKIP")" >>"$RAW"
        log "$name: skipped ($S_SKIP)"
    fi
done
[ ${#ACTIVE[@]} -gt 0 ] || die "no scenario to run"

log "body: $(stat -c %s "$BODY") bytes, $BODY_SOURCE"
[ ! -s "$PBODY" ] || log "products body: $(stat -c %s "$PBODY") bytes, $PBODY_SOURCE"
log "$ROUNDS rounds x ${#ACTIVE[@]} scenarios x (${WARMUP}s warm-up + ${DURATION}s), -c$CONNS"
for ((r = 1; r <= ROUNDS; r++)); do
    order=("${ACTIVE[@]}")
    if ((r % 2 == 0)); then
        order=()
        for ((i = ${#ACTIVE[@]} - 1; i >= 0; i--)); do order+=("${ACTIVE[$i]}"); done
    fi
    for sp in "${order[@]}"; do
        log "round $r/$ROUNDS: ${sp%%:*}"
        load_scenario "${sp%%:*}" "${sp##*:}"
        measure_load "${sp%%:*}" "${sp##*:}" "$r"
    done
done
# The gateway group at half of the gateway's maximum load (one rate for direct and
# both gateway rows, so the hop compares equal load), then the kill loop.
HALF_RATE=''
for sp in "${ACTIVE[@]}"; do [ "${sp%%:*}" = gateway ] && HALF_RATE=$(half_rate gateway); done
[ -n "$HALF_RATE" ] || for sp in "${ACTIVE[@]}"; do [ "${sp%%:*}" = gateway-3 ] && HALF_RATE=$(half_rate gateway-3); done
if [ -n "$HALF_RATE" ] && [ "$HALF_RATE" -gt 0 ] && [ "$HALF_DURATION" -gt 0 ]; then
    echo "META half_rate=$HALF_RATE half_duration_s=$HALF_DURATION half_warmup_s=$HALF_WARMUP" >>"$RAW"
    gw_active=()
    for sp in "${ACTIVE[@]}"; do case ${sp%%:*} in direct | gateway | gateway-3) gw_active+=("$sp") ;; esac; done
    for ((r = 1; r <= ROUNDS; r++)); do
        order=("${gw_active[@]}")
        if ((r % 2 == 0)); then
            order=()
            for ((i = ${#gw_active[@]} - 1; i >= 0; i--)); do order+=("${gw_active[$i]}"); done
        fi
        for sp in "${order[@]}"; do
            log "half load ($HALF_RATE req/s), round $r/$ROUNDS: ${sp%%:*}"
            load_scenario "${sp%%:*}" "${sp##*:}"
            measure_half "${sp%%:*}" "${sp##*:}" "$r" "$HALF_RATE"
        done
    done
fi
if [ "$KILL_DURATION" -gt 0 ]; then
    for sp in "${ACTIVE[@]}"; do
        [ "${sp%%:*}" = gateway-3 ] || continue
        log "kill loop: ${KILL_RATE} req/s for ${KILL_DURATION}s, one of 3 products SIGKILLed every ${KILL_EVERY_S}s"
        load_scenario gateway-3 "${sp##*:}"
        measure_kill "${sp##*:}"
    done
fi
if [ "$IDLE_CONNS" -gt 0 ]; then
    for sp in "${ACTIVE[@]}"; do
        load_scenario "${sp%%:*}" "${sp##*:}"
        [ "$S_IDLE" = 1 ] || continue
        log "$IDLE_CONNS idle connections: ${sp%%:*}"
        measure_idle "${sp%%:*}" "${sp##*:}"
    done
fi
if [ "$READY_RUNS" -gt 0 ]; then
    for sp in "${ACTIVE[@]}"; do
        load_scenario "${sp%%:*}" "${sp##*:}"
        [ "$S_READYT" = 1 ] || continue
        log "ready time: ${sp%%:*}"
        measure_ready "${sp%%:*}" "${sp##*:}"
    done
fi
stop_auth
stop_nats
echo "META loadavg_end=$(cut -d' ' -f1 /proc/loadavg) elapsed_s=$(($(date +%s) - START))" >>"$RAW"

python3 bench/report.py "$RAW" "$OUT/results.md" "$OUT/results.json"
for g in "${SCRIPT_GROUPS[@]}"; do
    if [ -s "$OUT/$g.md" ]; then { echo; cat "$OUT/$g.md"; } | tee -a "$OUT/results.md"; fi
done
rm -rf "$RUN"
