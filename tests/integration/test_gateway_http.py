"""HTTP semantics through the gateway and over NATS: conditional requests
(If-Match & co reach the service, which checks them in its write transaction;
ETag and Last-Modified come back) and compression (Accept-Encoding reaches the
service, which compresses once, in its cache; the gateway passes the coded
body and its headers through untouched)."""
import gzip
import http.client
import json
import zlib

import pytest

from conftest import Service
from services_fixtures import ADMIN_PASS, ADMIN_USER, bearer, jwks_url, login, register_and_login, start_auth, \
    start_products
from test_gateway_support import FakeInstance, Nats, gateway, nats_server, wait_instances  # noqa: F401

LIST = "/products?limit=30"


@pytest.fixture(scope="module")
def shop(nats_server):  # noqa: F811
    """auth and products on NATS, and a gateway with the built-in route table."""
    env = {"NATS_URL": nats_server.url}
    with start_auth(env) as auth:
        with start_products(auth, dict(env, WORKERS="2")) as products:
            e = {"NATS_URL": nats_server.url, "AUTH_JWKS_URL": jwks_url(auth), "WORKERS": "2"}
            with Service("gateway", env=e) as gw:
                wait_instances(gw, "auth", 1)
                wait_instances(gw, "products", 1)
                yield auth, products, gw, bearer(register_and_login(auth)), bearer(login(auth, ADMIN_USER, ADMIN_PASS))


def fetch(svc, path, headers, method="GET", body=None):
    """(status, [(name, value)] with lower-cased names, body) on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
    try:
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            headers = dict(headers, **{"Content-Type": "application/json"})
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, [(k.lower(), v) for k, v in r.getheaders()], r.read()
    finally:
        conn.close()


def one(hdrs, name):
    values = [v for k, v in hdrs if k == name]
    assert len(values) <= 1, (name, values)
    return values[0] if values else None


def vary_count(hdrs):
    return sum(v.lower().count("accept-encoding") for k, v in hdrs if k == "vary")


def test_gzip_through_the_gateway(shop):
    auth, products, gw, user, admin = shop
    gz = dict(user, **{"Accept-Encoding": "gzip"})
    _, direct_hdrs, direct = fetch(products, LIST, gz)
    _, _, plain = fetch(products, LIST, user)
    for _ in range(4):
        status, hdrs, body = fetch(gw, LIST, gz)
        assert status == 200
        assert one(hdrs, "content-encoding") == "gzip" and vary_count(hdrs) == 1
        assert body == direct and gzip.decompress(body) == plain
        assert one(hdrs, "etag") == one(direct_hdrs, "etag")
        assert int(one(hdrs, "content-length")) == len(body) < len(plain) / 4
    status, hdrs, body = fetch(gw, LIST, dict(user, **{"Accept-Encoding": "gzip;q=0"}))
    assert status == 200 and one(hdrs, "content-encoding") is None and body == plain and vary_count(hdrs) == 1
    status, hdrs, body = fetch(gw, "/products/1", gz)
    assert one(hdrs, "content-encoding") is None and vary_count(hdrs) == 0
    # HEAD: the GET's headers (the gateway asks the service for a GET).
    status, hdrs, body = fetch(gw, LIST, gz, method="HEAD")
    assert status == 200 and body == b"" and one(hdrs, "content-encoding") == "gzip"
    assert int(one(hdrs, "content-length")) == len(direct)


def test_304_through_the_gateway_for_both_forms(shop):
    auth, products, gw, user, admin = shop
    gz = dict(user, **{"Accept-Encoding": "gzip"})
    plain_tag = one(fetch(gw, LIST, user)[1], "etag")
    gz_tag = one(fetch(gw, LIST, gz)[1], "etag")
    assert gz_tag == plain_tag[:-1] + '-gzip"'
    for headers in (user, gz):
        for tag in (plain_tag, gz_tag):
            status, hdrs, body = fetch(gw, LIST, dict(headers, **{"If-None-Match": tag}))
            assert status == 304 and body == b"" and one(hdrs, "etag") == tag and vary_count(hdrs) == 1


def test_preconditions_through_the_gateway(shop):
    auth, products, gw, user, admin = shop
    status, hdrs, body = fetch(gw, "/products", admin, "POST", {"title": "Edge", "category": "c", "price": 1})
    assert status == 201, body
    pid = json.loads(body)["id"]
    path = f"/products/{pid}"
    status, hdrs, _ = fetch(gw, path, user)
    etag, date = one(hdrs, "etag"), one(hdrs, "last-modified")
    assert etag == f'"p{pid}-v1"' and date.endswith(" GMT")
    assert fetch(gw, path, dict(user, **{"If-Modified-Since": date}))[0] == 304
    status, hdrs, body = fetch(gw, path, dict(admin, **{"If-Match": etag}), "PATCH", {"price": 2})
    assert status == 200 and one(hdrs, "etag") == f'"p{pid}-v2"' and one(hdrs, "last-modified")
    # The stale tag, and a date before the last change: 412, nothing written.
    for cond in ({"If-Match": etag}, {"If-Unmodified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}):
        for method, doc in (("PUT", {"title": "x", "category": "c", "price": 9}), ("PATCH", {"price": 9}),
                            ("DELETE", None)):
            status, hdrs, body = fetch(gw, path, dict(admin, **cond), method, doc)
            assert status == 412, (cond, method, body)
            assert json.loads(body)["error"]["code"] == "precondition_failed"
    status, hdrs, body = fetch(gw, path, user)
    assert one(hdrs, "etag") == f'"p{pid}-v2"' and json.loads(body)["price"] == 2
    assert fetch(gw, path, dict(admin, **{"If-Match": f'"p{pid}-v2"'}), "DELETE")[0] == 200


def test_the_gateway_passes_a_coded_body_through_untouched(nats_server):  # noqa: F811
    """The service's coding reaches the client as the service made it: the
    gateway neither decompresses nor compresses again (these bytes are level 1,
    which the gateway would never produce), and the service saw the client's
    Accept-Encoding."""
    doc = json.dumps({"items": ["item %d" % i for i in range(500)]}).encode()
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    coded = c.compress(doc) + c.flush()

    def answer(inst, m):
        if m.header("Accept-Encoding") == "gzip":
            return 200, {"Content-Type": "application/json", "Content-Encoding": "gzip",
                         "Vary": "Accept-Encoding", "ETag": '"e1-gzip"'}, coded
        return 200, {"Content-Type": "application/json", "Vary": "Accept-Encoding", "ETag": '"e1"'}, doc

    with FakeInstance(nats_server, "coded", answer) as inst, gateway(nats_server, {"/c": "coded"}) as gw:
        wait_instances(gw, "coded", 1)
        status, hdrs, body = fetch(gw, "/c", {"Accept-Encoding": "gzip"})
        assert status == 200 and body == coded
        assert one(hdrs, "content-encoding") == "gzip" and one(hdrs, "etag") == '"e1-gzip"'
        assert vary_count(hdrs) == 1
        # A client without gzip: the plain reply, plain (Vary passed on, not doubled).
        status, hdrs, body = fetch(gw, "/c", {})
        assert body == doc and one(hdrs, "content-encoding") is None and vary_count(hdrs) == 1
        assert one(hdrs, "etag") == '"e1"'
        # (http.client sends "identity" when told nothing.)
        assert [m.header("Accept-Encoding") for m in inst.received] == ["gzip", "identity"]


def test_over_nats_only_a_caller_that_asks_gets_gzip(shop, nats_server):  # noqa: F811
    auth, products, gw, user, admin = shop
    nc = Nats(nats_server.port)
    try:
        plain = nc.svc("products", "GET", "/products", "limit=30", headers=user)
        assert plain.svc_status == 200 and plain.header("Content-Encoding") is None
        assert len(json.loads(plain.data)["products"]) == 30
        coded = nc.svc("products", "GET", "/products", "limit=30", headers=dict(user, **{"Accept-Encoding": "gzip"}))
        assert coded.svc_status == 200 and coded.header("Content-Encoding") == "gzip"
        assert "accept-encoding" in coded.header("Vary").lower()
        assert gzip.decompress(coded.data) == plain.data and len(coded.data) * 4 < len(plain.data)
        assert coded.header("ETag") == plain.header("ETag")[:-1] + '-gzip"'
    finally:
        nc.close()
