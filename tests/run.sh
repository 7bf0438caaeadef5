#!/usr/bin/env bash
# Runs every test and prints the closing tally: "N passed, N failed".
#
#   unit tests      build/tests/unit/*/test_*      (release) and build/san/... (ASan/UBSan);
#                   the store's again on PostgreSQL (a throwaway server,
#                   tests/integration/pg_support.py, DATABASE_URL set)
#   fuzz corpora    build/san/fuzz/*_fuzz fuzz/<name>/   (each file replayed once)
#   integration     pytest tests/integration, against the ASan/UBSan binaries
#                   and then the release binaries; then the store's,
#                   products' and auth's tests again with every service on
#                   PostgreSQL (build/pg, SVCKIT_TEST_PG=1: one throwaway
#                   server, a database per DATA_DIR)
#   images          scripts/images.sh test: builds the container images with
#                   podman and runs the login-then-list flow against them
#                   (SVCKIT_TEST_IMAGES=0 skips it, e.g. on a machine without
#                   the network to debootstrap a base image)
#
# Environment: TESTS_ONLY=unit|fuzz|integration|images to run one part; PYTEST_ARGS.
set -uo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
failures=()
only=${TESTS_ONLY:-}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# run_unit BUILD [DIR LABEL]: the test binaries under DIR (default: all).
run_unit() {
  local build=$1 dir=${2:-$1/tests/unit} label=${3:-unit} t out p f
  for t in $(find "$dir" -type f -name 'test_*' -perm -u+x 2>/dev/null | sort); do
    out=$("$t" 2>&1)
    p=$(printf '%s\n' "$out" | grep -c '^ok - ')
    f=$(printf '%s\n' "$out" | grep -c '^not ok - ')
    if ! printf '%s\n' "$out" | grep -q '^# [0-9]* passed'; then
      f=$((f + 1)); out+=$'\n'"not ok - $t did not finish"
    fi
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$f" -gt 0 ]; then
      printf '%s\n' "$out" | grep -B0 -A0 -E '^(not ok|#   )' | sed "s|^|[$t] |"
      failures+=("$t")
    fi
    echo "$label  $t: $p passed, $f failed"
  done
}

# The store's unit tests on PostgreSQL, both builds, against one server.
run_unit_pg() {
  local dir url
  dir=$(mktemp -d /tmp/svckit-pg-XXXXXX)
  url=$(/usr/bin/python3 tests/integration/pg_support.py start "$dir" 2>&1 | tail -1)
  if [[ $url == postgres://* ]]; then
    DATABASE_URL=$url run_unit build build/tests/unit/store unit-pg
    DATABASE_URL=$url run_unit build/san build/san/tests/unit/store unit-pg
  else
    failed=$((failed + 1)); failures+=("PostgreSQL for the unit tests"); echo "unit-pg: no server: $url"
  fi
  /usr/bin/python3 tests/integration/pg_support.py stop "$dir"
  rm -rf "$dir"
}

run_fuzz() {
  local build=$1 t name
  for t in "$build"/fuzz/*_fuzz; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    if "$t" "fuzz/corpus/${name%_fuzz}" >/tmp/svckit-fuzz-$$.log 2>&1; then
      passed=$((passed + 1)); echo "fuzz  $name: corpus replayed clean"
    else
      failed=$((failed + 1)); failures+=("fuzz $name"); tail -20 /tmp/svckit-fuzz-$$.log
    fi
  done
  rm -f /tmp/svckit-fuzz-$$.log
}

# run_integration BUILD [TESTS...]: pytest on TESTS (default: all).
run_integration() {
  local build=$1 log summary p f
  shift
  log=$(mktemp)
  SVCKIT_BUILD=$build /usr/bin/python3 -m pytest -p no:cacheprovider -q ${PYTEST_ARGS:-} \
      "${@:-tests/integration}" 2>&1 | tee "$log" | grep -vE '^\.+|^$' | tail -60
  summary=$(grep -E '[0-9]+ (passed|failed|error)' "$log" | tail -1)
  p=$(printf '%s' "$summary" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
  f=$(printf "%s" "$summary" | grep -oE "[0-9]+ (failed|error)" | grep -oE "[0-9]+" | awk "{s+=\$1} END {print s+0}")
  [ -n "$p" ] || p=0; [ -n "$f" ] || f=0
  if [ -z "$summary" ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  [ "$f" -gt 0 ] && failures+=("integration ($build)")
  echo "integ $build: $p passed, $f failed"
  rm -f "$log"
}

if [ -z "$only" ] || [ "$only" = unit ]; then
  run_unit build
  run_unit build/san
  run_unit_pg
fi
if [ -z "$only" ] || [ "$only" = fuzz ]; then
  run_fuzz build/san
fi
if [ -z "$only" ] || [ "$only" = integration ]; then
  if [ -d tests/integration ] && ls tests/integration/test_*.py >/dev/null 2>&1; then
    run_integration build/san
    run_integration build
    SVCKIT_TEST_PG=1 run_integration build/pg tests/integration/test_products.py tests/integration/test_products_dummyjson.py \
      tests/integration/test_auth.py tests/integration/test_orders.py tests/integration/test_store_outbox.py \
      tests/integration/test_store_pg.py tests/integration/test_pg_support.py
  fi
fi

run_images() {
  local log summary p f
  log=$(mktemp)
  bash scripts/images.sh test >"$log" 2>&1
  tail -25 "$log"
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  p=$(printf '%s' "$summary" | sed -E 's/^([0-9]+) passed.*/\1/')
  f=$(printf '%s' "$summary" | sed -E 's/.* ([0-9]+) failed.*/\1/')
  if [ -z "$summary" ]; then p=0; f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  [ "$f" -gt 0 ] && failures+=("images")
  echo "image tests: $p passed, $f failed"
  rm -f "$log"
}

if { [ -z "$only" ] && [ "${SVCKIT_TEST_IMAGES:-1}" != 0 ]; } || [ "$only" = images ]; then
  run_images
fi

echo
if [ ${#failures[@]} -gt 0 ]; then
  echo "failing: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
