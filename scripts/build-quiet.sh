#!/usr/bin/env bash
# The build of `make run`, for a person: one line per phase instead of every
# compiler command. The compiler's own output is shown in full when the build
# fails (the command lines left out), and kept in $BUILD/make-run.log either
# way. `make` and `make test` are not affected: CI logs want everything.
#
#   svckit: deps      ok
#   svckit: build     143 files compiled in 41s
#
# MAKE is the make that called us (its flags, -j included, come in MAKEFLAGS);
# BUILD the build tree (build, or build/san with SAN=1).
set -uo pipefail
cd "$(dirname "$0")/.."

make=${MAKE:-make}
build=${BUILD:-build}
mkdir -p "$build"
log=$build/make-run.log
tty=0
[ -t 1 ] && tty=1

# The compiler's messages without the command lines make echoes (each ends in
# "-o <target>"; the archive is built by "ar rcs", stale objects go by "rm").
messages() {
  grep -v -E -e ' -o [^ ]+$' -e '^(ar rcs|rm -f?) ' "$1"
}

if ! "$make" -s --no-print-directory deps >"$log" 2>&1; then
  echo "svckit: deps      failed:" >&2
  cat "$log" >&2
  exit 1
fi
# Only an installation says anything; pass that on.
if [ -s "$log" ]; then
  sed 's/^/  /' "$log"
fi
echo "svckit: deps      ok"

# The output is captured, so parallel jobs cost no readability: one per CPU
# unless the caller chose (make -jN run).
jobs=()
case " ${MAKEFLAGS:-} " in
*-j* | *--jobs*) ;;
*) jobs=(-j"$(nproc 2>/dev/null || echo 1)") ;;
esac

total=$("$make" --no-print-directory -n all 2>/dev/null | grep -c -e ' -c ')
start=$SECONDS
: >"$log"
compiled=0
while IFS= read -r line; do
  printf '%s\n' "$line" >>"$log"
  case $line in
  *" -c "*)
    compiled=$((compiled + 1))
    [ "$tty" = 1 ] && printf '\rsvckit: build     compiling %d of %d files' "$compiled" "$total"
    ;;
  esac
done < <("$make" --no-print-directory "${jobs[@]}" all 2>&1; echo $? >"$log.rc")
[ "$tty" = 1 ] && [ "$compiled" -gt 0 ] && printf '\r\033[K'
rc=$(cat "$log.rc" 2>/dev/null || echo 1)
rm -f "$log.rc"
took=$((SECONDS - start))

if [ "$rc" != 0 ]; then
  echo "svckit: build     failed (full log: $log):" >&2
  messages "$log" >&2
  exit 1
fi
# Compiler warnings only ("file.c:12:5: warning: ..."): the linker's notes
# on every static link (glibc's NSS, the Makefile says why) are no news, and
# with parallel links their lines can come interleaved past any pattern.
warnings=$(messages "$log" | grep -c -E '^[^ :]+\.[ch]:[0-9]+(:[0-9]+)?: warning: ')
note=
[ "$warnings" -gt 0 ] && note=" ($warnings compiler warnings: $log)"
if [ "$compiled" -eq 0 ]; then
  echo "svckit: build     up to date$note"
else
  files=files
  [ "$compiled" = 1 ] && files=file
  echo "svckit: build     $compiled $files compiled in ${took}s$note"
fi
