"""A running system for the live views (`svckit top`, `svckit status`, the
gateway's dashboard): the shop (shop_support.Shop: nats with JetStream, auth,
products, orders, payments, gateway) plus a second products instance, and
helpers to send traffic and to list the instances from NATS itself; the
module-scoped `system` fixture (its gateway opens the dashboard to
DASH_TOKEN); Forger, anyone on NATS answering the instances' questions."""
import json
import threading

import pytest

from conftest import WAIT
from shop_support import Shop, token
from test_gateway_support import wait_instances
from test_msg_support import Nats

SERVICES = ("auth", "gateway", "orders", "payments", "products")
DASH_TOKEN = "dashboard-secret-0123456789"


class LiveSystem(Shop):
    def __init__(self, nats, env=None):
        super().__init__(nats, env=env)
        try:
            self.extra_products = self._start("products")
            wait_instances(self.gateway, "products", 2)
        except BaseException:
            self.close()
            raise

    def close(self):
        extra = self.__dict__.get("extra_products")
        if extra:
            extra.stop()
        super().close()

    def traffic(self, n=5):
        """n catalog reads through the gateway (each answered 200)."""
        h = {"Authorization": "Bearer " + token("live-user")}
        for _ in range(n):
            st, _, body = self.gateway.request("GET", "/products?limit=1", headers=h)
            assert st == 200, body

    def instances(self):
        """{(service, id)} from the instances' own PING answers."""
        expected = len(SERVICES) + 1
        c = Nats(self.nats.port)
        try:
            docs = [json.loads(m.data) for m in c.request_all("$SRV.PING", until=lambda rs: len(rs) >= expected)]
        finally:
            c.close()
        return {(d["name"], d["id"]) for d in docs}


@pytest.fixture(scope="module")
def system(nats_server):
    """The LiveSystem, its gateway's DASHBOARD_TOKEN set to DASH_TOKEN.
    Import it with nats_server (test_msg_support)."""
    s = LiveSystem(nats_server, env={"DASHBOARD_TOKEN": DASH_TOKEN})
    try:
        yield s
    finally:
        s.close()


class Forger:
    """Anyone on NATS: answers every request on the subjects, from a thread,
    with answer(msg) -> a list of bodies (bytes, or anything json.dumps
    takes), until closed. A context manager."""

    def __init__(self, nats, subjects, answer):
        self.c = Nats(nats.port)
        self.answer = answer
        self.asked = 0
        for s in subjects:
            self.c.subscribe(s)
        self.c.flush()
        self.done = threading.Event()
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        while not self.done.is_set():
            try:
                m = self.c.next_msg(timeout=0.2)
            except Exception:
                continue
            if not m.reply:
                continue
            for body in self.answer(m):
                self.c.publish(m.reply, body if isinstance(body, bytes) else json.dumps(body).encode())
            self.asked += 1

    def close(self):
        self.done.set()
        self.th.join(WAIT)
        self.c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
