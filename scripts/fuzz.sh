#!/usr/bin/env bash
# `make fuzz [FUZZ_SECONDS=30] [FUZZ_TARGETS="http_fields jwt"]`: libFuzzer on
# every fuzz/<name>_fuzz.c for a bounded time each, under ASan and UBSan.
#
# The library and the targets are built with clang into build/libfuzzer (the
# Makefile's own rules, with clang and the fuzzer's instrumentation), each
# target linked with libFuzzer's main instead of fuzz/replay.c. Each target
# runs for FUZZ_SECONDS on its corpus, fuzz/corpus/<name>/, which grows in
# place (commit what is new and small); a crash, leak, UBSan report or
# invariant failure stops the run and leaves its input in
# build/libfuzzer/artifacts/<name>/, to be replayed with
# `build/san/fuzz/<name>_fuzz <file>` and copied into the corpus once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-${FUZZ_SECONDS:-30}}"
case "$seconds" in '' | *[!0-9]*) echo "fuzz.sh: FUZZ_SECONDS must be a whole number of seconds" >&2; exit 2 ;; esac
command -v clang >/dev/null || { echo "fuzz.sh: libFuzzer needs clang (apt-get install clang)" >&2; exit 2; }

build=build/libfuzzer
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
# STATIC=0: the sanitizers need the shared C library. No CI=true: clang's
# warnings are not gcc's, and gcc's -Werror build is the one CI checks.
make --no-print-directory -j"$(nproc)" CC=clang BUILD="$build" STATIC=0 \
  OPT="-O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $san" LDSAN="$san" \
  lib $(for f in fuzz/*_fuzz.c; do n=$(basename "$f" .c); echo "$build/obj/fuzz/$n.o"; done) >"$build.log" 2>&1 ||
  { tail -30 "$build.log"; echo "fuzz.sh: build failed (log: $build.log)" >&2; exit 1; }
libs="$(pkg-config --libs libuv jansson libsodium sqlite3 zlib) -lhttp_parser -lmbedtls -lmbedx509 -lmbedcrypto -lpthread -lm"

targets="${FUZZ_TARGETS:-$(for f in fuzz/*_fuzz.c; do n=$(basename "$f" .c); echo "${n%_fuzz}"; done)}"
failed=()
for name in $targets; do
  bin="$build/fuzz/${name}_fuzz"
  mkdir -p "$build/fuzz" "$build/artifacts/$name" "fuzz/corpus/$name"
  # shellcheck disable=SC2086
  clang -fsanitize=fuzzer $san "$build/obj/fuzz/${name}_fuzz.o" "$build/lib/libsvckit.a" $libs -o "$bin"
  echo "fuzz  $name: ${seconds}s on fuzz/corpus/$name ($(ls "fuzz/corpus/$name" | wc -l) inputs)"
  # -timeout: an input that takes this long is a hang; -rss_limit_mb bounds
  # what one input may hold. Only libFuzzer's closing lines are shown.
  if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
      -artifact_prefix="$build/artifacts/$name/" "fuzz/corpus/$name" >"$build/$name.log" 2>&1; then
    grep -E "^#[0-9]+ *DONE|Done [0-9]+ runs" "$build/$name.log" | tail -1 || true
  else
    failed+=("$name")
    tail -40 "$build/$name.log"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in $build/artifacts/)" >&2
  exit 1
fi
echo "fuzz: every target ran ${seconds}s clean"
