#!/usr/bin/env bash
# Installs the Debian packages svckit needs, and only those that are missing.
# Called by `make test`, `make run` and the other top-level targets; safe to rerun.
set -euo pipefail

# Build and link.
PKGS=(gcc make pkg-config libc6-dev libuv1-dev libhttp-parser-dev libjansson-dev
      libsodium-dev libsqlite3-dev zlib1g-dev sqlite3)
# The store on PostgreSQL (src/store/pg.c): libpq's header for every build,
# its library for make PG=1 and the store's tests; the server the tests start
# (tests/integration/pg_support.py).
PKGS+=(libpq-dev postgresql)
# TLS to NATS (src/net/tls.c): linked only into programs built with TLS=1
# and the TLS test helper, but compiled into libsvckit.a always.
PKGS+=(libmbedtls-dev)
# Run: the broker of the reference system.
PKGS+=(nats-server)
# Test: python3-yaml reads deploy/prometheus/ (test_prometheus.py), whose
# prometheus and promtool come with the package below.
PKGS+=(python3-yaml)
# Test: the integration suite (python3 + pytest), JWT interop peers (PyJWT and
# node's jose), promtool for the exposition format, clang for libFuzzer, curl,
# tmux for `make run` in a terminal (test_make_run.py) and `svckit top`
# (test_top.py), chromium for the gateway's pages (test_dashboard_browser.py,
# test_explorer_browser.py), jq for docs/tutorial.md's commands (test_tutorial.py).
PKGS+=(python3 python3-pytest python3-jwt python3-cryptography nodejs npm prometheus clang
       libclang-rt-14-dev curl procps iproute2 tmux chromium jq)
# Containers (make images, make test-images): podman and what it runs with
# here, podman-compose for deploy/compose.yaml and docker-compose to check it
# against the Compose specification (tests/images/test_compose.py).
# iptables: netavark sets up the bridge with it, and fails with "No such file
# or directory" without it.
if [ "${SVCKIT_DEPS_IMAGES:-0}" = 1 ]; then
  PKGS+=(podman runc conmon catatonit netavark aardvark-dns iptables uidmap debootstrap podman-compose
        docker-compose)
fi
if [ "${SVCKIT_DEPS_BENCH:-0}" = 1 ]; then
  PKGS+=(nginx-light wrk util-linux)
fi

missing=()
for p in "${PKGS[@]}"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$st" = "install ok installed" ] || missing+=("$p")
done
# A node that is not Debian's (nvm, a tarball) is fine: do not fight it with apt.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  tmp=()
  for p in "${missing[@]}"; do [ "$p" = nodejs ] || [ "$p" = npm ] || tmp+=("$p"); done
  missing=("${tmp[@]+"${tmp[@]}"}")
fi
[ ${#missing[@]} -eq 0 ] && exit 0

echo "svckit: installing missing Debian packages: ${missing[*]}"
SUDO=
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "svckit: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "svckit: packages installed"
