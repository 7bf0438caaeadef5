#!/usr/bin/python3
"""bench/instr.py: user-space instructions per request, counted by callgrind.

req/s and CPU time on a shared two-CPU machine swing by 20-35% between rounds
of the same binary, so a "within 3%" target cannot be read off them there.
Instructions are counted, not timed: the same binary serving the same requests
executes nearly the same number of them whatever else the machine is doing.

For each server (the demo, cached and rendered; products, GET /products?limit=30
and GET /products/1 with a token, and POST /products of one product as admin) and each side (BASE_BIN_DIR and THIS_BIN_DIR), this starts the
server under `valgrind --tool=callgrind` (WORKERS=1, NATS_URL=none, access log
on) twice: once serving WARM requests, once WARM + N, one at a time on one
keep-alive connection (so every request is one wake-up, one read and one
write: the same batching on both sides), then stops it with SIGTERM; callgrind
counts the whole life of the process, so the difference of the two totals over
N is the cost of a request, start and drain cancelling out. Kernel work (the
syscalls themselves) is not counted; everything the process does in user space
is: parsing, routing, auth, the cache, JSON, logging, libuv, libc.

usage: bench/instr.py [-n N] [--base-env K=V]... [--this-env K=V]... BASE_BIN_DIR THIS_BIN_DIR
Both directories hold `demo` and `products` (bench/compare.sh builds a base in
a temporary directory; `make build/bin/demo build/bin/products` this tree's).
N: measured requests (default 4000). --base-env/--this-env add variables to
one side's servers, so one binary can be compared with itself, e.g. tracing
off against on: `--base-env TRACE_SAMPLE=0 --this-env TRACE_SAMPLE=1 build/bin build/bin`.
Prints one table row per server: base and this instructions per request, ratio.
"""
import argparse
import contextlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import jwt  # python3-jwt (scripts/deps.sh)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests", "integration"))
from ports import free_port  # noqa: E402

SECRET = "instr-bench-shared-secret-0123456789abcdef"
WARM = 500
READY_S = 120


def token():
    now = int(time.time())
    claims = {"iss": "svckit-auth", "sub": "42", "aud": "svckit", "iat": now,
              "exp": now + 3600, "jti": "instr-1", "name": "Bench", "role": "admin"}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def wait_ready(port, proc, path, headers):
    """Until the measured request answers 200 (the gateway: once it has found
    products). The polls before that are counted too, a few requests' worth
    that differ from run to run: noise of well under 0.1% over N requests."""
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", path, headers=headers)
            if c.getresponse().status == 200:
                c.close()
                return
            c.close()
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server not ready")


def send(conn, path, headers, n, body=None):
    """n GETs of path, or n POSTs of body (JSON) when body is given."""
    method, want = ("POST", 201) if body else ("GET", 200)
    for _ in range(n):
        conn.request(method, path, body=body, headers=dict(headers, **({"Content-Type": "application/json"}
                                                                       if body else {})))
        r = conn.getresponse()
        r.read()
        if r.status != want:
            raise RuntimeError(f"{method} {path}: {r.status}")


def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def run_once(binary, env_extra, path, headers, n, work, body=None):
    port = free_port()
    out = os.path.join(work, f"cg.{os.path.basename(binary)}.{port}")
    data = tempfile.mkdtemp(dir=work)
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1", WORKERS="1", NATS_URL="none",
               LOG_LEVEL="info", LOG_FORMAT="json", DATA_DIR=data, SHUTDOWN_TIMEOUT="2",
               DRAIN_DELAY="0")
    env.update(env_extra)
    log = open(os.path.join(work, f"log.{port}"), "w")
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary],
                            env=env, stdout=log, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc, "/healthz" if body else path, headers)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        send(conn, path, headers, n, body)
        conn.close()
        proc.terminate()
        if proc.wait(timeout=120) != 0:
            raise RuntimeError(f"{binary} exited with {proc.returncode} on SIGTERM")
        return callgrind_total(out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def measure(binary, env_extra, path, headers, n, work, body=None):
    short = run_once(binary, env_extra, path, headers, WARM, work, body)
    full = run_once(binary, env_extra, path, headers, WARM + n, work, body)
    return (full - short) / n


def gateway_server(stack, this_dir, work, bearer):
    """A nats-server and a products of this_dir for the gateway to forward to
    (the test suite's helpers start them; they stop with the stack)."""
    os.environ["SVCKIT_BUILD"] = os.path.dirname(os.path.abspath(this_dir))
    from conftest import Service
    from shop_support import gateway_config
    from test_msg_support import NatsServer
    nats = NatsServer()
    stack.callback(nats.stop)
    products = Service("products", env={"NATS_URL": nats.url, "JWT_SECRET": SECRET, "WORKERS": "1",
                                        "LOG_LEVEL": "warn"})
    stack.callback(products.stop)
    env = {"NATS_URL": nats.url, "JWT_SECRET": SECRET, "GATEWAY_CONFIG": gateway_config(work)}
    return ("gateway, /products/1 over NATS", "gateway", env, "/products/1", bearer)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=4000, help="measured requests")
    ap.add_argument("--base-env", action="append", default=[], metavar="K=V")
    ap.add_argument("--this-env", action="append", default=[], metavar="K=V")
    ap.add_argument("base")
    ap.add_argument("this")
    a = ap.parse_args()
    n = a.n
    base_env = dict(kv.split("=", 1) for kv in a.base_env)
    this_env = dict(kv.split("=", 1) for kv in a.this_env)
    for tool in ("valgrind",):
        if not shutil.which(tool):
            print(f"{tool} is missing (Debian package valgrind)", file=sys.stderr)
            return 2
    bearer = {"Authorization": f"Bearer {token()}"}
    servers = [
        ("demo, cached", "demo", {"DEMO_CACHE": "1"}, "/products", {}),
        ("demo, rendered", "demo", {"DEMO_CACHE": "0"}, "/products", {}),
        ("products, ?limit=30 with a token", "products", {"JWT_SECRET": SECRET},
         "/products?limit=30", bearer),
        ("products, GET /products/1 with a token", "products", {"JWT_SECRET": SECRET}, "/products/1", bearer),
        ("products, POST /products (admin)", "products", {"JWT_SECRET": SECRET}, "/products", bearer,
         json.dumps({"title": "Bench lamp", "description": "A lamp\nfor benches", "category": "home-decoration",
                     "brand": "Svckit", "price": 19.99, "stock": 7, "rating": 4.5}).encode()),
    ]
    if base_env or this_env:
        print(f"base: {a.base} {' '.join(a.base_env)}; this: {a.this} {' '.join(a.this_env)}")
    print(f"instructions per request (callgrind, user space): (total after {WARM} + {n} "
          f"requests - total after {WARM}) / {n}, one keep-alive connection")
    print("| server | base instr/req | this instr/req | this/base |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="svckit-instr.") as work, contextlib.ExitStack() as stack:
        if all(os.access(os.path.join(d, "gateway"), os.X_OK) for d in (a.base, a.this)):
            servers.append(gateway_server(stack, a.this, work, bearer))
        for label, name, env, path, headers, *body in servers:
            body = body[0] if body else None
            b = measure(os.path.join(a.base, name), {**env, **base_env}, path, headers, n, work, body)
            t = measure(os.path.join(a.this, name), {**env, **this_env}, path, headers, n, work, body)
            print(f"| {label} | {b:,.0f} | {t:,.0f} | {t / b:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
