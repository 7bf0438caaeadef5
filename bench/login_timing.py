#!/usr/bin/env python3
"""bench/login_timing.py: does a login's time tell whether the user exists?

The group `auth-timing` of bench/run.sh. Starts the auth service (pinned to
the server CPU when asked), registers one user, then logs in over one
keep-alive connection, one request at a time, three kinds of login in a
shuffled order so that the machine's noise falls on all three alike:

    unknown  a user that does not exist (a new name every time)
    wrong    the registered user with a wrong password
    right    the registered user with its password

and reports, per kind, the client's round trip and the server's own duration
(the access log's duration_ms, found by X-Request-Id): medians and p90, and
the ratio of the unknown user's median to the wrong password's. The property
itself ("an unknown user costs exactly one Argon2id verification, like a
wrong password") is tested by count in tests/integration/test_auth.py; this
is the stopwatch view of it. The script also checks that count here: every
login must have added exactly one op="verify" to auth_password_hashes_total.

Usage: login_timing.py --auth BIN --port P --data DIR [--server-cpu N]
                       [--samples N] [--out PREFIX]
Writes PREFIX.md and PREFIX.json, and prints the table.
"""
import argparse
import http.client
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time

KINDS = ("unknown", "wrong", "right")
USER, PASSWORD = "timing-user", "timing-password-1"
READY_TIMEOUT_S = 10


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))]


def start_auth(args):
    os.makedirs(args.data, exist_ok=True)
    env = dict(os.environ, PORT=str(args.port), HOST="127.0.0.1", WORKERS="1", DATA_DIR=args.data,
               LOG_FORMAT="json", LOG_LEVEL="info", NATS_URL="none", ADMIN_PASSWORD="timing-admin-password",
               LOGIN_RATE_PER_MIN="1000000", REGISTER_RATE_PER_MIN="1000000", SHUTDOWN_TIMEOUT="2",
               DRAIN_DELAY="0")
    cmd = [args.auth]
    if args.server_cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(args.server_cpu)] + cmd
    log = open(os.path.join(args.data, "auth.log"), "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"login_timing: {args.auth} exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", args.port, timeout=1)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return proc, log
        except OSError:
            pass
        time.sleep(0.02)
    proc.kill()
    sys.exit(f"login_timing: {args.auth} not ready after {READY_TIMEOUT_S} s")


def verifications(conn):
    conn.request("GET", "/metrics")
    for line in conn.getresponse().read().decode().splitlines():
        if line.startswith('auth_password_hashes_total{op="verify"} '):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--auth", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--server-cpu", type=int)
    ap.add_argument("--samples", type=int, default=200, help="logins of each kind")
    ap.add_argument("--out", default="build/bench/login-timing")
    args = ap.parse_args()

    proc, log = start_auth(args)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
        hdrs = {"Content-Type": "application/json"}

        def login(kind, i, rid):
            user = f"nobody-{i}-{random.getrandbits(32):08x}" if kind == "unknown" else USER
            pw = PASSWORD if kind != "wrong" else f"wrong-password-{i}"
            body = json.dumps({"username": user, "password": pw})
            t = time.perf_counter()
            conn.request("POST", "/auth/login", body, dict(hdrs, **{"X-Request-Id": rid}))
            r = conn.getresponse()
            r.read()
            elapsed = time.perf_counter() - t
            want = 200 if kind == "right" else 401
            if r.status != want:
                sys.exit(f"login_timing: {kind} login answered {r.status}, expected {want}")
            return elapsed

        conn.request("POST", "/auth/register", json.dumps({"username": USER, "password": PASSWORD}), hdrs)
        r = conn.getresponse()
        r.read()
        if r.status != 201:
            sys.exit(f"login_timing: registering {USER} answered {r.status}")
        for i in range(10):  # warm-up: thread pool, page cache, the dummy hash
            for kind in KINDS:
                login(kind, -i - 1, f"warm-{kind}-{i}")
        before = verifications(conn)
        order = [k for k in KINDS for _ in range(args.samples)]
        random.shuffle(order)
        client = {k: [] for k in KINDS}
        ids = {}
        for i, kind in enumerate(order):
            rid = f"t-{kind}-{i}"
            ids[rid] = kind
            client[kind].append(login(kind, i, rid))
        counted = verifications(conn) - before
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    server = {k: [] for k in KINDS}
    with open(os.path.join(args.data, "auth.log"), "rb") as f:
        for line in f:
            try:
                d = json.loads(line)
            except ValueError:
                continue
            kind = ids.get(d.get("request_id"))
            if kind and "duration_ms" in d:
                server[kind].append(d["duration_ms"] / 1000)

    res = {"samples": args.samples, "argon2id_verifications": counted,
           "expected_verifications": len(order), "kinds": {}}
    for k in KINDS:
        res["kinds"][k] = {"client_p50_ms": statistics.median(client[k]) * 1000,
                           "client_p90_ms": pct(client[k], 0.9) * 1000,
                           "server_p50_ms": statistics.median(server[k]) * 1000 if server[k] else None,
                           "server_p90_ms": pct(server[k], 0.9) * 1000 if server[k] else None}
    r = res["kinds"]
    res["unknown_over_wrong_client_p50"] = r["unknown"]["client_p50_ms"] / r["wrong"]["client_p50_ms"]
    if r["unknown"]["server_p50_ms"] and r["wrong"]["server_p50_ms"]:
        res["unknown_over_wrong_server_p50"] = r["unknown"]["server_p50_ms"] / r["wrong"]["server_p50_ms"]

    def ms(v):
        return "-" if v is None else f"{v:.2f} ms"

    md = ["### Login time: unknown user vs wrong password vs right password (auth-timing)", "",
          f"{args.samples} logins of each kind, one at a time on one keep-alive connection, in shuffled order; "
          "client = round trip seen by the client, server = auth's access-log duration.", "",
          "| login | client p50 | client p90 | server p50 | server p90 |", "|---|---|---|---|---|"]
    for k in KINDS:
        md.append(f"| {k} | {ms(r[k]['client_p50_ms'])} | {ms(r[k]['client_p90_ms'])} | "
                  f"{ms(r[k]['server_p50_ms'])} | {ms(r[k]['server_p90_ms'])} |")
    md += ["", f"unknown / wrong, median: client {res['unknown_over_wrong_client_p50']:.3f}"
           + (f", server {res['unknown_over_wrong_server_p50']:.3f}" if "unknown_over_wrong_server_p50" in res
              else "")
           + f". Argon2id verifications counted: {counted} for {len(order)} logins.", ""]
    text = "\n".join(md)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".md", "w") as f:
        f.write(text)
    with open(args.out + ".json", "w") as f:
        json.dump(res, f, indent=2)
    print(text)
    if counted != len(order):
        sys.exit(f"login_timing: {counted} Argon2id verifications for {len(order)} logins")


if __name__ == "__main__":
    main()
