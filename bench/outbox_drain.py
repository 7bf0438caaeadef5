"""bench/outbox_drain.py: how fast the outbox relay and an svc_app_on_stream_db
consumer drain a backlog (issue 10). Starts tests/integration/outboxsvc with
NATS down, POSTs N notes (each a row and an outbox event in one group-committed
write), then starts nats-server -js and times, from the moment the service is
connected again (/readyz 200), until every event was acked
(outbox_published_total: the relay) and until
every effect ran once (the consumer: inbox claim + effect). The consumer's
commits come from its database's db_write_batches_total, so "events/commit" is
how many messages shared an fsync.

    SVCKIT_BUILD=build /usr/bin/python3 bench/outbox_drain.py [N]
"""
import concurrent.futures
import os
import sys
import time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
os.environ.setdefault("SVCKIT_BUILD", "build")
from conftest import Service, wait_until, free_port
from test_msg_support import NatsServer, metric
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
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
commits0 = metric(svc, "db_write_batches_total")
ns = NatsServer(port=port)
wait_until(lambda: svc.request("GET", "/readyz")[0] == 200, what="connected", interval=0.005)
t2 = time.monotonic()


def st():
    _, d = svc.json("GET", "/state")
    return d


# Relayed: every event acked (deletes of acked events come later, in bulk).
wait_until(lambda: metric(svc, "outbox_published_total") >= N, what="relayed", interval=0.005)
t3 = time.monotonic()
wait_until(lambda: st()["effects"] == N, what="consumed", interval=0.005)
t4 = time.monotonic()
wait_until(lambda: st()["outbox"] == 0, what="acked events deleted")
commits = metric(svc, "db_write_batches_total") - commits0
print(f"relay: {N} events in {t3-t2:.2f}s = {N/(t3-t2):.0f}/s from connected")
print(f"consumer: all {N} effects {t4-t2:.2f}s after connected = {N/(t4-t2):.0f}/s; "
      f"{commits:.0f} commits during the drain (relay deletes included), {N/max(commits, 1):.1f} events/commit; "
      f"state {st()}")
svc.stop()
ns.close()
