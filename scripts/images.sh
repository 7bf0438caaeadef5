#!/usr/bin/env bash
# Container images of the svckit services, built and tested with podman.
#
#   bash scripts/images.sh build    # `make images`: svckit/<service>:latest for each
#   bash scripts/images.sh test     # `make test-images`: build, then run and test them
#                                   # (tests/images/: each image, deploy/compose.yaml,
#                                   # deploy/k8s/ with `podman kube play`)
#   bash scripts/images.sh sizes    # the sizes of the images already built
#
# No Docker engine and no registry are needed: podman runs rootful and
# daemonless with its configuration and storage under var/containers
# (scripts/podman-env.sh), and the build stage's debian:bookworm-slim is made
# locally by debootstrap once (scripts/base-image.sh). The Dockerfile is the
# same one a stock `docker build --build-arg SERVICE=<name> .` uses elsewhere.
#
# Environment:
#   SERVICES   the programs to build (default: every services/*/main.c, then
#              every examples/*/main.c)
#   LINK       passed to the Dockerfile: auto (default), static, mixed, dynamic
#   IMAGE_PREFIX  image names (default svckit, giving svckit/<service>)
set -euo pipefail
cd "$(dirname "$0")/.."

cmd=${1:-build}
IMAGE_PREFIX=${IMAGE_PREFIX:-svckit}
LINK=${LINK:-auto}

service_list() {
  if [ -n "${SERVICES:-}" ]; then
    echo "$SERVICES" | tr ', ' '\n' | grep -v '^$'
  else
    local d
    for d in services/*/main.c examples/*/main.c; do
      [ -f "$d" ] && basename "$(dirname "$d")"
    done
  fi
  return 0
}

# The sizes of the images of the services named (all of IMAGE_PREFIX's without).
sizes() {
  local filters=() s
  for s in "$@"; do filters+=(--filter "reference=$IMAGE_PREFIX/$s:latest"); done
  [ ${#filters[@]} -gt 0 ] || filters=(--filter "reference=$IMAGE_PREFIX/*:latest")
  podman image ls "${filters[@]}" --format 'table {{.Repository}}:{{.Tag}}\t{{.Size}}\t{{.Created}}'
}

build() {
  local t0 s rev version log b0
  SVCKIT_DEPS_IMAGES=1 bash scripts/deps.sh
  . scripts/podman-env.sh
  t0=$(date +%s)
  bash scripts/base-image.sh
  mapfile -t svcs < <(service_list)
  if [ ${#svcs[@]} -eq 0 ]; then
    echo "images: no services/*/main.c nor examples/*/main.c: nothing to build"
    return 0
  fi
  rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  version=$(cat VERSION 2>/dev/null || echo 0.0.0)
  log=$(mktemp)
  for s in "${svcs[@]}"; do
    b0=$(date +%s)
    # --format docker: the OCI format drops HEALTHCHECK. Never --pull: the
    # base image is local.
    if ! podman build --format docker --build-arg SERVICE="$s" --build-arg GIT_REV="$rev" \
         --build-arg LINK="$LINK" -t "$IMAGE_PREFIX/$s:latest" -t "$IMAGE_PREFIX/$s:$version" \
         -f Dockerfile . >"$log" 2>&1; then
      tail -40 "$log" >&2
      rm -f "$log"
      echo "images: building $IMAGE_PREFIX/$s failed" >&2
      exit 1
    fi
    echo "images: $IMAGE_PREFIX/$s:latest built in $(( $(date +%s) - b0 )) s" \
         "($(grep -m1 -oE 'linked (static|mixed|dynamic)' "$log" || echo 'cached'))"
  done
  rm -f "$log"
  echo "images: built ${#svcs[@]} image(s) in $(( $(date +%s) - t0 )) s"
  sizes "${svcs[@]}"
}

case $cmd in
  build) build ;;
  test)
    build
    . scripts/podman-env.sh
    # Each test prints its closing tally last; this prints their sum last.
    SERVICES="$(service_list | tr '\n' ' ')"
    export SERVICES IMAGE_PREFIX
    p=0 f=0
    for t in test_images test_compose test_kube test_tutorial; do
      [ -f "tests/images/$t.py" ] || continue
      log=$(mktemp)
      python3 "tests/images/$t.py" | tee "$log" || true   # the tally says how it went
      tally=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
      rm -f "$log"
      if [ -z "$tally" ]; then f=$((f + 1)); echo "not ok - $t.py ended without a tally"; continue; fi
      p=$((p + ${tally%% *})); tally=${tally#*, }; f=$((f + ${tally%% *}))
    done
    echo "$p passed, $f failed"
    [ "$f" -eq 0 ] && [ "$p" -gt 0 ] ;;
  sizes) . scripts/podman-env.sh; mapfile -t svcs < <(service_list); sizes "${svcs[@]}" ;;
  *) echo "usage: $0 build|test|sizes" >&2; exit 2 ;;
esac
