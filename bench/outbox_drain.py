"""bench/outbox_drain.py: how fast the outbox relay and an svc_app_on_stream_db
consumer drain a backlog (issue 10). Starts tests/integration/outboxsvc with
NATS down, POSTs N notes (each a row and an outbox event in one group-committed
write), then starts nats-server -js and times until the outbox is empty
(relay: one publish and ack at a time) and until every effect ran once
(consumer: inbox claim + effect in one svc_db_write each).

    SVCKIT_BUILD=build /usr/bin/python3 bench/outbox_drain.py [N]
"""
import concurrent.futures
import os
import sys
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
os.environ.setdefault("SVCKIT_BUILD", "build")
from conftest import Service, wait_until, free_port
from test_msg_support import NatsServer
N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
port = free_port()
env = {"NATS_URL": f"nats://127.0.0.1:{port}", "WORKERS": "2"}
svc = Service("outboxsvc", env=env, check_exit=False, wait_ready=False)
wait_until(lambda: svc.json("GET", "/state")[0] == 200, what="http up")
def post(i):
    st, _ = svc.json("POST", "/notes", body=f"n{i}".encode())
    return st
t0 = time.monotonic()
with concurrent.futures.ThreadPoolExecutor(16) as ex:
    sts = list(ex.map(post, range(N)))
t1 = time.monotonic()
print(f"{N} POSTs (16 clients, NATS down): {N/(t1-t0):.0f}/s, statuses {set(sts)}")
ns = NatsServer(port=port)
t2 = time.monotonic()
def st():
    _, d = svc.json("GET", "/state"); return d
wait_until(lambda: st()["outbox"] == 0, what="relayed", interval=0.01)
t3 = time.monotonic()
wait_until(lambda: st()["effects"] == N, what="consumed", interval=0.01)
t4 = time.monotonic()
print(f"relay: {N} events in {t3-t2:.2f}s = {N/(t3-t2):.0f}/s after nats-server started (includes connect + stream declare)")
print(f"consumer: all {N} effects {t4-t2:.2f}s after start = {N/(t4-t2):.0f}/s; state {st()}")
svc.stop(); ns.close()
