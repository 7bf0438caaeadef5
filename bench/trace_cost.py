#!/usr/bin/env python3
"""bench/trace_cost.py: what tracing costs (issue 11's target: at most 5% of
requests/s with TRACE_SAMPLE=1).

Two shops run side by side (tests/integration/shop_support.Shop, each on its
own nats-server, WORKERS=1): one with TRACE_SAMPLE=1, one with TRACE_SAMPLE=0,
and a third products with TRACE_SAMPLE=1 exporting to a collector that
accepts and never answers (OTEL_EXPORTER_OTLP_ENDPOINT). wrk rounds alternate
(on, off, stalled, off, on, ...) so every side sees the same machine:
GET /products?limit=30 with a token straight to products, and GET /products/1
through the gateway. Prints the median req/s per side, the ratio, and the
stalled side's RSS before and after its rounds.

    SVCKIT_BUILD=build python3 bench/trace_cost.py [ROUNDS=3] [SECONDS=5]
"""
import os
import re
import socket
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from conftest import Service  # noqa: E402
from shop_support import Shop, token  # noqa: E402
from test_msg_support import NatsServer, metric  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5


def wrk(port, path):
    out = subprocess.run(["wrk", "-t1", "-c32", f"-d{SECONDS}s", "-H", "Authorization: Bearer " + token("7"),
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1024)  # accepts (the kernel's backlog) and never answers
    nats = [NatsServer(), NatsServer()]
    shops = []
    try:
        env = {"LOG_LEVEL": "warn"}
        shops = [Shop(nats[0], env={**env, "TRACE_SAMPLE": "1"}), Shop(nats[1], env={**env, "TRACE_SAMPLE": "0"})]
        stalled = Service("products", env={**shops[0].env, "NATS_URL": "none", "TRACE_SAMPLE": "1",
                                           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{silent.getsockname()[1]}"})
        sides = {"on": shops[0], "off": shops[1]}
        res = {(s, t): [] for s in ("on", "off", "stalled") for t in ("products", "gateway")}
        rss0 = metric(stalled, "process_resident_memory_bytes")
        for r in range(ROUNDS):
            order = ["on", "off", "stalled"] if r % 2 == 0 else ["stalled", "off", "on"]
            for side in order:
                if side == "stalled":
                    res[(side, "products")].append(wrk(stalled.port, "/products?limit=30"))
                    continue
                shop = sides[side]
                res[(side, "products")].append(wrk(shop.products.port, "/products?limit=30"))
                res[(side, "gateway")].append(wrk(shop.gateway.port, "/products/1"))
        rss1 = metric(stalled, "process_resident_memory_bytes")
        dropped = (metric(stalled, "trace_spans_dropped_total", reason="export_behind") +
                   metric(stalled, "trace_spans_dropped_total", reason="export_failed"))
        med = {k: statistics.median(v) for k, v in res.items() if v}
        for target in ("products", "gateway"):
            on, off = med[(("on"), target)], med[("off", target)]
            print(f"{target:9s} tracing off {off:9.0f} req/s   on {on:9.0f} req/s   on/off {on / off:.3f}")
        st = med[("stalled", "products")]
        print(f"products  stalled collector {st:9.0f} req/s   stalled/off {st / med[('off', 'products')]:.3f}   "
              f"RSS {rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB   spans not exported {dropped:.0f}")
        stalled.stop()
    finally:
        for s in shops:
            s.close()
        for n in nats:
            n.close()
        silent.close()


if __name__ == "__main__":
    main()
