"""A service in another language joins: examples/recommendations (Node.js,
the official NATS client nats.js and nothing from svckit) on the shop under
the shipped NATS permissions (test_msg_perms.perms: each service signed in as
its own user, recommendations too). Orders placed through the gateway reach
it over JetStream; then the gateway routes /recommendations to it with the
answer computed here from those orders, `svckit status` and the dashboard
list it, a request's trace id is in its log and in the dashboard's trace,
and its errors are errors for svckit's call path (gateway, `svckit call`).

The example's npm packages (package-lock.json) are installed into its
node_modules by `npm ci` when missing. Skipped when node is not installed."""
import json
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from conftest import BIN, ROOT, WAIT, Service, free_port, node_validator, npm_ci, wait_until
from shop_support import admin, token
from test_gateway_support import wait_instances
from test_msg_perms import perms, sign_in  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(not shutil.which("node"), reason="node is not installed")

EXAMPLE = os.path.join(ROOT, "examples", "recommendations")


def user():
    """The buyer's Authorization header, made when used: a token made at
    import would expire (10 minutes) before a long suite reaches the test."""
    return {"Authorization": "Bearer " + token("recs-buyer")}


# Each order's product ids (quantity 1 each): product 1 is bought with 2
# three times, with 3 twice, with 4 and 5 once.
ORDERS = [[1, 2, 3], [1, 2], [1, 4], [2, 3], [1, 2, 5], [3, 5], [1, 3]]


def expected(pid, limit=5):
    """The answer for pid, computed from ORDERS."""
    together = {}
    for order in ORDERS:
        if pid in order:
            for q in order:
                if q != pid:
                    together[q] = together.get(q, 0) + 1
    best = sorted(together.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return {"product_id": pid, "orders": sum(pid in o for o in ORDERS),
            "recommendations": [{"product_id": q, "orders": n} for q, n in best]}


class Recs:
    """The shop under the shipped permissions and the Node service on it."""

    def __init__(self, nats, users, shop):
        self.nats, self.users, self.shop = nats, users, shop
        self.node = npm_ci(EXAMPLE, "nats/package.json")
        self.data = tempfile.TemporaryDirectory(prefix="svckit-recs-")
        self.port = free_port()
        self.svc = None

    def start(self):
        env = {"NATS_URL": f"nats://127.0.0.1:{self.nats.port}",
               "NATS_NKEY_SEED_FILE": self.users.seed_file("recommendations"),
               "LOG_LEVEL": "info"}
        self.svc = Service("recommendations", env=env, port=self.port, data_dir=self.data.name,
                           argv_prefix=(self.node,), path=os.path.join(EXAMPLE, "service.mjs"))
        wait_instances(self.shop.gateway, "recommendations", 1)

    def order(self, items, headers=None):
        st, _, body = self.shop.gateway.request(
            "POST", "/orders", {"items": [{"product_id": p, "quantity": 1} for p in items]},
            headers={**user(), "Idempotency-Key": uuid.uuid4().hex, **(headers or {})})
        assert st == 201, body


@pytest.fixture(scope="module")
def recs(perms):  # noqa: F811
    r = Recs(*perms)
    try:
        r.start()
        for items in ORDERS:
            r.order(items)
        # Every order counted (read through the gateway), so that each test
        # starts from the same answers.
        wait_until(lambda: all(ask(r.shop, f"/recommendations/{p}")[2] == expected(p) for p in range(1, 6)),
                   what="every order counted")
        yield r
    finally:
        if r.svc:
            r.svc.stop()
        r.data.cleanup()


def ask(shop, path, headers=None):
    st, hdrs, body = shop.gateway.request("GET", path, headers=headers or user())
    return st, hdrs, json.loads(body)


def test_the_gateway_routes_to_it_with_the_answer_of_the_orders(recs):
    shop = recs.shop
    for pid in range(1, 6):
        assert ask(shop, f"/recommendations/{pid}")[:3:2] == (200, expected(pid))
    st, _, doc = ask(shop, "/recommendations/1?limit=2")
    assert (st, doc) == (200, expected(1, limit=2))
    # A product nobody ordered: none yet, not an error.
    st, _, doc = ask(shop, "/recommendations/99")
    assert (st, doc) == (200, expected(99))


def test_http_gives_the_same_answers(recs):
    """Its own HTTP port serves the same routes (svckit status asks
    /readyz there)."""
    for path in ("/recommendations/2", "/recommendations/x", "/nope"):
        st, doc = recs.svc.json("GET", path)
        assert (st, doc) == ask(recs.shop, path)[::2], path
    assert recs.svc.json("GET", "/healthz") == (200, {"status": "ok"})
    with recs.svc.connect() as sock:
        sock.sendall(b"GET http://[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")


def test_errors_follow_the_convention(recs):
    shop = recs.shop
    cases = [("/recommendations/abc", 400, "bad_request"), ("/recommendations/0", 400, "bad_request"),
             ("/recommendations/1?limit=0", 400, "bad_request"),
             ("/recommendations/1?limit=2&limit=3", 400, "bad_request"),
             ("/recommendations/1/more", 404, "not_found"), ("/recommendations", 404, "not_found")]
    for path, status, code in cases:
        st, hdrs, doc = ask(shop, path)
        assert (st, doc["error"]["code"]) == (status, code), (path, st, doc)
        assert hdrs["content-type"] == "application/json"
    st, hdrs, _ = shop.gateway.request("POST", "/recommendations/1", {}, headers=user())
    assert st == 405
    # The gateway checks the token at the edge, as for every service.
    assert shop.gateway.request("GET", "/recommendations/1")[0] == 401


def svckit(nats, users, *args):
    """svckit signed in as the ops user, as make run's banner says."""
    env = dict(os.environ, NATS_NKEY_SEED_FILE=users.seed_file("ops"))
    return subprocess.run([os.path.join(BIN, "svckit"), args[0], "--nats", f"nats://127.0.0.1:{nats.port}", *args[1:]],
                          capture_output=True, text=True, timeout=WAIT, env=env)


def test_svckit_call_reads_its_answers_and_errors(recs):
    nats, users = recs.nats, recs.users
    r = svckit(nats, users, "call", "recommendations", "GET", "/recommendations/2")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == expected(2)
    r = svckit(nats, users, "call", "recommendations", "GET", "/recommendations/x")
    assert r.returncode == 4   # a 4xx (docs/cli.md)
    assert "product_id must be a positive integer" in r.stdout + r.stderr


def test_the_wire_is_svckits(recs):
    """Raw requests as the gateway makes them (signed in as gateway): the reply
    headers, the ADR-32 error headers, refusals of malformed requests, the
    instance's own subject."""
    c = sign_in(recs.nats, recs.users, "gateway")
    try:
        m = c.svc("recommendations", "GET", "/recommendations/2", headers={"X-Request-Id": "req-42"})
        assert (m.svc_status, m.json(), m.header("X-Request-Id")) == (200, expected(2), "req-42")
        assert m.header("Nats-Service-Error") is None
        instance = m.header("Svc-Instance")
        m = c.svc("recommendations", "GET", "/recommendations/2", subject=f"svc.recommendations.{instance}.http")
        assert (m.svc_status, m.header("Svc-Instance")) == (200, instance)
        for method, path, status, message in [
                ("GET", "/recommendations/x", 400, "product_id must be a positive integer"),
                ("GET", "/nope", 404, "no such resource"),
                ("DELETE", "/recommendations/1", 405, "method DELETE not allowed here"),
                ("get", "/recommendations/1", 400, "Svc-Method must be 1-16 upper-case letters"),
                ("GET", "/recommendations/../x", 400, "Svc-Path must be a normalised absolute path")]:
            m = c.svc("recommendations", method, path)
            assert m.svc_status == status, (method, path, m.svc_status)
            assert m.json()["error"]["message"] == message
            assert (m.header("Nats-Service-Error"), m.header("Nats-Service-Error-Code")) == (message, str(status))
        m = c.request("svc.recommendations.http", b"", headers={"Svc-Path": "/recommendations/1"})
        assert m.svc_status == 400   # no Svc-Method on the service's subject
        # Made-up methods count as "other"; an insane request id is replaced.
        m = c.svc("recommendations", "FROB", "/recommendations/1", headers={"X-Request-Id": "a b"})
        assert m.svc_status == 405 and m.header("X-Request-Id") not in (None, "a b")
        metrics = recs.svc.request("GET", "/metrics")[2].decode()
        assert 'method="other",code="405"' in metrics and "FROB" not in metrics
    finally:
        c.close()


def test_svckit_status_routes_top_and_the_dashboard_list_it(recs):
    nats, users, shop, svc = recs.nats, recs.users, recs.shop, recs.svc
    r = svckit(nats, users, "status", "--json")
    assert r.returncode == 0, r.stderr
    docs = [d for d in json.loads(r.stdout) if d.get("name") == "recommendations"]
    assert docs, r.stdout
    md = docs[0]["metadata"]
    assert (md["http_port"], md["transport"]) == (str(svc.port), "http+nats")
    r = svckit(nats, users, "routes", "--wait", "1000", "--json")
    assert {"service": "recommendations", "method": "GET", "path": "/recommendations/:product_id"} in \
        json.loads(r.stdout), r.stdout
    r = svckit(nats, users, "status")
    row = [line for line in r.stdout.splitlines() if line.startswith("recommendations")]
    assert row and "ready" in row[0].split(), r.stdout

    r = svckit(nats, users, "top", "--json")
    assert r.returncode == 0, r.stderr
    assert "recommendations" in r.stdout, r.stdout

    assert ask(shop, "/recommendations/1")[0] == 200   # a route with a request to show

    def listed():
        st, _, doc = ask(shop, "/dashboard/snapshot", headers=admin())
        return st == 200 and [i for i in doc["instances"] if i["name"] == "recommendations" and i["ready"]]
    inst = wait_until(listed, what="the dashboard shows recommendations")
    assert any(r["route"] == "/recommendations/:product_id" for r in inst[0]["routes"])


def test_a_trace_crosses_it(recs):
    shop, svc = recs.shop, recs.svc
    trace_id = os.urandom(16).hex()
    parent = os.urandom(8).hex()
    st, _, _ = ask(shop, "/recommendations/3", headers={**user(), "traceparent": f"00-{trace_id}-{parent}-01"})
    assert st == 200
    lines = [ln for ln in svc.log_lines() if ln.get("msg") == "request" and ln.get("trace_id") == trace_id]
    assert [(ln["route"], ln["status"], ln["transport"]) for ln in lines] == [("/recommendations/:product_id", 200, "nats")]

    def trace():
        st, _, doc = ask(shop, f"/dashboard/traces/{trace_id}", headers=admin())
        return st == 200 and {s.get("service") for s in doc["spans"]} >= {"gateway", "recommendations"} and doc
    doc = wait_until(trace, what="the trace has the gateway's spans and the Node service's")
    by_id = {s["span_id"]: s for s in doc["spans"]}
    ours = [s for s in doc["spans"] if s.get("service") == "recommendations"]
    assert [(s["name"], s["kind"]) for s in ours] == [("GET /recommendations/:product_id", "server")]
    assert by_id[ours[0]["parent_id"]]["service"] == "gateway"   # the gateway's client span


def test_an_orders_trace_reaches_its_consumer(recs):
    """An order placed with a traceparent: its orders.created event, relayed
    by orders' outbox, is consumed here under a consumer span of the same
    trace, the child of the relay's producer span."""
    trace_id = os.urandom(16).hex()
    recs.order([2, 5], headers={"traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01"})
    ORDERS.append([2, 5])

    def consumed():
        st, _, doc = ask(recs.shop, f"/dashboard/traces/{trace_id}", headers=admin())
        return st == 200 and [s for s in doc["spans"] if s.get("service") == "recommendations"] and doc
    doc = wait_until(consumed, what="the order's trace reaches recommendations")
    by_id = {s["span_id"]: s for s in doc["spans"]}
    ours = [s for s in doc["spans"] if s.get("service") == "recommendations"]
    assert [(s["name"], s["kind"]) for s in ours] == [("consume orders.created", "consumer")]
    parent = by_id[ours[0]["parent_id"]]
    assert (parent["service"], parent["kind"]) == ("orders", "producer")


def test_a_restart_resumes_from_its_durable_consumer(recs):
    """Stopped (its leave notice first) and started on the same data: the
    counts come back from its file, and an order placed while it was down is
    counted once."""
    spy = sign_in(recs.nats, recs.users, "gateway")
    try:
        spy.subscribe("$SRV.LEAVE.recommendations.>")
        spy.flush()
        recs.svc.stop()
        leave = spy.next_msg()
    finally:
        spy.close()
    assert leave.json()["type"] == "io.svckit.v1.leave_notice" and leave.json()["name"] == "recommendations"
    assert leave.subject == f"$SRV.LEAVE.recommendations.{leave.json()['id']}"
    recs.order([1, 6])
    ORDERS.append([1, 6])
    recs.start()
    wait_until(lambda: ask(recs.shop, "/recommendations/1")[2] == expected(1), what="the order placed meanwhile counted")
    assert ask(recs.shop, "/recommendations/6")[2] == expected(6)


HOSTILE = [b"not json", b"\xff\xfe{}", b"{}", b"[]", b'{"order_id":1,"items":[]}',
           json.dumps({"order_id": 1, "items": [{"product_id": 1, "quantity": 1}] * 51}).encode(),
           b'{"order_id":1,"items":[{"product_id":-1}]}', b'{"order_id":1,"items":[{"product_id":"1"}]}',
           b'{"order_id":1,"items":[{"product_id":9007199254740993}]}', b'{"order_id":1,"items":[null]}',
           b"[" * 16000 + b"]" * 16000, b'{"order_id":1,"items":[{"product_id":1}],"pad":"' + b"x" * 17000 + b'"}']


def test_hostile_order_events_are_terminated(recs):
    """Bodies no orders service would publish (signed in as orders, the one
    user that may): each terminated with one log line, the counts
    unchanged, the service still answering."""
    before = ask(recs.shop, "/recommendations/1")[2]
    c = sign_in(recs.nats, recs.users, "orders")
    try:
        for body in HOSTILE:
            c.publish("orders.created", body)
        c.flush()
    finally:
        c.close()

    def dropped():
        return [ln for ln in recs.svc.log_lines() if ln.get("msg", "").startswith("dropped orders.created")]
    wait_until(lambda: len(dropped()) == len(HOSTILE), what="every hostile event dropped")
    assert ask(recs.shop, "/recommendations/1")[2] == before
    st, _, body = recs.svc.request("GET", "/metrics")
    assert 'events_consumed_total{service="recommendations",source="orders",subject="orders.created",' \
        f'outcome="error"}} {len(HOSTILE)}' in body.decode()


def test_the_shipped_permissions_suffice(recs):
    """Everything above ran as the recommendations user of
    deploy/nats-users.conf: nothing was refused."""
    warnings = [ln for ln in recs.svc.log_lines() if ln["level"] != "info" and not ln["msg"].startswith("dropped ")]
    assert not warnings and "Permissions Violation" not in recs.svc.read_log(), warnings
    with open(os.path.join(recs.nats.tmp, "nats.log")) as f:
        assert "Permissions Violation" not in f.read()


def test_the_gateway_merges_its_openapi_document(recs, tmp_path):
    """Its /openapi.json is valid OpenAPI 3.1 (swagger-parser, as
    test_openapi.py validates the C services'), and the gateway's merged
    document has its route, behind the bearer scheme."""
    validate = node_validator(os.path.join(ROOT, "tests", "openapi"), "@apidevtools/swagger-parser/package.json")
    st, doc = recs.svc.json("GET", "/openapi.json")
    assert st == 200
    (tmp_path / "recs.json").write_text(json.dumps(doc))
    r = validate(tmp_path / "recs.json")
    assert r.returncode == 0, r.stdout + r.stderr
    st, _, merged = ask(recs.shop, "/openapi.json", headers={})
    assert st == 200 and merged["x-svckit-unavailable"] == [], merged["x-svckit-unavailable"]
    op = merged["paths"]["/recommendations/{product_id}"]["get"]
    assert op["security"] == [{"bearer": []}]
