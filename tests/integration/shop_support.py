"""The whole shop on one machine, for the chaos test (test_orders_chaos.py) and
the end-to-end benchmark (bench/orders_e2e.py): nats-server with JetStream,
auth, products, orders, payments and the gateway, every service verifying
HS256 tokens signed here (JWT_SECRET), the gateway with the built-in route
table (deploy/gateway.json) and its per-client rate limit lifted (every
client here is 127.0.0.1). A service can be SIGKILLed and started again on
the same port and data directory."""
import json
import os
import signal
import sqlite3
import tempfile

from conftest import ROOT, Service
from services_fixtures import claims, sign_hs256
from test_gateway_support import wait_instances

SECRET = "shop-chaos-secret-0123456789abcdef-01234"
SERVICES = ("auth", "products", "orders", "payments")


def token(sub, role="user"):
    """A token of sub (valid for 10 minutes from now)."""
    return sign_hs256(SECRET.encode(), claims(sub=sub, role=role, name=sub))


def admin():
    return {"Authorization": "Bearer " + token("root", "admin")}


def gateway_config(directory):
    """deploy/gateway.json with limits no test client meets."""
    with open(os.path.join(ROOT, "deploy", "gateway.json")) as f:
        conf = json.load(f)
    conf["limits"] = {"rate_per_client_per_s": 1000000, "burst": 1000000, "max_concurrency": 8192}
    path = os.path.join(directory, "gateway.json")
    with open(path, "w") as f:
        json.dump(conf, f)
    return path


def pay(shop, items, **kw):
    """Places an order of items (shop.post(items, **kw)) and waits until it is
    paid: 201, then confirmed, with exactly one succeeded charge of its total.
    Returns the order as POST answered it. shop: any with post, settled and
    payments_of (test_orders.Shop)."""
    st, _, doc = shop.post(items, **kw)
    assert st == 201, doc
    done = shop.settled(doc["id"])
    assert done["status"] == "confirmed", done
    pays = shop.payments_of(doc["id"])
    assert [(p["amount_cents"], p["status"]) for p in pays] == [(doc["total_cents"], "succeeded")], pays
    return doc


class Shop:
    """The five services on nats (a test_msg_support.NatsServer)."""

    def __init__(self, nats, env=None, payments_env=None, workers="1", service_env=None):
        self.nats = nats
        self.tmp = tempfile.TemporaryDirectory(prefix="svckit-shop-")
        self.env = {"NATS_URL": nats.url, "JWT_SECRET": SECRET, "WORKERS": workers, "LOG_LEVEL": "warn"}
        self.env.update(env or {})
        # service_env: {name: more environment of that service (gateway too)}.
        self.extra = {name: dict(e) for name, e in (service_env or {}).items()}
        self.extra.setdefault("payments", {}).update(payments_env or {})
        self.svc = {}
        self.dead = []  # killed instances: they own their data directories
        try:
            for name in SERVICES:
                self.svc[name] = self._start(name)
            self.svc["gateway"] = Service("gateway", env={**self.env, **self.extra.get("gateway", {}),
                                                          "GATEWAY_CONFIG": gateway_config(self.tmp.name)})
            for name in ("products", "orders"):
                wait_instances(self.svc["gateway"], name, 1)
        except BaseException:
            self.close()
            raise

    def _start(self, name, port=None, data_dir=None):
        return Service(name, env={**self.env, **self.extra.get(name, {})}, port=port, data_dir=data_dir)

    def __getattr__(self, name):
        svc = self.__dict__.get("svc", {})
        if name in svc:
            return svc[name]
        raise AttributeError(name)

    def kill_and_restart(self, name):
        """SIGKILL, then the same service on the same port and data."""
        old = self.svc[name]
        old.proc.send_signal(signal.SIGKILL)
        old.proc.wait()
        old.log.close()
        os.replace(old.log_path, old.log_path + f".{old.proc.pid}")  # keep the dead one's log
        self.dead.append(old)
        self.svc[name] = self._start(name, port=old.port, data_dir=old.data_dir)

    def close(self):
        for name in ("gateway", "orders", "payments", "products", "auth"):
            if name in self.svc:
                self.svc[name].stop()

    def databases(self):
        """(service, path) of every SQLite file of the services."""
        out = []
        for name in SERVICES:
            d = self.svc[name].data_dir
            out += [(name, os.path.join(d, f)) for f in sorted(os.listdir(d)) if f.endswith(".db")]
        return out

    @staticmethod
    def integrity(path):
        c = sqlite3.connect(path)
        try:
            return c.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            c.close()

    # ---- reads, straight from the services -------------------------------------------

    def set_stock(self, pid, stock):
        st, doc = self.products.json("PATCH", f"/products/{pid}", {"stock": stock},
                                     headers=admin())
        assert st == 200, doc

    def stock(self, pid):
        st, doc = self.products.json("GET", f"/products/{pid}", headers=admin())
        assert st == 200, doc
        return doc["stock"]

    def all_orders(self):
        """Every order (admin), through the pages of GET /orders."""
        out, skip = [], 0
        while True:
            st, doc = self.orders.json("GET", f"/orders?limit=100&skip={skip}",
                                       headers=admin())
            assert st == 200, doc
            out += doc["orders"]
            skip += len(doc["orders"])
            if not doc["orders"] or skip >= doc["total"]:
                return out

    def payments_of(self, oid):
        st, doc = self.payments.json("GET", f"/payments?order_id={oid}", headers=admin())
        assert st == 200, doc
        return doc["payments"]
