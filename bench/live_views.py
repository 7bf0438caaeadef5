"""bench/live_views.py: the dashboard and $SRV.LIVE (issue 11's targets).

5 services, 20 instances (the shop, each service 4 times) on nats-server.

  1. Load: the time from GET /dashboard to the first snapshot listing all
     20 instances, as a browser would fetch it (page, app.js, app.css,
     /dashboard/snapshot; the first snapshot waits for the first round,
     which starts on that request), median of --loads fresh gateways' idle
     periods (each load after GW_DASH_IDLE_MS without a viewer).
  2. Cost: every instance's CPU seconds (/proc/<pid>/stat) over --seconds
     with nobody watching, then over --seconds with one dashboard stream
     open (one $SRV.LIVE round a second), no other traffic; the difference
     per instance is what answering the live snapshots costs it.

    SVCKIT_BUILD=build /usr/bin/python3 bench/live_views.py [--seconds 20] [--loads 5]
"""
import argparse
import http.client
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from conftest import wait_until  # noqa: E402
from shop_support import SERVICES, Shop, admin  # noqa: E402
from test_gateway_support import wait_instances  # noqa: E402
from test_msg_support import NatsServer  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def get(port, path, headers):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--loads", type=int, default=5)
    a = ap.parse_args()
    import json
    nats = NatsServer()
    shop = Shop(nats)
    extra = []
    try:
        for name in SERVICES:
            for _ in range(3):
                extra.append(shop._start(name))
        from conftest import Service
        from shop_support import gateway_config
        gws = [shop.gateway] + [Service("gateway", env={**shop.env, "GATEWAY_CONFIG": gateway_config(shop.tmp.name)})
                                for _ in range(3)]
        extra += gws[1:]
        for name in ("products", "orders"):
            wait_instances(shop.gateway, name, 4)
        procs = [s.proc for s in shop.svc.values()] + [s.proc for s in extra]
        assert len(procs) == 20, len(procs)
        h = admin()

        def full_snapshot(port):
            st, body = get(port, "/dashboard/snapshot", h)
            snap = json.loads(body)
            return st == 200 and len(snap["instances"]) == 20

        loads = []
        for k in range(a.loads):
            gw = gws[k % len(gws)]
            # Idle: no round for GW_DASH_IDLE_MS (10 s) on this gateway.
            time.sleep(11 if k >= len(gws) else 0)  # part of what is measured: a cold start
            t0 = time.monotonic()
            for p in ("/dashboard", "/dashboard/app.js", "/dashboard/app.css"):
                assert get(gw.port, p, h)[0] == 200
            wait_until(lambda: full_snapshot(gw.port), interval=0.01, what="20 instances")
            loads.append(time.monotonic() - t0)

        def measure():
            before = [cpu_seconds(p.pid) for p in procs]
            time.sleep(a.seconds)  # the measurement window itself
            return [cpu_seconds(p.pid) - b for p, b in zip(procs, before)]

        time.sleep(11)  # every gateway idle again: no rounds
        idle = measure()
        c = http.client.HTTPConnection("127.0.0.1", gws[0].port, timeout=30)
        c.request("GET", "/dashboard/events", headers=h)
        r = c.getresponse()
        assert r.status == 200
        stop = threading.Event()
        events = [0]

        def drain():
            while not stop.is_set():
                line = r.fp.readline()
                if not line:
                    return
                if line.startswith(b"event: snapshot"):
                    events[0] += 1
        th = threading.Thread(target=drain, daemon=True)
        th.start()
        watched = measure()
        stop.set()
        c.close()
        names = [p.args[-1].rsplit("/", 1)[-1] for p in procs]
        print(f"load (page + assets + first snapshot with 20 instances), {a.loads} loads: "
              f"median {statistics.median(loads) * 1000:.0f} ms, max {max(loads) * 1000:.0f} ms")
        print(f"snapshots delivered on the stream in {a.seconds:.0f} s: {events[0]}")
        print(f"{'instance':10} {'idle CPU %':>10} {'watched CPU %':>14} {'cost %':>8}")
        costs = []
        for n, i, w in zip(names, idle, watched):
            cost = (w - i) / a.seconds * 100
            costs.append((n, cost))
            print(f"{n:10} {i / a.seconds * 100:10.2f} {w / a.seconds * 100:14.2f} {cost:8.2f}")
        non_gw = [c for n, c in costs if n != "gateway"]
        print(f"cost per non-gateway instance: median {statistics.median(non_gw):.2f} %, max {max(non_gw):.2f} % "
              f"(CPU tick {1000 / TICK:.0f} ms: a difference under {100 / TICK / a.seconds:.2f} % is one tick)")
        print(f"cost on the gateway that serves the stream: {costs[[n for n, _ in costs].index('gateway')][1]:.2f} %")
    finally:
        for s in extra:
            s.stop()
        shop.close()
        nats.close()


if __name__ == "__main__":
    main()
