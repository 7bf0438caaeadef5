#!/bin/sh
# Runs inside the Dockerfile's build stage: builds one program with the
# project's Makefile, builds the healthcheck probe, and lays out the whole
# runtime filesystem under $ROOTFS for the FROM scratch stage to copy.
#
#   sh docker/build.sh SERVICE [LINK]
#
# LINK chooses how the program is linked (the Makefile's objects either way):
#   auto     (default) fully static from the archives that exist, leaving out
#            the libraries that have none: links when the program never calls
#            them (a program that does not call libnats); otherwise mixed
#   static   fully static (-static): no loader, no shared library in the image;
#            fails while a library (Debian's libnats) ships no .a archive
#   mixed    Debian's .a archives where they exist (libuv, jansson, libsodium,
#            sqlite3, http-parser), shared objects for the rest (libnats and
#            what it needs, glibc); --as-needed drops any the program never calls
#   dynamic  exactly the Makefile's link: every library shared
# The runtime filesystem then holds the program, the probe, exactly the shared
# objects ldd lists for them (with the loader), /etc/passwd, /etc/group and
# /etc/nsswitch.conf, and an empty /tmp; $ROOTFS-data is the empty /data,
# owned by the non-root user.
#
# Environment: ROOTFS (default /rootfs), GIT_REV (passed to make), JOBS, TLS
# (1: TLS to NATS linked in, as `make TLS=1` does; mbed TLS's archives count
# as any other library's), PG (1: the store on PostgreSQL linked in, as
# `make PG=1` does: libpq is only linkable shared, so LINK is dynamic).
# Run as root (chown); in the build stage it is.
set -eu

SERVICE=${1:?usage: docker/build.sh SERVICE [auto|static|mixed|dynamic]}
LINK=${2:-auto}
ROOTFS=${ROOTFS:-/rootfs}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
TLS=${TLS:-0}
PG=${PG:-0}
UID_NONROOT=65532
if [ "$PG" = 1 ]; then
  case $LINK in
    auto|dynamic) LINK=dynamic ;;
    *) echo "build.sh: PG=1 links dynamically (Debian's libpq.a does not link statically)" >&2; exit 2 ;;
  esac
fi

case $SERVICE in
  ''|*/*|.*) echo "build.sh: bad SERVICE '$SERVICE'" >&2; exit 2 ;;
esac
if [ ! -f "services/$SERVICE/main.c" ] && [ ! -f "examples/$SERVICE/main.c" ]; then
  echo "build.sh: no services/$SERVICE/main.c nor examples/$SERVICE/main.c;" \
       "pass --build-arg SERVICE=<name>" >&2
  exit 2
fi

# The Makefile runs scripts/deps.sh (the developer's packages) unless its stamp
# is newer; the build stage already installed what linking needs.
mkdir -p build && touch build/.deps-ok

# One variable of the Makefile, as make computes it.
mkvar() { make --no-print-directory STATIC=0 TLS="$TLS" --eval="print-var-%: ; @echo \$(\$*)" "print-var-$1"; }

MULTIARCH=$(gcc -print-multiarch 2>/dev/null || true)
# The static archive for -lNAME, if Debian ships one (libuv's is libuv_a.a).
archive() {
  for d in "/usr/lib/$MULTIARCH" /usr/lib /usr/local/lib; do
    for a in "$d/lib$1.a" "$d/lib${1}_a.a"; do
      [ -f "$a" ] && { echo "$a"; return 0; }
    done
  done
  return 1
}

# glibc's own libraries stay shared in a mixed link: its static libm cannot be
# mixed with a shared libc.
is_libc() { case $1 in c|m|dl|rt|pthread|util|resolv) return 0 ;; esac; return 1; }

makeldlibs=$(mkvar LDLIBS)
tls_ldflags=
[ "$TLS" = 1 ] && tls_ldflags=$(mkvar TLS_LDFLAGS)
static_libs= ; shared_libs= ; missing=
for f in $makeldlibs; do
  case $f in
    -l*)
      n=${f#-l}
      if is_libc "$n"; then shared_libs="$shared_libs $f"
      elif a=$(archive "$n"); then static_libs="$static_libs $a"
      else shared_libs="$shared_libs $f"; missing="$missing lib$n.a"
      fi ;;
    *) shared_libs="$shared_libs $f" ;;
  esac
done

# $1: the libraries without a static archive: kept for an explicit static link
# (so the error names them), left out when auto tries one (a program that never
# calls them links fully static).
link_static() {
  rm -f "build/bin/$SERVICE"
  make -j"$JOBS" --no-print-directory "build/bin/$SERVICE" GIT_REV="${GIT_REV:-unknown}" STATIC=1 \
    BUILD=build TLS="$TLS" LDLIBS="$static_libs $1 -lpthread -ldl -lm"
}
link_mixed() {
  rm -f "build/bin/$SERVICE"
  make -j"$JOBS" --no-print-directory "build/bin/$SERVICE" GIT_REV="${GIT_REV:-unknown}" STATIC=0 \
    BUILD=build TLS="$TLS" LDFLAGS="-pthread -Wl,--as-needed -Wl,--gc-sections $tls_ldflags" \
    LDLIBS="$static_libs $shared_libs -ldl -lm"
}
link_dynamic() {
  rm -f "build/bin/$SERVICE"
  make -j"$JOBS" --no-print-directory "build/bin/$SERVICE" GIT_REV="${GIT_REV:-unknown}" STATIC=0 \
    BUILD=build TLS="$TLS" PG="$PG"
}

# The objects are built once: a static attempt that fails leaves them for the
# mixed link, which then costs only a link.
make -j"$JOBS" --no-print-directory build/lib/libsvckit.a GIT_REV="${GIT_REV:-unknown}"
linked=$LINK
case $LINK in
  static) link_static "$shared_libs" ;;
  mixed) link_mixed ;;
  dynamic) link_dynamic ;;
  auto)
    log=$(mktemp)
    if link_static "" >"$log" 2>&1; then
      cat "$log"
      linked=static
    else
      linked=mixed
      grep -m3 -E 'undefined reference|cannot find' "$log" | sed 's/^/  /' || true
      echo "build.sh: no fully static link (no static archive for:$missing): mixed link"
      link_mixed
    fi
    rm -f "$log" ;;
  *) echo "build.sh: LINK must be auto, static, mixed or dynamic" >&2; exit 2 ;;
esac

rm -rf "$ROOTFS" "$ROOTFS-data"
mkdir -p "$ROOTFS/etc" "$ROOTFS/tmp" "$ROOTFS-data"
cp "build/bin/$SERVICE" "$ROOTFS/service"
strip --strip-all "$ROOTFS/service"

# The probe is static, so it needs nothing from the image: with musl 34 kB
# (musl-tools); without musl, glibc's static link would cost 700 kB, so it is
# then linked like the program instead (shared beside a shared program).
if command -v musl-gcc >/dev/null 2>&1; then
  probe_cc="musl-gcc -static"
elif ldd "$ROOTFS/service" >/dev/null 2>&1; then
  probe_cc=gcc
else
  probe_cc="gcc -static"
fi
$probe_cc -std=gnu11 -Os -Wall -Wextra -Werror docker/healthcheck.c -o "$ROOTFS/healthcheck"
strip --strip-all "$ROOTFS/healthcheck"

# Exactly the shared objects the two programs load, at the paths ldd prints
# (the loader's path is compiled into the program); no ld.so.cache is needed,
# the loader searches the multiarch directories by default.
for bin in "$ROOTFS/service" "$ROOTFS/healthcheck"; do
  ldd "$bin" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' || true
done | sort -u | while read -r lib; do
  mkdir -p "$ROOTFS$(dirname "$lib")"
  cp -L "$lib" "$ROOTFS$lib"
done

# A name for the user (logs, `ps`), and the resolver order: glibc 2.34+ has
# files and dns built in, so no libnss_*.so is needed, static or shared.
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/data:/sbin/nologin\n' \
  "$UID_NONROOT" "$UID_NONROOT" > "$ROOTFS/etc/passwd"
printf 'root:x:0:\nnonroot:x:%s:\n' "$UID_NONROOT" > "$ROOTFS/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$ROOTFS/etc/nsswitch.conf"
chown "$UID_NONROOT:$UID_NONROOT" "$ROOTFS-data"
chmod 0755 "$ROOTFS-data"
chmod 1777 "$ROOTFS/tmp"

echo "build.sh: $SERVICE linked $linked (LINK=$LINK); runtime files:"
( cd "$ROOTFS" && find . -type f -exec ls -l {} + | awk '{ printf "  %9d  %s\n", $5, $9; s += $5 } END { printf "  %9d  total\n", s }' )
