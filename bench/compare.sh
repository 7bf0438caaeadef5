#!/usr/bin/env bash
# bench/compare.sh: this tree's demo and products against the binaries of an
# earlier commit, in one run: rounds alternate (base, this, this, base, ...),
# each one bench/run.sh round of the scenarios svckit, svckit-render and
# products, so both sides see the same machine. Prints, per scenario, the
# median req/s and server CPU per request of each side and their ratio.
#
# Environment (all optional):
#   BENCH_BASE_REV=<rev>     the commit to compare with (default: git merge-base HEAD main)
#   BENCH_COMPARE_ROUNDS=6   rounds per side
#   BENCH_DURATION=5 BENCH_WARMUP=1   per round, as for run.sh
# The base is built from `git archive` in a temporary directory (no worktree
# is touched); results go to build/bench/compare/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BASE_REV=${BENCH_BASE_REV:-$(git merge-base HEAD main)}
ROUNDS=${BENCH_COMPARE_ROUNDS:-6}
OUT=build/bench/compare
BASE_DIR=$(mktemp -d /tmp/svckit-bench-base.XXXXXX)
trap 'rm -rf "$BASE_DIR"' EXIT

echo "compare: base $(git rev-parse --short "$BASE_REV") vs this tree ($(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty))"
git archive "$BASE_REV" | tar -x -C "$BASE_DIR"
make -C "$BASE_DIR" CI=true -j2 build/bin/demo build/bin/products >"$BASE_DIR/build.log" 2>&1 ||
    { tail -20 "$BASE_DIR/build.log"; exit 1; }
make CI=true -j2 build/bin/demo build/bin/products >/dev/null

rm -rf "$OUT" && mkdir -p "$OUT"
run_side() { # side round
    local side=$1 round=$2 bindir=build/bin
    [ "$side" = base ] && bindir=$BASE_DIR/build/bin
    BENCH_ONLY="svckit svckit-render products" BENCH_ROUNDS=1 BENCH_IDLE_CONNS=0 BENCH_READY_RUNS=0 \
        BENCH_DURATION=${BENCH_DURATION:-5} BENCH_WARMUP=${BENCH_WARMUP:-1} BENCH_NO_DEPS=1 \
        BENCH_SVCKIT_BIN=$bindir/demo BENCH_PRODUCTS_BIN=$bindir/products \
        bash bench/run.sh >"$OUT/$side-$round.log" 2>&1
    cp build/bench/results.json "$OUT/$side-$round.json"
}
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then run_side base "$r"; run_side this "$r"
    else run_side this "$r"; run_side base "$r"; fi
    echo "round $r of $ROUNDS done"
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
print("| scenario | base req/s | this req/s | ratio | base CPU/req (us) | this CPU/req (us) | ratio |")
print("|---|---:|---:|---:|---:|---:|---:|")
for sc in ("svckit", "svckit-render", "products"):
    v = {}
    for side in ("base", "this"):
        rps, cpu = [], []
        for r in range(1, rounds + 1):
            m = json.load(open(f"{out}/{side}-{r}.json"))["scenarios"][sc]["median"]
            rps.append(m["rps"]); cpu.append(m["server_cpu_us_per_request"])
        v[side] = (statistics.median(rps), statistics.median(cpu))
    (br, bc), (tr, tc) = v["base"], v["this"]
    print(f"| {sc} | {br:.0f} | {tr:.0f} | {tr / br:.3f} | {bc:.2f} | {tc:.2f} | {tc / bc:.3f} |")
PY
