"""bench/orders_e2e.py: the checkout end to end (issue 10, item 7).

All five services (auth, products, orders, payments, gateway) and
nats-server -js on this machine, SQLite synchronous=FULL (svckit's default),
PAYMENT_FAIL_RATE=0, enough stock that every order is confirmed. The load is
bench/rate.c (open loop, C): POST /orders through the gateway, each request a
new Idempotency-Key, one line of product 1..5 per order (-b).

  1. Maximum: rate.c offers --offer orders/s for --seconds over --conns
     connections (more than the system takes: the surplus queues in rate.c,
     so this is a closed loop of --conns clients). Orders settled per second
     = orders confirmed / (last confirmation - first POST due).
  2. Latency: half of that rate, open loop, --seconds (after a sync: the
     maximum's unflushed writes are not left to the kernel's writeback in
     the middle of it); POST->confirmed per
     order = the order's updated_at when it became confirmed (orders' clock,
     ms, stamped in the confirming transaction, so one commit before it is
     visible) - the time its POST was due (rate.c -o).

Where the time goes: each service's commits (db_write_batches_total, one
fsync each), CPU seconds (/proc/<pid>/stat) and context switches (every
thread's, /proc/<pid>/task/*/status) per order, per phase. Per hop of the
latency phase (SQLite runs), from each service's own stamp in its
transaction: due -> order stored (orders) -> stock reserved (products) ->
charged (payments) -> confirmed (orders), and due -> POST answered;
percentiles of each, the mean of each over the slowest 1%, and when those
were due (a burst or spread out). Then every retry or failure counter
that moved in the phase (consumer retries, outbox publish failures, full
write queues, busy loop reads, NATS errors, failed RPCs), or "none".
Memory: each service's VmRSS once started (issue 10's target: orders and
payments at most 4 MiB idle) and after both phases.

    SVCKIT_BUILD=build /usr/bin/python3 bench/orders_e2e.py [--seconds 10] [--offer 8000] [--conns 128]
        [--workers 1] [--log-level info] [--rate R (the latency phase's; default half the maximum)]
        [--latency-only (with --rate: no maximum phase)] [--env NAME=VALUE ...] [--pg]

--pg: the four stores on PostgreSQL instead (needs SVCKIT_BUILD=build/pg,
`make PG=1 CI=true -j2 bins`): a throwaway server (tests/integration/
pg_support.py, fsync on), a database per service, as deploy/ runs them.
The same build without --pg is the SQLite run to compare it with.
"""
import argparse
import collections
import datetime
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("SVCKIT_BUILD", "build")
from conftest import ROOT, pg_psql, wait_until  # noqa: E402
from pg_support import PgServer  # noqa: E402
from shop_support import Shop, admin, token  # noqa: E402
from test_msg_support import NatsServer, metric  # noqa: E402

SERVICES = ("gateway", "auth", "products", "orders", "payments")
BODY = '{"items":[{"product_id":%d,"quantity":1}]}'


def rate_binary():
    out = os.path.join(ROOT, "build", "bench", "rate")
    src = os.path.join(HERE, "rate.c")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.check_call(["cc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", src, "-o", out])
    return out


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def switches(pid):
    """Context switches of every thread of pid: each is a thread going to
    sleep (voluntary: waiting for another thread, a socket, a disk) or
    being put off the CPU."""
    n = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                n += sum(int(line.split()[1]) for line in f if "ctxt_switches:" in line)
        except FileNotFoundError:
            pass
    return n


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def rss_all(shop):
    return {name: rss_kib(getattr(shop, name).proc.pid) for name in SERVICES}


# Counters that move only when something went wrong or was retried: any
# that moved during a phase is printed with it (a stalled run says why).
TROUBLE = ('db_consumer_events_total{durable="', 'outbox_publish_failures_total', 'outbox_dropped_total',
           'db_write_queue_full_total', 'db_loop_busy_total', 'db_writes_total{db="', 'nats_reconnects_total',
           'nats_publish_failures_total', 'nats_server_errors_total', 'nats_messages_dropped_total',
           'rpc_calls_total{')


def trouble(shop):
    """{service series: value} of TROUBLE's series that are not successes."""
    out = {}
    for name in SERVICES:
        _st, _, body = getattr(shop, name).request("GET", "/metrics")
        for line in body.decode().splitlines():
            if line.startswith(TROUBLE) and not any(ok in line for ok in ('"applied"', '"ok"', '"duplicate"')):
                series, value = line.rsplit(" ", 1)
                out[f"{name} {series}"] = float(value)
    return out


def snapshot(shop, nats):
    s = {}
    for name in SERVICES:
        svc = getattr(shop, name)
        pid = svc.proc.pid
        s[name] = (metric(svc, "db_write_batches_total"), cpu_s(pid), switches(pid))
    s["nats-server"] = (0.0, cpu_s(nats.proc.pid), switches(nats.proc.pid))
    return s


def ms(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


class OrdersDb:
    """orders' rows (id, status, created_at, updated_at), from its SQLite
    file or its PostgreSQL database."""

    def __init__(self, shop):
        self.path = os.path.join(shop.orders.data_dir, "orders.db")
        self.url = shop.orders.env.get("DATABASE_URL")

    def rows(self, since_id):
        sql = f"SELECT id, status, created_at, updated_at FROM orders WHERE id > {int(since_id)}"
        if self.url:
            out = pg_psql(self.url, "SET search_path TO orders; " + sql)
            return [(int(r[0]), r[1], r[2], r[3]) for r in (x.split("|") for x in out.splitlines()[1:])]
        c = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return c.execute(sql).fetchall()
        finally:
            c.close()

    def max_id(self):
        rows = self.rows(0)
        return max((r[0] for r in rows), default=0)


def stamps(shop, table, ids_from):
    """{order_id: ms} of a service's table (products' reservations,
    payments' charges): when its step ran, stamped in its transaction."""
    name = {"reservations": "products", "payments": "payments"}[table]
    d = getattr(shop, name).data_dir
    path = next(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".db"))
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return {r[0]: ms(r[1]) for r in
                c.execute(f"SELECT order_id, created_at FROM {table} WHERE order_id > {int(ids_from)}")}
    finally:
        c.close()


def hops(shop, rows, due, posted, first):
    """Where POST->confirmed goes, hop by hop, each from its service's own
    stamp (one clock: one machine): the POST answered, the order row (orders'
    transaction), the reservation (products), the charge (payments), the
    confirmation (orders). Percentiles of each hop, and the mean of each over
    the slowest 1% of orders: the hop their time went to."""
    reserved = stamps(shop, "reservations", first)
    charged = stamps(shop, "payments", first)
    names = ("due->stored", "stored->reserved", "reserved->charged", "charged->confirmed", "due->answered")
    per = []
    for oid, _status, created, updated in rows:
        if oid not in due or oid not in reserved or oid not in charged:
            continue
        t = (due[oid], ms(created), reserved[oid], charged[oid], ms(updated))
        per.append((t[4] - t[0], [t[i + 1] - t[i] for i in range(4)] + [posted[oid] - due[oid]], t[0]))
    per.sort(key=lambda x: x[0])
    slow = per[int(len(per) * 0.99):] or per
    print("\n| hop | p50 ms | p90 ms | p99 ms | max ms | mean in the slowest 1% |")
    print("|---|---:|---:|---:|---:|---:|")
    for i, n in enumerate(names):
        xs = [p[1][i] for p in per]
        print(f"| {n} | {pct(xs, .5):.1f} | {pct(xs, .9):.1f} | {pct(xs, .99):.1f} | {max(xs):.1f} "
              f"| {sum(p[1][i] for p in slow) / len(slow):.1f} |")
    # When the slowest 1% were due (s into the phase, 100 ms bins): a burst or spread out.
    t0 = min(p[2] for p in per)
    bins = collections.Counter(int((p[2] - t0) / 100) for p in slow)
    began = datetime.datetime.fromtimestamp(t0 / 1000, datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3]
    print("the slowest 1% were due at: " +
          ", ".join(f"+{b / 10:.1f} s ({n})" for b, n in sorted(bins.most_common(6))) +
          f" (the phase began at {began}Z: to match with perf record -k realtime, vmstat -t)")


def run_rate(shop, rate, seconds, conns, tag, out=None):
    args = [rate_binary(), "-r", str(rate), "-d", str(seconds), "-c", str(conns), "-t", "30000",
            "-m", "POST", "-b", BODY % (1 + rate % 5), "-k", f"{tag}-{time.time_ns()}",
            "-H", "Content-Type: application/json", "-H", "Authorization: Bearer " + token("bench")]
    if out:
        args += ["-o", out]
    args += ["127.0.0.1", str(shop.gateway.port), "/orders"]
    p = subprocess.run(args, capture_output=True, text=True, check=True)
    line = [x for x in p.stdout.splitlines() if x.startswith("RATE ")][-1]
    return dict(kv.split("=") for kv in line.split()[1:])


def failures(r):
    """What failed POSTs got, when some did: ": status 3, timeout 1"."""
    kinds = [(k[5:], r[k]) for k in ("fail_status", "fail_conn", "fail_timeout", "fail_proto") if r.get(k, "0") != "0"]
    return (": " + ", ".join(f"{k} {n}" for k, n in kinds)) if kinds else ""


def settle(db, since_id, n_expected):
    """Waits until the phase's orders are all confirmed or cancelled; its rows."""
    def done():
        rows = db.rows(since_id)
        return len(rows) >= n_expected and all(r[1] != "pending" for r in rows) and rows
    return wait_until(done, timeout=300, what="orders settled", interval=0.2)


def per_order(before, after, n):
    return {k: ((after[k][0] - before[k][0]) / n, (after[k][1] - before[k][1]) * 1000 / n,
                (after[k][2] - before[k][2]) / n) for k in after}


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * (len(xs) - 1) + 0.5))] if xs else float("nan")


def maximum(shop, nats, db, a):
    """Phase 1: the orders settled per second; (cost per order, rate)."""
    first = db.max_id()
    before = snapshot(shop, nats)
    r1 = run_rate(shop, a.offer, a.seconds, a.conns, "max")
    rows = settle(db, first, int(r1["ok"]))
    after = snapshot(shop, nats)
    t0 = min(ms(r[2]) for r in rows)
    t1 = max(ms(r[3]) for r in rows)
    confirmed = sum(1 for r in rows if r[1] == "confirmed")
    settled_rate = confirmed / ((t1 - t0) / 1000)
    cost1 = per_order(before, after, len(rows))
    print(f"max: offered {a.offer}/s over {a.conns} connections for {a.seconds}s: POSTs answered "
          f"{r1['ok']} (failed {r1['failed']}{failures(r1)}), {r1['achieved_rps']} POST/s, POST p50 "
          f"{int(r1['p50_us'])/1000:.1f} ms p99 {int(r1['p99_us'])/1000:.1f} ms; {confirmed} confirmed of "
          f"{len(rows)} in {(t1-t0)/1000:.2f}s = {settled_rate:.0f} orders settled/s")
    return cost1, settled_rate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--offer", type=int, default=8000)
    ap.add_argument("--conns", type=int, default=128)
    ap.add_argument("--workers", default="1")
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--rate", type=int, default=0, help="the latency phase's rate (default: half the maximum)")
    ap.add_argument("--latency-only", action="store_true",
                    help="skip the maximum: only the latency phase, at --rate (a quick A/B of one change)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="more environment for every service (e.g. TRACE_SAMPLE=0); repeatable")
    ap.add_argument("--pg", action="store_true",
                    help="the stores on PostgreSQL (fsync on, a database per service; SVCKIT_BUILD=build/pg)")
    a = ap.parse_args()
    if a.latency_only and not a.rate:
        ap.error("--latency-only needs --rate")
    pg = PgServer(tempfile.mkdtemp(prefix="orders-e2e-pg-"), durable=True).start() if a.pg else None
    stores = ("auth", "products", "orders", "payments")
    service_env = {name: {"DATABASE_URL": pg.database(name)} for name in stores} if pg else None
    nats = NatsServer()
    shop = Shop(nats, env={"LOG_LEVEL": a.log_level, **dict(kv.split("=", 1) for kv in a.env)}, workers=a.workers, service_env=service_env)
    try:
        idle = rss_all(shop)
        for p in range(1, 6):
            shop.set_stock(p, 1000000000)
        db = OrdersDb(shop)
        # Warm-up: one order through every service.
        st, doc = shop.gateway.json("POST", "/orders", {"items": [{"product_id": 1, "quantity": 1}]},
                                    headers={**admin(), "Idempotency-Key": "warm-up"})
        assert st == 201, doc
        settle(db, 0, 1)

        # 1. Maximum.
        cost1, settled_rate = {}, 0
        if not a.latency_only:
            cost1, settled_rate = maximum(shop, nats, db, a)
        # 2. Latency at half of it.
        half = a.rate or max(1, int(settled_rate / 2))
        # The maximum's writes that nothing fsynced (nats-server's stream
        # files) would otherwise be written back by the kernel 30 s later
        # (dirty_expire_centisecs), inside this phase: a burst of 150 MB/s
        # on the disk the commits fsync to, measured as a 100-200 ms stall
        # of every order then. Flushed first, the phase measures the
        # system at that rate rather than the maximum's leftovers.
        os.sync()
        first = db.max_id()
        out = tempfile.NamedTemporaryFile(prefix="orders-e2e-", suffix=".txt", delete=False).name
        before, troubled = snapshot(shop, nats), trouble(shop)
        r2 = run_rate(shop, half, a.seconds, a.conns, "half", out)
        rows = settle(db, first, int(r2["ok"]))
        after = snapshot(shop, nats)
        cost2 = per_order(before, after, len(rows))
        loaded = rss_all(shop)
        confirm = {r[0]: ms(r[3]) for r in rows if r[1] == "confirmed"}
        lat, due, posted = [], {}, {}
        with open(out) as f:
            for line in f:
                due_us, post_us, oid = (int(x) for x in line.split())
                due[oid], posted[oid] = due_us / 1000, (due_us + post_us) / 1000
                if oid in confirm:
                    lat.append(confirm[oid] - due_us / 1000)
        os.unlink(out)
        print(f"half: {half}/s open loop for {a.seconds}s: POSTs answered {r2['ok']} (failed {r2['failed']}), "
              f"POST p50 {int(r2['p50_us'])/1000:.1f} ms p99 {int(r2['p99_us'])/1000:.1f} ms; "
              f"POST->confirmed over {len(lat)} orders: p50 {pct(lat, .5):.1f} ms p90 {pct(lat, .9):.1f} ms "
              f"p99 {pct(lat, .99):.1f} ms max {max(lat):.1f} ms")
        print("\n| service | commits/order (max) | CPU ms/order (max) | switches/order (max) "
              "| commits/order (half) | CPU ms/order (half) | switches/order (half) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for k in cost2:
            c1 = f"| {cost1[k][0]:.3f} | {cost1[k][1]:.2f} | {cost1[k][2]:.1f} " if cost1 else "| - | - | - "
            print(f"| {k} {c1}"
                  f"| {cost2[k][0]:.3f} | {cost2[k][1]:.2f} | {cost2[k][2]:.1f} |")
        if not a.pg:
            hops(shop, rows, due, posted, first)
        moved = {k: v - troubled.get(k, 0) for k, v in trouble(shop).items() if v != troubled.get(k, 0)}
        print("\nretries and failures in the latency phase: " +
              (", ".join(f"{k} +{v:g}" for k, v in sorted(moved.items())) or "none"))
        print("\nVmRSS KiB, idle (started, nothing asked yet) -> after both phases: " +
              ", ".join(f"{k} {idle[k]} -> {loaded[k]}" for k in SERVICES))
        print(json.dumps({"settled_per_s": round(settled_rate), "half": r2,
                          "confirm_p50_ms": pct(lat, .5), "confirm_p99_ms": pct(lat, .99)}))
    finally:
        shop.close()
        nats.close()
        if pg:
            pg.stop()
            shutil.rmtree(pg.root, ignore_errors=True)


if __name__ == "__main__":
    main()
