#!/usr/bin/env bash
# The NKEY users of deploy/nats-users.conf, made per installation with
# `svckit nkey` (no seed is ever committed):
#
#   scripts/nats-nkeys.sh DIR      a seed per user into DIR/<name>.nk (mode 600;
#                                  one already there is kept), then a line
#                                  <NAME>_NKEY=<public key> per user on stdout:
#                                  what nats-server reads (make run: var/nkeys;
#                                  compose: deploy/nkeys, the lines into deploy/.env)
#   scripts/nats-nkeys.sh --k8s    fresh users as Kubernetes objects on stdout:
#                                  the ConfigMap nats-nkeys (public keys, for
#                                  nats-server) and a Secret nats-nkey-<name>
#                                  (key "seed") per user; deploy/k8s/nats-nkeys.yaml
#
# SVCKIT names the svckit program (default build/bin/svckit). docs/deploy.md.
set -euo pipefail
users=(gateway auth products orders payments recommendations ops)
svckit=${SVCKIT:-build/bin/svckit}

if [ "${1:-}" = --k8s ]; then
  seeds=() pubs=()
  for u in "${users[@]}"; do
    { read -r seed; read -r pub; } < <("$svckit" nkey)
    seeds+=("$seed") pubs+=("$pub")
  done
  echo "# Made by scripts/nats-nkeys.sh --k8s: one NKEY user per service."
  echo "apiVersion: v1"
  echo "kind: ConfigMap"
  echo "metadata: {name: nats-nkeys, labels: {app.kubernetes.io/part-of: svckit}}"
  echo "data:"
  for i in "${!users[@]}"; do echo "  ${users[$i]^^}_NKEY: ${pubs[$i]}"; done
  for i in "${!users[@]}"; do
    echo "---"
    echo "apiVersion: v1"
    echo "kind: Secret"
    echo "metadata: {name: nats-nkey-${users[$i]}, labels: {app.kubernetes.io/part-of: svckit}}"
    echo "type: Opaque"
    echo "stringData: {seed: ${seeds[$i]}}"
  done
  exit 0
fi

dir=${1:?usage: scripts/nats-nkeys.sh DIR | --k8s}
mkdir -p "$dir"
chmod 700 "$dir"
for u in "${users[@]}"; do
  [ -e "$dir/$u.nk" ] || "$svckit" nkey --out "$dir/$u.nk" >/dev/null
  echo "${u^^}_NKEY=$("$svckit" nkey --public "$dir/$u.nk")"
done
