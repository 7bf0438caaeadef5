#!/usr/bin/env python3
"""bench/tls_rss.py: what TLS to NATS costs products (issue 12's target: at
most 2 MiB more idle RSS for a service that uses it, nothing for one that
does not).

Three products side by side, in one run, WORKERS=1 unless given (one NATS
connection per worker):
  plain    build/bin/products (no TLS library linked) on a plain nats-server
  linked   build/tls/bin/products (make TLS=1) on the same plain nats-server
  tls      build/tls/bin/products on a nats-server that requires TLS
Each is measured once ready (idle), and again after REQUESTS requests over
NATS (GET /products?limit=30 with a token, from a client speaking TLS to
the TLS server), so that the buffers of a working connection are counted.
Prints VmRSS and the file sizes of both binaries (as built, and stripped).

    make CI=true -j2 && make TLS=1 CI=true -j2 bins
    python3 bench/tls_rss.py [WORKERS=1] [REQUESTS=200]
"""
import os
import ssl
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from conftest import Service  # noqa: E402
from shop_support import SECRET, token  # noqa: E402
from test_msg_support import Nats, NatsServer  # noqa: E402
from test_nats_tls import Pki  # noqa: E402

WORKERS = sys.argv[1] if len(sys.argv) > 1 else "1"
REQUESTS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
PLAIN = os.path.join(ROOT, "build", "bin", "products")
TLS = os.path.join(ROOT, "build", "tls", "bin", "products")


def rss_kib(svc):
    with open(f"/proc/{svc.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def stripped_size(path):
    with tempfile.NamedTemporaryFile() as t:
        subprocess.run(["strip", "--strip-all", "-o", t.name, path], check=True)
        return os.path.getsize(t.name)


def load(server, tls_ctx):
    nc = Nats(server.port, tls=tls_ctx)
    try:
        for _ in range(REQUESTS):
            m = nc.svc("products", "GET", "/products", query="limit=30",
                       headers={"Authorization": "Bearer " + token("7")})
            assert m.svc_status == 200, m.data
    finally:
        nc.close()


def main():
    for p in (PLAIN, TLS):
        if not os.path.exists(p):
            sys.exit(f"{p} missing: make CI=true -j2 && make TLS=1 CI=true -j2 bins")
    with tempfile.TemporaryDirectory(prefix="svckit-bench-tls-") as tmp:
        pki = Pki(tmp, "ca")
        cert, key = pki.issue("server", ips=["127.0.0.1"])
        plain = NatsServer()
        tlsd = NatsServer(conf=f'tls {{ cert_file: "{cert}", key_file: "{key}" }}\n')
        ctx = ssl.create_default_context(cafile=pki.ca_file)
        env = {"JWT_SECRET": SECRET, "WORKERS": WORKERS, "LOG_LEVEL": "warn"}
        sides = [
            ("plain", PLAIN, plain, dict(env, NATS_URL=plain.url), None),
            ("linked", TLS, plain, dict(env, NATS_URL=plain.url), None),
            ("tls", TLS, tlsd, dict(env, NATS_URL=f"tls://127.0.0.1:{tlsd.port}", NATS_TLS_CA=pki.ca_file), ctx),
        ]
        svcs = []
        try:
            for name, path, server, e, _ in sides:
                svcs.append(Service("products", env=e, path=path))
            idle = [rss_kib(s) for s in svcs]
            for (name, path, server, e, c), s in zip(sides, svcs):
                load(server, c)
            busy = [rss_kib(s) for s in svcs]
        finally:
            for s in svcs:
                s.stop()
            plain.close()
            tlsd.close()
    print(f"products, WORKERS={WORKERS}, VmRSS in KiB (idle once ready; after {REQUESTS} requests over NATS)")
    for (name, path, *_), i, b in zip(sides, idle, busy):
        print(f"  {name:7s} {i:7d} {b:7d}  {os.path.relpath(path, ROOT)}")
    print(f"  linked - plain: {idle[1] - idle[0]:+d} idle, {busy[1] - busy[0]:+d} busy")
    print(f"  tls - plain:    {idle[2] - idle[0]:+d} idle, {busy[2] - busy[0]:+d} busy")
    print(f"  tls - linked:   {idle[2] - idle[1]:+d} idle, {busy[2] - busy[1]:+d} busy")
    for p in (PLAIN, TLS):
        print(f"  {os.path.relpath(p, ROOT)}: {os.path.getsize(p)} bytes, {stripped_size(p)} stripped")


if __name__ == "__main__":
    main()
