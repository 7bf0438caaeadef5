"""The checkout saga loses nothing and does nothing twice while its processes
die (issue 10, item 6).

1,000 orders from 50 concurrent clients through the gateway, PAYMENT_FAIL_RATE
0.1; while they run, payments is SIGKILLed twice and orders once (and
started again on the same data), and nats-server is restarted once. The
moments are counts of answered orders, not timers, and the load waits for
each to be done before it goes past it by GATE orders, so every one happens
while orders are being placed. A client retries a POST that got no answer
(connection refused or reset, 5xx from the gateway, 409 in progress) with the
same Idempotency-Key and body until it gets 201 or 200.

After the load, once every order has settled (bounded: a killed consumer's
messages come back after the saga's ack wait, 5 s):
  - every key maps to exactly one order, and there are no other orders;
  - every order is confirmed or cancelled;
  - every confirmed order has exactly one succeeded charge, of its total, and
    every cancelled one no net charge (succeeded minus refunded);
  - each product's stock is its starting stock minus the quantities of its
    confirmed orders;
  - PRAGMA integrity_check is ok in every database.
"""
import collections
import concurrent.futures
import http.client
import json
import random
import secrets
import threading
import time

from conftest import WAIT, wait_until
from shop_support import Shop, token
from test_msg_support import nats_server  # noqa: F401

ORDERS = 1000
CLIENTS = 50
USERS = 10
PRODUCTS = range(1, 11)
START_STOCK = 200
GATE = 100
SETTLE_BOUND = 120.0  # s: generous; a killed consumer's messages come back after the ack wait (5 s)
# (answered orders, action): each runs once that many orders were answered.
CHAOS = [(150, "payments"), (350, "orders"), (550, "nats"), (750, "payments")]


class Load:
    def __init__(self, shop):
        self.shop = shop
        self.lock = threading.Condition()
        self.started = 0
        self.answered = 0
        self.actions_done = 0
        self.answers = collections.defaultdict(set)  # key -> order ids answered
        self.retries = collections.Counter()         # why a POST was sent again
        self.bad = []                                  # answers no retry may give
        self.orders = {}                               # key -> (user, items)
        self.deadline = time.monotonic() + 4 * WAIT

    def next_order(self):
        """Blocks past the gate of an action not done yet; None when all are out."""
        with self.lock:
            while True:
                due = sum(1 for at, _ in CHAOS if self.started >= at + GATE)
                if self.actions_done >= due or time.monotonic() > self.deadline:
                    break
                self.lock.wait(0.1)
            if self.started >= ORDERS:
                return None
            self.started += 1
            return self.started

    def post(self, key, user, body):
        """POST /orders through the gateway until an answer: (status, doc)."""
        headers = {"Authorization": "Bearer " + token(user), "Content-Type": "application/json",
                   "Idempotency-Key": key}
        while True:
            if time.monotonic() > self.deadline:
                raise AssertionError(f"no answer for key {key} before the deadline")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.shop.gateway.port, timeout=WAIT)
                c.request("POST", "/orders", body=body, headers=headers)
                r = c.getresponse()
                status, data = r.status, r.read()
                c.close()
            except OSError as e:
                self.count_retry(type(e).__name__)
                time.sleep(0.02)  # pacing while a process restarts, not synchronisation
                continue
            if status in (200, 201):
                return status, json.loads(data)
            if status >= 500 or status in (409, 429):
                self.count_retry(str(status))
                time.sleep(0.02)  # pacing, as above
                continue
            return status, data

    def count_retry(self, why):
        with self.lock:
            self.retries[why] += 1

    def client(self, seed):
        rnd = random.Random(seed)
        while self.next_order() is not None:
            user = f"user{rnd.randrange(USERS)}"
            pids = rnd.sample(list(PRODUCTS), rnd.randint(1, 3))
            items = [{"product_id": p, "quantity": rnd.randint(1, 3)} for p in pids]
            body = json.dumps({"items": items}).encode()
            key = secrets.token_hex(12)
            status, doc = self.post(key, user, body)
            with self.lock:
                self.orders[key] = (user, items)
                if status in (200, 201):
                    self.answers[key].add(doc["id"])
                else:
                    self.bad.append((key, status, doc))
                self.answered += 1
                self.lock.notify_all()

    def chaos(self, nats):
        for at, what in CHAOS:
            with self.lock:
                while self.answered < at and time.monotonic() < self.deadline:
                    self.lock.wait(0.1)
            if what == "nats":
                nats.stop()
                nats.start()
            else:
                self.shop.kill_and_restart(what)
            with self.lock:
                self.actions_done += 1
                self.lock.notify_all()


def test_orders_survive_kills_and_a_nats_restart(nats_server):  # noqa: F811
    shop = Shop(nats_server, payments_env={"PAYMENT_FAIL_RATE": "0.1"})
    try:
        for p in PRODUCTS:
            shop.set_stock(p, START_STOCK)
        start = {p: shop.stock(p) for p in PRODUCTS}
        load = Load(shop)
        with concurrent.futures.ThreadPoolExecutor(CLIENTS + 1) as ex:
            chaos = ex.submit(load.chaos, nats_server)
            clients = [ex.submit(load.client, i) for i in range(CLIENTS)]
            for f in clients + [chaos]:
                f.result()
        assert load.actions_done == len(CHAOS)
        assert not load.bad, f"answers that are not an order: {load.bad[:5]}"
        assert len(load.orders) == ORDERS
        # Every key: one order, whatever the retries.
        multi = {k: v for k, v in load.answers.items() if len(v) != 1}
        assert not multi, f"keys answered with several orders: {list(multi.items())[:5]}"
        ids = {next(iter(v)) for v in load.answers.values()}
        assert len(ids) == ORDERS

        def settled():
            orders = shop.all_orders()
            pending = [o["id"] for o in orders if o["status"] == "pending"]
            settled.last = (len(orders), pending[:10], len(pending))
            return not pending and orders
        settled.last = None
        try:
            orders = wait_until(settled, timeout=SETTLE_BOUND, what="every order settled", interval=0.5)
        except AssertionError:
            raise AssertionError(f"orders not settled within {SETTLE_BOUND}s: (count, some pending, pending) = "
                                 f"{settled.last}; retries {dict(load.retries)}")
        assert {o["id"] for o in orders} == ids, "orders exist that no key was answered with"
        by_status = collections.Counter(o["status"] + "/" + o.get("reason", "") for o in orders)
        assert {s.split("/")[0] for s in by_status} <= {"confirmed", "cancelled"}, by_status

        # Money: one succeeded charge of the total per confirmed order, none net per cancelled.
        confirmed = [o for o in orders if o["status"] == "confirmed"]
        for o in orders:
            pays = shop.payments_of(o["id"])
            ok = [p for p in pays if p["status"] == "succeeded"]
            refunded = [p for p in pays if p["status"] == "refunded"]
            if o["status"] == "confirmed":
                assert len(ok) == 1 and ok[0]["amount_cents"] == o["total_cents"] and not refunded, (o, pays)
            else:
                net = sum(p["amount_cents"] for p in ok) - sum(p["amount_cents"] for p in refunded)
                assert net == 0, (o, pays)

        # Stock: what confirmed orders took, once the releases of cancelled ones are in.
        taken = collections.Counter()
        for o in confirmed:
            for it in o["items"]:
                taken[it["product_id"]] += it["quantity"]
        want = {p: start[p] - taken[p] for p in PRODUCTS}
        try:
            wait_until(lambda: {p: shop.stock(p) for p in PRODUCTS} == want, what="stock equation",
                       timeout=SETTLE_BOUND, interval=0.5)
        except AssertionError:
            raise AssertionError(f"stock {({p: shop.stock(p) for p in PRODUCTS})} != start - confirmed {want}")
        print(f"chaos: {dict(by_status)}, retries {dict(load.retries)}")
    finally:
        shop.close()
    # Every database is sound after all of it.
    for name, path in shop.databases():
        assert shop.integrity(path) == "ok", (name, path)
