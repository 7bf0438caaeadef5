#!/usr/bin/env python3
"""bench/search_flood.py: one user's varied searches against another user's reads.

The group `search-flood` of bench/run.sh. Starts auth and products (products
pinned to the server CPU when asked, WORKERS=1), logs in two users, then, for
each SEARCH_RATE_PER_MIN given (by default 1000000, i.e. no limit, and 60,
products' default), in alternation for --rounds rounds:

    flooder  --conns keep-alive connections (one process, asyncio), each
             sending GET /products/search?q=<a new string every time> as fast
             as the answers come, for --seconds seconds
    reader   one keep-alive connection sending GET /products/1 (a cached read)
             every 5 ms, its latency recorded after the first second

and reports the reader's p50/p90/p99 alone (before the flood) and under it,
with how many searches were answered and how many refused (429). Each
setting gets a fresh products (its own limiter), on the same catalog.

Usage: search_flood.py --auth BIN --products BIN --port P --data DIR
                       [--server-cpu N] [--client-cpu N] [--rates 1000000,60]
                       [--rounds 3] [--seconds 8] [--conns 32] [--out PREFIX]
Ports P (auth) and P+1 (products). Writes PREFIX.md and PREFIX.json.
"""
import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time

READY_TIMEOUT_S = 10
ADMIN_PASSWORD = "flood-admin-password"


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))] * 1000


def start(binary, port, data, env, cpu):
    os.makedirs(data, exist_ok=True)
    e = dict(os.environ, PORT=str(port), HOST="127.0.0.1", WORKERS="1", DATA_DIR=data, LOG_FORMAT="json",
             LOG_LEVEL="info", NATS_URL="none", SHUTDOWN_TIMEOUT="2", DRAIN_DELAY="0", **env)
    cmd = [binary]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu)] + cmd
    log = open(os.path.join(data, os.path.basename(binary) + ".log"), "ab")
    proc = subprocess.Popen(cmd, env=e, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"search_flood: {binary} exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return proc, log
        except OSError:
            pass
        time.sleep(0.02)
    proc.kill()
    sys.exit(f"search_flood: {binary} not ready after {READY_TIMEOUT_S} s")


def stop(proc, log):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def call(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, body, headers or {})
    r = c.getresponse()
    return r.status, r.read()


def token(auth_port, name):
    hdrs = {"Content-Type": "application/json"}
    body = json.dumps({"username": name, "password": "flood-password-1"})
    call(auth_port, "POST", "/auth/register", body, hdrs)
    status, data = call(auth_port, "POST", "/auth/login", body, hdrs)
    if status != 200:
        sys.exit(f"search_flood: login of {name} answered {status}")
    return json.loads(data)["access_token"]


def flood(port, tok, stop_at, conns, tag, out):
    async def one(k):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        counts, i = {}, 0
        while time.monotonic() < stop_at:
            w.write(f"GET /products/search?q={tag}-{k}-{i} HTTP/1.1\r\nHost: bench\r\n"
                    f"Authorization: Bearer {tok}\r\n\r\n".encode())
            i += 1
            head = await r.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(h.split(b":", 1)[1]) for h in head.split(b"\r\n")
                          if h.lower().startswith(b"content-length:"))
            await r.readexactly(length)
            counts[status] = counts.get(status, 0) + 1
        w.close()
        return counts

    async def run():
        total = {}
        for c in await asyncio.gather(*(one(k) for k in range(conns))):
            for status, n in c.items():
                total[status] = total.get(status, 0) + n
        out.put(total)

    asyncio.run(run())


def measure(args, rate, round_no, auth_port, flooder, reader):
    port = args.port + 1
    proc, log = start(args.products, port, os.path.join(args.data, "products"),
                      {"AUTH_JWKS_URL": f"http://127.0.0.1:{auth_port}/.well-known/jwks.json",
                       "SEARCH_RATE_PER_MIN": str(rate)}, args.server_cpu)
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        hdrs = {"Authorization": f"Bearer {reader}"}

        def read():
            t = time.perf_counter()
            c.request("GET", "/products/1", headers=hdrs)
            r = c.getresponse()
            r.read()
            if r.status != 200:
                sys.exit(f"search_flood: the reader got {r.status}")
            return time.perf_counter() - t

        alone = []
        for _ in range(300):
            alone.append(read())
            time.sleep(0.005)
        q = multiprocessing.Queue()
        stop_at = time.monotonic() + args.seconds
        p = multiprocessing.Process(target=flood, args=(port, flooder, stop_at, args.conns,
                                                        f"r{round_no}", q))
        p.start()
        time.sleep(1)
        loaded = []
        while time.monotonic() < stop_at - 0.5:
            loaded.append(read())
            time.sleep(0.005)
        counts = q.get()
        p.join()
    finally:
        stop(proc, log)
    return {"rate": rate, "round": round_no, "alone_p50_ms": pct(alone, 0.5), "alone_p90_ms": pct(alone, 0.9),
            "p50_ms": pct(loaded, 0.5), "p90_ms": pct(loaded, 0.9), "p99_ms": pct(loaded, 0.99),
            "reads": len(loaded), "searches_answered": counts.get(200, 0), "searches_refused": counts.get(429, 0),
            "other": {k: v for k, v in counts.items() if k not in (200, 429)}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--auth", required=True)
    ap.add_argument("--products", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--server-cpu", type=int)
    ap.add_argument("--client-cpu", type=int)
    ap.add_argument("--rates", default="1000000,60")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--out", default="build/bench/search-flood")
    args = ap.parse_args()
    if args.client_cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.client_cpu})
    rates = [int(r) for r in args.rates.split(",")]

    auth, auth_log = start(args.auth, args.port, os.path.join(args.data, "auth"),
                           {"ADMIN_PASSWORD": ADMIN_PASSWORD, "LOGIN_RATE_PER_MIN": "1000000",
                            "REGISTER_RATE_PER_MIN": "1000000"}, None)
    try:
        flooder, reader = token(args.port, "flooder"), token(args.port, "reader")
        runs = []
        for r in range(1, args.rounds + 1):
            for rate in (rates if r % 2 else rates[::-1]):
                runs.append(measure(args, rate, r, args.port, flooder, reader))
    finally:
        stop(auth, auth_log)

    def med(rate, key):
        v = sorted(x[key] for x in runs if x["rate"] == rate)
        return v[len(v) // 2]

    md = ["### One user's distinct searches against another user's reads (search-flood)", "",
          f"products WORKERS=1; the flooder: {args.conns} connections of distinct searches for {args.seconds:g} s; "
          "the reader: GET /products/1 (cached) every 5 ms on one connection. "
          f"Medians of {args.rounds} rounds, alternating order.", "",
          "| SEARCH_RATE_PER_MIN | reader alone p90 | reader p50 | reader p90 | reader p99 | searches answered "
          "| searches refused (429) |",
          "|---|---:|---:|---:|---:|---:|---:|"]
    for rate in rates:
        md.append(f"| {rate} | {med(rate, 'alone_p90_ms'):.2f} ms | {med(rate, 'p50_ms'):.2f} ms | "
                  f"{med(rate, 'p90_ms'):.2f} ms | {med(rate, 'p99_ms'):.2f} ms | {med(rate, 'searches_answered')} | "
                  f"{med(rate, 'searches_refused')} |")
    md.append("")
    text = "\n".join(md)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".md", "w") as f:
        f.write(text)
    with open(args.out + ".json", "w") as f:
        json.dump({"rates": rates, "runs": runs}, f, indent=2)
    print(text)


if __name__ == "__main__":
    main()
