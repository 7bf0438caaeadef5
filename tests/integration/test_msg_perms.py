"""NATS permissions as shipped (deploy/nats-users.conf; docs/messaging.md,
"Permissions"): a real nats-server with that file, NKEY users made here, and
the whole shop signed in as the Procfile signs it in (each service its own
seed). What must hold: no credentials, no connection; another service's
seed can neither read products' traffic, nor announce an instance of
products that the gateway routes to, nor answer a request not sent to it;
and the shop still takes and confirms an order through the gateway."""
import json
import os
import shutil
import subprocess
import tempfile
import threading

import pytest

from conftest import ROOT, WAIT, Service, binary, wait_until
from shop_support import Shop, admin, token
from test_gateway_support import instances, new_id
from nkey_support import NKey, ShopUsers, b64url
from test_msg_support import Nats, NatsServer, metric, msgsvc

USERS = ("gateway", "auth", "products", "orders", "payments", "recommendations", "ops")
SHOP = ("gateway", "auth", "products", "orders", "payments")


@pytest.fixture(scope="module")
def perms():
    """(nats, users, shop): nats-server with the shipped permissions, and
    the shop on it."""
    keys = tempfile.TemporaryDirectory(prefix="svckit-perms-")
    users = ShopUsers(keys.name, USERS)
    saved = {k: os.environ.get(k) for k in users.server_env()}
    # nats-server reads the public keys from its environment, as in the Procfile.
    os.environ.update(users.server_env())
    nats = NatsServer(start=False)
    shop = None
    try:
        shutil.copy(os.path.join(ROOT, "deploy", "nats-users.conf"), nats.tmp)
        with open(nats.conf, "a") as f:
            f.write("include ./nats-users.conf\n")
        nats.start()
        # LOG_LEVEL info: the "signing in as" line, which must not show the seed.
        env = {u: {"NATS_URL": f"nats://127.0.0.1:{nats.port}", "NATS_NKEY_SEED_FILE": users.seed_file(u),
                   "LOG_LEVEL": "info"} for u in SHOP}
        shop = Shop(nats, service_env=env)
        yield nats, users, shop
    finally:
        if shop:
            shop.close()
        nats.close()
        keys.cleanup()
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v


def sign_in(nats, users, user):
    """A raw client signed in with user's seed, with an inbox that user may read."""
    inbox = "_INBOX.svckit.pytest" if user == "ops" else f"_INBOX.{user}.pytest"
    return Nats(nats.port, connect=users.connect(user), inbox=inbox)


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


def forged(user, key):
    """CONNECT fields that claim user's public key but sign with key."""
    return lambda info: {"nkey": user.public, "sig": b64url(key.sign(info["nonce"].encode()))}


@pytest.mark.parametrize("case", ["no credentials", "a password", "unknown key", "forged signature"])
def test_a_client_without_credentials_cannot_connect(perms, case):
    nats, users, _ = perms
    stranger = NKey("user")
    connect = {"no credentials": None, "a password": {"user": "products", "pass": "whatever"},
               "unknown key": forged(stranger, stranger),
               "forged signature": forged(users.keys["products"], stranger)}[case]
    with pytest.raises(RuntimeError, match="Authorization Violation"):
        Nats(nats.port, connect=connect)


@pytest.mark.parametrize("user", [u for u in USERS if u != "products"])
def test_another_services_user_cannot_read_products_traffic(perms, user):
    nats, users, shop = perms
    spy = sign_in(nats, users, user)
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

    def __init__(self, nats, users):
        super().__init__(daemon=True)
        self.id = new_id()
        self.nc = sign_in(nats, users, "payments")
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
    nats, users, shop = perms
    imp = Impostor(nats, users)
    imp.start()
    try:
        assert all("Permissions Violation for Subscription" in e for e in imp.denied), imp.denied
        # It does answer the generic PING: `svckit status` (ops) hears it.
        ops = sign_in(nats, users, "ops")
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
    nats, users, _ = perms
    nc = sign_in(nats, users, "payments")
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
    _, users, shop = perms
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
        # Signed in with its own key; the seed is never logged.
        assert f"signing in as {users.keys[name].public}" in svc.read_log(), name
        assert users.keys[name].seed not in svc.read_log(), name


def test_a_service_denied_its_subscriptions_logs_once_and_keeps_running(perms):
    """demo signed in as auth: every subscription of its own is refused. It
    stays up but not ready, connected once (no reconnection loop), with one
    log line for the burst of -ERRs and every one of them counted."""
    nats, users, _ = perms
    env = {"NATS_URL": f"nats://127.0.0.1:{nats.port}", "NATS_NKEY_SEED_FILE": users.seed_file("auth")}
    with Service("demo", env=env, wait_ready=False) as demo:
        def denied():
            return [l for l in demo.log_lines() if "Permissions Violation" in l.get("msg", "")]
        wait_until(denied, what="the refusal logged")
        wait_until(lambda: metric(demo, "nats_server_errors_total") >= 4, what="the -ERRs counted")
        assert len(denied()) == 1, denied()
        assert demo.proc.poll() is None
        assert demo.request("GET", "/healthz")[0] == 200
        assert demo.request("GET", "/readyz")[0] == 503
        assert metric(demo, "nats_subscriptions_denied_total") >= 1
        assert metric(demo, "nats_reconnects_total") == 0


def test_svckit_status_works_as_the_ops_user(perms):
    """The generic discovery subjects stay open: `svckit status` signed in as
    ops lists every service of the shop (and nothing refuses it)."""
    nats, users, _ = perms
    env = dict(os.environ, NATS_NKEY_SEED_FILE=users.seed_file("ops"))
    r = subprocess.run([binary("svckit"), "status", "--nats", f"nats://127.0.0.1:{nats.port}", "--no-ready",
                        "--json", "--wait", "2000"], capture_output=True, text=True, timeout=WAIT, env=env)
    assert r.returncode == 0, r.stderr
    names = {d.get("name") for d in json.loads(r.stdout)}
    assert set(SHOP) <= names, names


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


def test_a_refused_subscription_makes_the_service_unready(tmp_path):
    """msgsvc signed in as a user that may subscribe to everything but its
    own request subjects: /readyz 503 naming the subject, one log line, and
    every refusal counted; it stays alive."""
    users = ShopUsers(tmp_path, ("msgsvc",))
    nats = NatsServer(conf=f'authorization {{ users = [ {{nkey: "{users.keys["msgsvc"].public}", '
                           'permissions: {subscribe: {deny: ["svc.msgsvc.>"]}}} ] }\n')
    try:
        env = {"NATS_NKEY_SEED_FILE": users.seed_file("msgsvc")}
        with msgsvc(nats, env=env, wait_ready=False) as svc:
            def said():
                return [l for l in svc.log_lines() if "refused the subscription" in l.get("msg", "")]
            wait_until(said, what="the refusal logged")
            # Both request subjects (svc.msgsvc.http and the instance's own)
            # are refused: two refusals counted, one line.
            wait_until(lambda: metric(svc, "nats_subscriptions_denied_total") >= 2, what="the refusals counted")
            status, _, body = svc.request("GET", "/readyz")
            assert status == 503 and b"NATS refused the subscription to svc.msgsvc." in body, (status, body)
            assert svc.request("GET", "/healthz")[0] == 200
            assert len(said()) == 1 and said()[0]["level"] == "error", said()
            assert "Permissions Violation" in said()[0]["msg"]
    finally:
        nats.close()
