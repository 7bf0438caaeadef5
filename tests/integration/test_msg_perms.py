"""NATS permissions as shipped (deploy/nats-users.conf; docs/messaging.md,
"Permissions"): a real nats-server with that file, passwords made here, and
the whole shop signed in as the Procfile signs it in (each service its own
user). What must hold: no credentials, no connection; another service's
credentials can neither read products' traffic, nor announce an instance of
products that the gateway routes to, nor answer a request not sent to it;
and the shop still takes and confirms an order through the gateway."""
import json
import os
import shutil
import subprocess
import threading

import pytest

from conftest import ROOT, WAIT, Service, binary, wait_until
from shop_support import Shop, admin, token
from test_gateway_support import instances, new_id
from test_msg_support import Nats, NatsServer, metric, nats_password

USERS = ("gateway", "auth", "products", "orders", "payments", "recommendations", "ops")
SHOP = ("gateway", "auth", "products", "orders", "payments")


@pytest.fixture(scope="module")
def perms():
    """(nats, passwords, shop): nats-server with the shipped permissions, and
    the shop on it."""
    passwords = {u: nats_password() for u in USERS}
    saved = {u: os.environ.get(f"{u.upper()}_NATS_PASSWORD") for u in USERS}
    # nats-server reads the passwords from its environment, as in the Procfile.
    os.environ.update({f"{u.upper()}_NATS_PASSWORD": p for u, p in passwords.items()})
    nats = NatsServer(start=False)
    shop = None
    try:
        shutil.copy(os.path.join(ROOT, "deploy", "nats-users.conf"), nats.tmp)
        with open(nats.conf, "a") as f:
            f.write("include ./nats-users.conf\n")
        nats.start()
        # LOG_LEVEL info: the "connecting to" line, which must not show the password.
        urls = {u: {"NATS_URL": f"nats://{u}:{passwords[u]}@127.0.0.1:{nats.port}", "LOG_LEVEL": "info"}
                for u in SHOP}
        shop = Shop(nats, service_env=urls)
        yield nats, passwords, shop
    finally:
        if shop:
            shop.close()
        nats.close()
        for u, v in saved.items():
            os.environ.pop(f"{u.upper()}_NATS_PASSWORD", None)
            if v is not None:
                os.environ[f"{u.upper()}_NATS_PASSWORD"] = v


def sign_in(nats, passwords, user):
    """A raw client signed in as user, with an inbox that user may read."""
    inbox = "_INBOX.svckit.pytest" if user == "ops" else f"_INBOX.{user}.pytest"
    return Nats(nats.port, connect={"user": user, "pass": passwords[user]}, inbox=inbox)


def refused(nc, op):
    """op(nc), then a PING: nats-server's -ERR lines before the PONG, as text
    ("" if none)."""
    op(nc)
    nc.send(b"PING\r\n")
    errors = []
    while True:
        try:
            nc._wait_pong()
            return " ".join(errors)
        except RuntimeError as e:  # an -ERR line; the PONG is still to come
            errors.append(str(e))


def get_product(shop, pid=1):
    st, _, body = shop.gateway.request("GET", f"/products/{pid}",
                                       headers={"Authorization": "Bearer " + token("ann")})
    assert st == 200, body
    return json.loads(body)


@pytest.mark.parametrize("connect", [None, {"user": "products", "pass": "not-the-password"},
                                     {"user": "intruder", "pass": "whatever"}],
                         ids=["no credentials", "wrong password", "unknown user"])
def test_a_client_without_credentials_cannot_connect(perms, connect):
    nats, _, _ = perms
    with pytest.raises(RuntimeError, match="Authorization Violation"):
        Nats(nats.port, connect=connect)


@pytest.mark.parametrize("user", [u for u in USERS if u != "products"])
def test_another_services_user_cannot_read_products_traffic(perms, user):
    nats, passwords, shop = perms
    spy = sign_in(nats, passwords, user)
    try:
        # The gateway's inbox gets auth's answers to logins (tokens).
        foreign_inbox = "_INBOX.orders.>" if user == "gateway" else "_INBOX.gateway.>"
        for subject in ("svc.>", "svc.products.>", "svc.products.http", "_INBOX.>", foreign_inbox, ">"):
            err = refused(spy, lambda nc: nc.subscribe(subject))
            assert f'Permissions Violation for Subscription to "{subject}"' in err, (subject, err)
        # A real request flows through the gateway to products and back...
        assert get_product(shop)["id"] == 1
        # ...and nothing of it reached the spy (what the server routed to it
        # before this PONG would be read before it).
        spy.flush()
        assert spy.pending == []
    finally:
        spy.close()


class Impostor(threading.Thread):
    """Signed in as payments, it claims to be an instance of products: it
    answers the generic $SRV.PING (which payments may read) as products, and
    tries to subscribe to products' subjects. Every message it receives on a
    svc. subject is counted."""

    def __init__(self, nats, passwords):
        super().__init__(daemon=True)
        self.id = new_id()
        self.nc = sign_in(nats, passwords, "payments")
        self.denied = [refused(self.nc, lambda nc, s=s: nc.subscribe(s))
                       for s in ("$SRV.PING.products", "svc.products.http", f"svc.products.{self.id}.http")]
        assert refused(self.nc, lambda nc: nc.subscribe("$SRV.PING")) == ""
        self.pings = 0
        self.requests = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                m = self.nc.next_msg(timeout=0.05)
            except (TimeoutError, OSError):
                continue
            if m.subject.startswith("$SRV.PING") and m.reply:
                self.pings += 1
                doc = {"type": "io.nats.micro.v1.ping_response", "name": "products", "id": self.id,
                       "version": "0.1.0", "metadata": {}}
                self.nc.publish(m.reply, json.dumps(doc))
            elif m.subject.startswith("svc."):
                self.requests += 1


def test_another_services_user_cannot_announce_an_instance_of_products(perms):
    nats, passwords, shop = perms
    imp = Impostor(nats, passwords)
    imp.start()
    try:
        assert all("Permissions Violation for Subscription" in e for e in imp.denied), imp.denied
        # It does answer the generic PING: `svckit status` (ops) hears it.
        ops = sign_in(nats, passwords, "ops")
        try:
            answers = ops.request_all("$SRV.PING", lambda out: any(imp.id in m.data.decode() for m in out))
            assert any(imp.id in m.data.decode() for m in answers)
        finally:
            ops.close()
        # The gateway asks $SRV.PING.products, which only products may read:
        # over several rounds it knows the one real instance only.
        start = metric(shop.gateway, "gateway_discovery_rounds_total")
        for _ in range(20):
            assert get_product(shop)["id"] == 1
        wait_until(lambda: metric(shop.gateway, "gateway_discovery_rounds_total") >= start + 3,
                   what="three discovery rounds")
        assert instances(shop.gateway, "products") == 1
        for _ in range(20):
            assert get_product(shop)["id"] == 1
        assert imp.requests == 0
    finally:
        imp.stop.set()
        imp.join(WAIT)
        imp.nc.close()


def test_another_services_user_cannot_answer_or_forge(perms):
    """Payments may publish replies only to requests it received, and events
    only of its own: a forged answer to the gateway's inbox, a request to
    products, a stock event, a JetStream call on another consumer are each
    refused by the server."""
    nats, passwords, _ = perms
    nc = sign_in(nats, passwords, "payments")
    try:
        for subject in ("_INBOX.gateway.x.1", "_INBOX.orders.x.1", "svc.products.http", "stock.reserved",
                        "orders.created", "$JS.API.CONSUMER.MSG.NEXT.SHOP.orders-payments",
                        "$JS.API.STREAM.DELETE.SHOP", "$SRV.LEAVE.products.x"):
            err = refused(nc, lambda c: c.publish(subject, b"{}"))
            assert f'Permissions Violation for Publish to "{subject}"' in err, (subject, err)
        # What it may send goes through (no -ERR).
        assert refused(nc, lambda c: c.publish("payment.pytest", b"{}")) == ""
    finally:
        nc.close()


def test_the_shop_confirms_an_order_through_the_gateway(perms):
    _, passwords, shop = perms
    h = {"Authorization": "Bearer " + token("ann"), "Content-Type": "application/json",
         "Idempotency-Key": new_id()}
    body = json.dumps({"items": [{"product_id": 2, "quantity": 1}]}).encode()
    st, _, data = shop.gateway.request("POST", "/orders", body=body, headers=h)
    assert st == 201, data
    oid = json.loads(data)["id"]

    def confirmed():
        s, _, d = shop.gateway.request("GET", f"/orders/{oid}", headers={"Authorization": h["Authorization"]})
        return s == 200 and json.loads(d)["status"] != "pending" and json.loads(d)
    assert wait_until(confirmed, what=f"order {oid} settled")["status"] == "confirmed"
    # Every service did all it does (requests, discovery, the saga's
    # JetStream calls and events, the dashboard's snapshot) within its rights.
    st, _, _ = shop.gateway.request("GET", "/dashboard/snapshot", headers=admin())
    assert st == 200
    wait_until(lambda: metric(shop.gateway, "gateway_dashboard_rounds_total") >= 2, what="dashboard rounds")
    for name, svc in shop.svc.items():
        assert "Permissions Violation" not in svc.read_log(), name
        assert metric(svc, "nats_server_errors_total") == 0, name
        # NATS_URL is logged with its password as "***".
        assert "nats://***@127.0.0.1:" in svc.read_log(), name
        assert passwords[name] not in svc.read_log(), name


def test_a_service_denied_its_subscriptions_logs_once_and_keeps_running(perms):
    """demo signed in as auth: every subscription of its own is refused. It
    stays up, connected once (no reconnection loop), with one log line for
    the burst of -ERRs and every one of them counted."""
    nats, passwords, _ = perms
    url = f"nats://auth:{passwords['auth']}@127.0.0.1:{nats.port}"
    with Service("demo", env={"NATS_URL": url}, wait_ready=False) as demo:
        def denied():
            return [l for l in demo.log_lines() if "Permissions Violation" in l.get("msg", "")]
        wait_until(denied, what="the refusal logged")
        wait_until(lambda: metric(demo, "nats_server_errors_total") >= 4, what="the -ERRs counted")
        assert len(denied()) == 1, denied()
        assert demo.proc.poll() is None
        assert demo.request("GET", "/healthz")[0] == 200
        assert metric(demo, "nats_reconnects_total") == 0


def test_svckit_status_works_as_the_ops_user(perms):
    """The generic discovery subjects stay open: `svckit status` signed in as
    ops lists every service of the shop (and nothing refuses it)."""
    nats, passwords, _ = perms
    url = f"nats://ops:{passwords['ops']}@127.0.0.1:{nats.port}"
    r = subprocess.run([binary("svckit"), "status", "--nats", url, "--no-ready", "--json", "--wait", "2000"],
                       capture_output=True, text=True, timeout=WAIT)
    assert r.returncode == 0, r.stderr
    names = {d.get("name") for d in json.loads(r.stdout)}
    assert set(SHOP) <= names, names
    assert passwords["ops"] not in r.stdout + r.stderr


@pytest.mark.parametrize("url", ["nats://products:s3cretpw@a b", "nats://ok:1,nats://s3cretpw@127.0.0.1:99999"])
def test_a_bad_nats_url_is_refused_without_showing_its_password(url):
    r = subprocess.run([binary("products")], env={"NATS_URL": url, "PORT": "0"}, capture_output=True, text=True,
                       timeout=WAIT)
    assert r.returncode == 2, r.stderr
    assert "NATS_URL" in r.stderr and "***@" in r.stderr and "s3cretpw" not in r.stderr, r.stderr


@pytest.mark.parametrize("url", ["nats://products:Alpha@Bravo@a b", "nats://products:Alpha/Bravo@127.0.0.1",
                                 "nats://products:Alpha,Bravo@127.0.0.1:99999",
                                 "nats://ok:1, tls://Alpha@Bravo@127.0.0.1:0"])
def test_no_piece_of_a_password_with_at_slash_or_comma_is_shown(url):
    """The URL parser takes the last '@' of the authority, so a password may
    hold '@' (and a bad URL one with '/' or ','): none of it is shown."""
    r = subprocess.run([binary("products")], env={"NATS_URL": url, "PORT": "0"}, capture_output=True, text=True,
                       timeout=WAIT)
    assert r.returncode == 2, r.stderr
    assert "NATS_URL" in r.stderr and "***@" in r.stderr, r.stderr
    assert "Alpha" not in r.stderr and "Bravo" not in r.stderr, r.stderr
