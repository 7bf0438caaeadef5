#!/usr/bin/env bash
# Makes the local image debian:bookworm-slim that the Dockerfile's build stage
# starts FROM, for machines that cannot pull from a registry. It is debootstrap's
# minbase of Debian 12, trimmed the way Docker Hub's slim image is (no docs, man
# pages, locales or apt lists), imported into the podman store under
# var/containers. Cached: does nothing when the image already exists.
#
#   bash scripts/base-image.sh            # build it if missing
#   bash scripts/base-image.sh --force    # rebuild it
#
# Environment: DEBIAN_MIRROR (default: the mirror apt already uses, else
# http://deb.debian.org/debian), SVCKIT_BASE_IMAGE (default debian:bookworm-slim).
# On a machine with a registry, `podman pull debian:bookworm-slim` does the same.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/podman-env.sh

IMAGE=${SVCKIT_BASE_IMAGE:-debian:bookworm-slim}
force=0
[ "${1:-}" = --force ] && force=1

if [ $force = 0 ] && podman image exists "$IMAGE"; then
  exit 0
fi

# The mirror apt uses: the URIs of a deb822 source, or a one-line source.
mirror() {
  local m
  m=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/debian.sources 2>/dev/null \
        | awk '{print $2}' | grep -v security | head -1)
  [ -n "$m" ] || m=$(grep -hsE '^deb +(\[[^]]*\] +)?https?://[^ ]+ +bookworm +' /etc/apt/sources.list \
        | sed -E 's/^deb +(\[[^]]*\] +)?//' | awk '{print $1}' | head -1)
  echo "${m:-http://deb.debian.org/debian}"
}
MIRROR=${DEBIAN_MIRROR:-$(mirror)}

command -v debootstrap >/dev/null || { echo "base-image: debootstrap is not installed" >&2; exit 1; }

start=$(date +%s)
rootfs=$(mktemp -d "$SVCKIT_CONTAINERS_STATE/rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
echo "base-image: debootstrap --variant=minbase bookworm from $MIRROR"
debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 \
  || { tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"

# Trim like the slim image: its dpkg excludes, applied after the fact.
rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
       "$rootfs"/usr/share/groff/* "$rootfs"/usr/share/lintian/* "$rootfs"/usr/share/linda/* \
       "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
       "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* \
       "$rootfs"/tmp/* "$rootfs"/root/.bash_history
find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
mkdir -p "$rootfs"/etc/dpkg/dpkg.cfg.d
cat > "$rootfs"/etc/dpkg/dpkg.cfg.d/docker <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
CONF
cat > "$rootfs"/etc/apt/apt.conf.d/docker-clean <<'CONF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
CONF
printf 'APT::Install-Recommends "false";\n' > "$rootfs"/etc/apt/apt.conf.d/docker-no-recommends
# The same sources as Docker Hub's image, so a build stage's apt-get behaves alike.
rm -f "$rootfs"/etc/apt/sources.list
cat > "$rootfs"/etc/apt/sources.list.d/debian.sources <<CONF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
CONF
: > "$rootfs"/etc/hostname
: > "$rootfs"/etc/resolv.conf

tar --numeric-owner -C "$rootfs" -c . | podman import -q \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' - "$IMAGE" >/dev/null
echo "base-image: $IMAGE imported in $(( $(date +%s) - start )) s," \
     "$(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
