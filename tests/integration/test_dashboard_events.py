"""Event flows on the dashboard's map: every publish carries Svc-Source (the
publishing service), each consumer counts what it handled per source in
events_consumed_total{source,subject,outcome}, its $SRV.LIVE answer lists
them as "calls" of kind "event", and the gateway's snapshot carries them.
Orders placed through the gateway show up as the saga's edges, one event
per order and hop; a forged Svc-Source is "unknown", and made-up names
cannot add more than SVC_MSG_MAX_EVENT_SOURCES series ("other" past them).

Outcomes are waited for (conftest.wait_until), never timed."""
import json
import re
import secrets

from conftest import wait_until
from live_support import system  # noqa: F401  (fixture)
from shop_support import admin, token
from test_msg_support import Nats, nats_server  # noqa: F401  (fixture)

MAX_SOURCES = 32  # SVC_MSG_MAX_EVENT_SOURCES
MAX_CALLS = 32  # SVC_MSG_LIVE_MAX_CALLS
PRODUCT = 7


def event_edges(gw):
    """{(source, consumer): [events, errors]} summed over the instances of
    the gateway's latest snapshot."""
    st, _, body = gw.request("GET", "/dashboard/snapshot", headers=admin())
    assert st == 200, body
    out = {}
    for inst in json.loads(body)["instances"]:
        for c in inst.get("calls", []):
            if c.get("kind") == "event":
                e = out.setdefault((c["from"], inst["name"]), [0, 0])
                e[0] += c.get("calls", 0)
                e[1] += c.get("errors", 0)
    return out


def stock_up(shop, pid=PRODUCT, stock=100000):
    """stock of pid at every products instance (each has its own database,
    and any of them may take an order's reservation)."""
    for svc in (shop.products, shop.__dict__.get("extra_products")):
        if svc:
            st, doc = svc.json("PATCH", f"/products/{pid}", {"stock": stock}, headers=admin())
            assert st == 200, doc


def place(shop, pid=PRODUCT):
    """One order of pid through the gateway: its id (not waited for)."""
    h = {"Authorization": "Bearer " + token("edge-user"), "Content-Type": "application/json",
         "Idempotency-Key": secrets.token_hex(8)}
    st, _, body = shop.gateway.request("POST", "/orders", headers=h,
                                       body=json.dumps({"items": [{"product_id": pid, "quantity": 1}]}).encode())
    assert st == 201, body
    return json.loads(body)["id"]


def place_and_settle(shop, n, pid=PRODUCT, status="confirmed"):
    """n orders of pid through the gateway, each waited for until settled
    (with that status)."""
    ids = [place(shop, pid) for _ in range(n)]
    for oid in ids:
        def settled():
            st, doc = shop.orders.json("GET", f"/orders/{oid}", headers=admin())
            return st == 200 and doc["status"] != "pending" and doc
        doc = wait_until(settled, what=f"order {oid} settled")
        assert doc["status"] == status, doc


SOLD_OUT = 8


def test_orders_show_the_sagas_event_edges(system):
    stock_up(system)
    stock_up(system, SOLD_OUT, 0)
    before = event_edges(system.gateway)
    n = 3
    place_and_settle(system, n)
    place_and_settle(system, 1, SOLD_OUT, "cancelled")
    # Events per edge: n paid orders and one rejected.
    saga = {("orders", "products"): n + 1,   # orders.created
            ("products", "payments"): n,     # stock.reserved
            ("payments", "orders"): n,       # payment.succeeded
            ("products", "orders"): 1}       # stock.rejected

    def grown():
        now = event_edges(system.gateway)
        done = all(now.get(k, [0, 0])[0] - before.get(k, [0, 0])[0] >= v for k, v in saga.items())
        return done and now
    now = wait_until(grown, what="the saga's event edges in the dashboard snapshot")
    for k, v in saga.items():
        assert now[k][0] - before.get(k, [0, 0])[0] == v, (k, now, before)
        assert now[k][1] == before.get(k, [0, 0])[1], (k, now, before)
    # Nothing consumed by the saga came from an unnamed publisher.
    assert not any(src in ("unknown", "other") for src, svc in now if svc != "gateway"), now


def sources(text, subject):
    return set(re.findall(rf'^events_consumed_total{{source="([^"]*)",subject="{re.escape(subject)}"', text, re.M))


def test_forged_sources_are_unknown_and_capped(system):
    subject = "stock.rejected"  # the orders-stock consumer's
    c = Nats(system.nats.port)
    try:
        # Not names first (they must not take a place among the named),
        # then more made-up names than the cap.
        for bad in ("two words", "a.b", "x" * 65, ""):
            c.publish(subject, b"{}", headers={"Svc-Source": bad})
        c.publish(subject, b"{}")  # none at all
        forged = [f"forged-{i}" for i in range(MAX_SOURCES + 8)]
        for name in forged:
            c.publish(subject, b"{}", headers={"Svc-Source": name})
        c.flush()
    finally:
        c.close()

    def metrics():
        st, _, body = system.orders.request("GET", "/metrics")
        assert st == 200
        text = body.decode()
        seen = re.findall(rf'^events_consumed_total{{source="[^"]*",subject="stock\.rejected",outcome="[^"]*"}} (\S+)$',
                          text, re.M)
        return sum(float(v) for v in seen) >= len(forged) + 5 and text
    text = wait_until(metrics, what="the forged events consumed by orders")
    got = sources(text, subject)
    assert "unknown" in got and "other" in got, got
    named = set(re.findall(r'^events_consumed_total{source="([^"]*)"', text, re.M)) - {"unknown", "other"}
    assert len(named) == MAX_SOURCES, named  # payments (when it ran first) and the first forged ones
    assert not any(s.startswith("x" * 10) or " " in s or "." in s for s in named), named
    # The live answer stays within its cap, and says it left some out.
    def orders_truncated():
        st, _, body = system.gateway.request("GET", "/dashboard/snapshot", headers=admin())
        insts = [i for i in json.loads(body)["instances"] if i["name"] == "orders"]
        return insts and all(i["truncated"] for i in insts) and insts
    for inst in wait_until(orders_truncated, what="orders' live answer at its cap"):
        assert len(inst["calls"]) == MAX_CALLS, inst
