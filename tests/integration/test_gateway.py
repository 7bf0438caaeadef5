"""The gateway: routing to the real services, edge auth, what crosses it (headers,
ids, traces), CORS, limits, configuration and hostile input. Resilience under
failures is in test_gateway_resilience.py."""
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from conftest import WAIT, Service, binary, exchange, wait_until
from services_fixtures import bearer, claims, jwks_url, sign_hs256, start_auth, start_products, unique_name
from test_gateway_support import (FakeInstance, JWT_SECRET, echo, gateway, instances, metric, nats_server,  # noqa: F401
                                  silent, wait_instances)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


# ---- the reference system through the gateway ----------------------------------

@pytest.fixture(scope="module")
def system(nats_server):  # noqa: F811
    """auth and products on NATS, and a gateway with the built-in route table."""
    env = {"NATS_URL": nats_server.url}
    with start_auth(env) as auth:
        with start_products(auth, env) as products:
            e = {"NATS_URL": nats_server.url, "AUTH_JWKS_URL": jwks_url(auth), "WORKERS": "2"}
            with Service("gateway", env=e) as gw:
                wait_instances(gw, "auth", 1)
                wait_instances(gw, "products", 1)
                yield auth, products, gw


def products_requests(products):
    return metric(products, "http_requests_total")


def test_readme_flow_through_the_gateway(system):
    auth, products, gw = system
    name = unique_name()
    st, doc = gw.json("POST", "/auth/register", {"username": name, "password": "correct-horse"})
    assert st == 201, doc
    assert doc["username"] == name
    st, hdrs, body = gw.request("POST", "/auth/login", {"username": name, "password": "correct-horse"})
    assert st == 200, body
    token = json.loads(body)["access_token"]
    assert hdrs["set-cookie"].startswith("token=") and "HttpOnly" in hdrs["set-cookie"]
    st, doc = gw.json("GET", "/products?limit=5&select=title,price", headers=bearer(token))
    assert st == 200, doc
    assert len(doc["products"]) == 5 and doc["total"] >= 100
    assert set(doc["products"][0]) == {"id", "title", "price"}
    st, doc = gw.json("GET", "/products/3", headers=bearer(token))
    assert st == 200 and doc["id"] == 3
    # The cookie login sets works at the edge and behind it.
    st, doc = gw.json("GET", "/products/categories", headers={"Cookie": f"token={token}"})
    assert st == 200 and len(doc) > 0
    st, doc = gw.json("GET", "/auth/me", headers=bearer(token))
    assert st == 200 and doc["name"] == name
    st, doc = gw.json("GET", "/.well-known/jwks.json")
    assert st == 200 and doc["keys"]
    # A service's 4xx comes back as it is; so do ETag and conditional requests.
    st, doc = gw.json("GET", "/products/999999", headers=bearer(token))
    assert st == 404 and doc["error"]["code"] == "not_found"
    st, hdrs, _ = gw.request("GET", "/products/3", headers=bearer(token))
    etag = hdrs["etag"]
    st, hdrs, body = gw.request("GET", "/products/3", headers={**bearer(token), "If-None-Match": etag})
    assert st == 304 and body == b""
    # HEAD is answered with the GET's headers and no body.
    st, hdrs, body = gw.request("HEAD", "/products/3", headers=bearer(token))
    assert st == 200 and body == b"" and int(hdrs["content-length"]) > 0
    # A user may read but not write: the service decides (403), the gateway passes it on.
    st, doc = gw.json("POST", "/products", {"title": "x", "category": "c", "price": 1}, headers=bearer(token))
    assert st == 403, doc


def test_edge_auth_refuses_without_reaching_the_service(system):
    auth, products, gw = system
    before = products_requests(products)
    st, hdrs, body = gw.request("GET", "/products")
    assert st == 401 and hdrs["www-authenticate"].startswith("Bearer")
    assert json.loads(body)["error"]["code"] == "unauthorized"
    for bad in ("Bearer nonsense", "Bearer a.b.c", "Basic dXNlcjpwYXNz"):
        st, _, _ = gw.request("GET", "/products/1", headers={"Authorization": bad})
        assert st == 401
    st, _, _ = gw.request("GET", "/products", headers={"Cookie": "token=garbage"})
    assert st == 401
    # /metrics counts itself once per scrape: only the two scrapes moved it.
    assert products_requests(products) - before <= 1
    # Routes marked "none" need nothing at the edge.
    st, doc = gw.json("POST", "/auth/login", {"username": "nobody-here", "password": "wrong-password"})
    assert st == 401 and doc["error"]["message"] == "invalid username or password"  # auth's own answer


def test_bad_input_gets_4xx_and_the_gateway_keeps_serving(system):
    auth, products, gw = system
    token = None
    name = unique_name()
    assert gw.json("POST", "/auth/register", {"username": name, "password": "correct-horse"})[0] == 201
    st, doc = gw.json("POST", "/auth/login", {"username": name, "password": "correct-horse"})
    token = doc["access_token"]
    # Malformed JSON and a missing Content-Type: the service's 400/415 through the gateway.
    st, doc = gw.json("POST", "/auth/register", b'{"username": ', headers={"Content-Type": "application/json"})
    assert st == 400 and doc["error"]["code"]
    st, doc = gw.json("POST", "/auth/register", b'{"username":"a"}')
    assert st == 415
    # Paths that would be dangerous in a subject travel in a header, never in a subject.
    for path in ("/products/a.b", "/products/*", "/products/>", "/products/%3E", "/products/a%20b",
                 "/products/..%2f", "/products/%00", "/products/a/../../etc"):
        st, _, body = gw.request("GET", path, headers=bearer(token))
        assert 400 <= st < 500, (path, st, body)
    # Huge headers: the core refuses them before anything is forwarded.
    st, _, _, s = exchange(gw.port, b"GET /products HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    s.close()
    assert st == 431
    # Too many headers.
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    st, _, _, s = exchange(gw.port, b"GET /products HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    s.close()
    assert st == 431
    # A body over the limit.
    st, _, _, s = exchange(gw.port, b"POST /auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                    b"Content-Length: 2000000\r\n\r\n")
    s.close()
    assert st == 413
    # No route: a JSON 404 from the gateway itself.
    st, doc = gw.json("GET", "/nowhere")
    assert st == 404 and doc["error"]["code"] == "not_found"
    st, doc = gw.json("GET", "/productsX", headers=bearer(token))
    assert st == 404
    assert gw.request("GET", "/healthz")[0] == 200
    assert gw.json("GET", "/products/1", headers=bearer(token))[0] == 200


# ---- what crosses the gateway ----------------------------------------------------

@pytest.fixture(scope="module")
def echo_gw(nats_server):  # noqa: F811
    cors = {"origins": ["https://shop.example", "http://localhost:3000"], "max_age_s": 123}
    with FakeInstance(nats_server, "echo") as inst:
        with gateway(nats_server, [{"prefix": "/echo", "service": "echo"},
                                   {"prefix": "/secure", "service": "echo", "auth": "user"},
                                   {"prefix": "/admin", "service": "echo", "auth": "admin"}],
                     cors=cors) as gw:
            wait_instances(gw, "echo", 1)
            yield inst, gw


def through(echo_gw, method="GET", path="/echo", body=None, headers=None):
    inst, gw = echo_gw
    st, hdrs, data = gw.request(method, path, body=body, headers=headers)
    return st, hdrs, (json.loads(data) if data else None)


def test_client_sent_internal_headers_are_stripped(echo_gw):
    st, hdrs, doc = through(echo_gw, headers={
        "Svc-Client": "6.6.6.6", "Svc-Deadline": "1", "Svc-Method": "DELETE", "Svc-Path": "/admin",
        "Svc-Anything": "x", "X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6", "Forwarded": "for=6.6.6.6",
        "X-Custom": "nope", "Authorization": "Bearer t", "Cookie": "a=1", "Accept": "application/json",
    })
    assert st == 200
    h = {k.lower(): v for k, v in doc["headers"].items()}
    assert h["svc-client"] == "127.0.0.1"  # the real peer, set by the gateway
    assert h["svc-method"] == "GET" and h["svc-path"] == "/echo"
    assert int(h["svc-deadline"]) > time.time() * 1000
    for gone in ("svc-anything", "x-forwarded-for", "x-real-ip", "forwarded", "x-custom"):
        assert gone not in h, gone
    assert h["authorization"] == "Bearer t" and h["cookie"] == "a=1" and h["accept"] == "application/json"
    assert "6.6.6.6" not in json.dumps(doc)


def test_request_id_and_traceparent(echo_gw):
    # No id, no trace from the client: both are made.
    st, hdrs, doc = through(echo_gw)
    h = {k.lower(): v for k, v in doc["headers"].items()}
    assert h["x-request-id"] == hdrs["x-request-id"] and h["x-request-id"]
    tp = h["traceparent"].split("-")
    assert len(tp) == 4 and tp[0] == "00" and len(tp[1]) == 32 and len(tp[2]) == 16 and int(tp[1], 16) != 0
    # A sane client id is kept; the client's trace is continued with a new span.
    client_tp = f"00-{TRACE}-00f067aa0ba902b7-01"
    st, hdrs, doc = through(echo_gw, headers={"X-Request-Id": "order-42.retry:1", "traceparent": client_tp})
    h = {k.lower(): v for k, v in doc["headers"].items()}
    assert h["x-request-id"] == "order-42.retry:1" == hdrs["x-request-id"]
    tp = h["traceparent"].split("-")
    assert tp[1] == TRACE and tp[2] != "00f067aa0ba902b7" and len(tp[2]) == 16
    # A hostile id is replaced.
    st, hdrs, doc = through(echo_gw, headers={"X-Request-Id": "x" * 200})
    assert hdrs["x-request-id"] != "x" * 200


def test_method_path_query_and_body_are_forwarded(echo_gw):
    st, _, doc = through(echo_gw, "POST", "/echo/a%20b/c.d?x=1&y=%2F", body=b'{"k":1}',
                         headers={"Content-Type": "application/json"})
    h = doc["headers"]
    assert h["Svc-Method"] == "POST" and h["Svc-Path"] == "/echo/a%20b/c.d" and h["Svc-Query"] == "x=1&y=%2F"
    assert h["Content-Type"] == "application/json" and doc["body"] == '{"k":1}'
    # One instance known: the gateway sends to it by its own subject.
    assert doc["subject"] == f"svc.echo.{echo_gw[0].id}.http"


def test_reply_headers_allow_list(nats_server):  # noqa: F811
    def answer(inst, m):
        return 201, {"Content-Type": "text/plain", "Location": "/x/1", "Set-Cookie": "s=1; HttpOnly",
                     "Cache-Control": "no-store", "ETag": '"e1"', "X-Internal": "secret",
                     "Svc-Debug": "secret"}, "made"
    with FakeInstance(nats_server, "hdrs", answer) as inst, gateway(nats_server, {"/x": "hdrs"}) as gw:
        wait_instances(gw, "hdrs", 1)
        st, hdrs, body = gw.request("POST", "/x", body=b"")
        assert st == 201 and body == b"made"
        assert hdrs["content-type"] == "text/plain" and hdrs["location"] == "/x/1"
        assert hdrs["set-cookie"] == "s=1; HttpOnly" and hdrs["etag"] == '"e1"'
        assert "x-internal" not in hdrs and "svc-debug" not in hdrs and "svc-instance" not in hdrs


def test_edge_auth_user_and_admin(echo_gw):
    inst, gw = echo_gw
    user = sign_hs256(JWT_SECRET.encode(), claims(role="user", name="u"))
    admin = sign_hs256(JWT_SECRET.encode(), claims(role="admin"))
    n = inst.count()
    assert through(echo_gw, path="/secure")[0] == 401
    assert through(echo_gw, path="/secure", headers={"Authorization": "Bearer " + user})[0] == 200
    assert through(echo_gw, path="/admin", headers={"Authorization": "Bearer " + user})[0] == 403
    assert through(echo_gw, path="/admin", headers={"Authorization": "Bearer " + admin})[0] == 200
    expired = sign_hs256(JWT_SECRET.encode(), claims(exp=int(time.time()) - 3600))
    assert through(echo_gw, path="/secure", headers={"Authorization": "Bearer " + expired})[0] == 401
    assert inst.count() == n + 2  # only the two allowed requests reached the service


def test_cors(echo_gw):
    inst, gw = echo_gw
    n = inst.count()
    pre = {"Origin": "https://shop.example", "Access-Control-Request-Method": "PUT",
           "Access-Control-Request-Headers": "authorization, content-type"}
    st, hdrs, body = gw.request("OPTIONS", "/echo/1", headers=pre)
    assert st == 204 and body == b""
    assert hdrs["access-control-allow-origin"] == "https://shop.example"
    assert hdrs["access-control-allow-credentials"] == "true"
    assert "PUT" in hdrs["access-control-allow-methods"]
    assert "Authorization" in hdrs["access-control-allow-headers"]
    assert hdrs["access-control-max-age"] == "123"
    assert "Origin" in hdrs["vary"]
    # A preflight needs no token even on an authenticated route.
    st, hdrs, _ = gw.request("OPTIONS", "/secure", headers=pre)
    assert st == 204
    st, hdrs, body = gw.request("OPTIONS", "/echo", headers={**pre, "Origin": "https://evil.example"})
    assert st == 403 and "access-control-allow-origin" not in hdrs
    assert json.loads(body)["error"]["code"] == "forbidden"
    assert inst.count() == n  # preflights never reach the service
    # Actual requests.
    st, hdrs, _ = gw.request("GET", "/echo", headers={"Origin": "http://localhost:3000"})
    assert st == 200 and hdrs["access-control-allow-origin"] == "http://localhost:3000"
    assert hdrs["access-control-allow-credentials"] == "true" and "X-Request-Id" in hdrs["access-control-expose-headers"]
    st, hdrs, _ = gw.request("GET", "/echo", headers={"Origin": "https://evil.example"})
    assert st == 200 and "access-control-allow-origin" not in hdrs and "Origin" in hdrs["vary"]
    # Errors made by the gateway carry CORS too, so a page can read them.
    st, hdrs, _ = gw.request("GET", "/secure", headers={"Origin": "https://shop.example"})
    assert st == 401 and hdrs["access-control-allow-origin"] == "https://shop.example"
    # An OPTIONS that is not a preflight goes to the service.
    st, _, _ = gw.request("OPTIONS", "/echo")
    assert st == 200 and inst.count() == n + 3


# ---- limits ------------------------------------------------------------------------

def test_rate_limit_per_client(nats_server):  # noqa: F811
    rate, burst = 1, 5
    with FakeInstance(nats_server, "limited") as inst, \
            gateway(nats_server, {"/echo": "limited"},
                    limits={"rate_per_client_per_s": rate, "burst": burst, "max_concurrency": 0}) as gw:
        wait_instances(gw, "limited", 1)
        # Requests until the first refusal. The bucket starts full, then
        # refills at `rate` a second: however slow the machine, what passes
        # is at least the burst and at most the burst plus the refill over
        # the time the requests took (timed from before the first).
        t0 = time.monotonic()
        codes = []
        while 429 not in codes and len(codes) < 1000:
            codes.append(gw.request("GET", "/echo")[0])
        took = time.monotonic() - t0
        ok = codes.count(200)
        assert codes[-1] == 429 and set(codes[:-1]) == {200}, codes
        assert burst <= ok <= burst + rate * took + 1, (ok, took)
        st, hdrs, body = gw.request("GET", "/echo")
        if st == 429:
            assert int(hdrs["retry-after"]) >= 1
            assert json.loads(body)["error"]["code"] == "too_many_requests"
        assert metric(gw, "gateway_rate_limited_total") == 1 + (st == 429)
        assert inst.count() == ok + (st == 200)
        # What is tested here is the refill itself: a sleep of a second
        # gives at least one token back, whatever else the machine does.
        time.sleep(1.0 / rate)
        assert gw.request("GET", "/echo")[0] == 200


def test_concurrency_cap_answers_503_at_once(nats_server):  # noqa: F811
    with FakeInstance(nats_server, "slow") as inst, \
            gateway(nats_server, [{"prefix": "/slow", "service": "slow", "timeout_ms": int(WAIT * 1000)}],
                    limits={"rate_per_client_per_s": 0, "max_concurrency": 2}) as gw:
        wait_instances(gw, "slow", 1)
        results = []
        inst.hold.set()  # the two stay in flight until the third is answered

        def call():
            results.append(gw.request("GET", "/slow")[0])

        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        wait_until(lambda: inst.count() == 2, what="two requests at the service")
        # Refused, not queued: no call made for it.
        st, hdrs, body = gw.request("GET", "/slow")
        assert st == 503
        assert json.loads(body)["error"]["code"] == "overloaded" and hdrs["retry-after"] == "1"
        assert inst.count() == 2
        inst.hold.clear()
        for t in threads:
            t.join()
        assert sorted(results) == [200, 200]
        assert metric(gw, "gateway_concurrency_rejected_total") == 1
        # The slots came back.
        assert gw.request("GET", "/slow")[0] == 200


def test_route_timeout_is_504(nats_server):  # noqa: F811
    with FakeInstance(nats_server, "mute", silent) as inst, \
            gateway(nats_server, [{"prefix": "/mute", "service": "mute", "timeout_ms": 300}]) as gw:
        wait_instances(gw, "mute", 1)
        t = time.monotonic()
        st, _, body = gw.request("GET", "/mute")
        took = time.monotonic() - t
        assert st == 504 and json.loads(body)["error"]["code"] == "gateway_timeout"
        # Not before the route's timeout (its timer starts after the request
        # arrived, so after t; 10 ms for the clocks' resolution).
        assert took >= 0.3 - 0.01, took
        assert metric(gw, "gateway_upstream_requests_total", service="mute", outcome="timeout") >= 1


def test_the_request_deadline_bounds_a_long_route_timeout(nats_server):  # noqa: F811
    # A route may wait up to 600 s, but REQUEST_TIMEOUT bounds the whole
    # request: the call to the service is made with what is left of it, so
    # the service's timeout is seen now, not after the route's ten minutes.
    route = [{"prefix": "/mute", "service": "mute", "timeout_ms": 600000}]
    with FakeInstance(nats_server, "mute", silent) as inst, \
            gateway(nats_server, route, env={"REQUEST_TIMEOUT": "0.5"}) as gw:
        wait_instances(gw, "mute", 1)
        st, _, body = gw.request("GET", "/mute")
        assert st == 504, body
        # 504 from the gateway or, in the same tick, from the runtime's
        # deadline: either way the call itself timed out, within the bound.
        assert json.loads(body)["error"]["code"] in ("gateway_timeout", "deadline_exceeded")
        wait_until(lambda: metric(gw, "gateway_upstream_requests_total", service="mute", outcome="timeout") >= 1,
                   what="the call to mute timed out at the request's deadline")
        assert inst.count() >= 1


def test_no_instance_is_503_at_once(nats_server):  # noqa: F811
    with gateway(nats_server, {"/ghost": "ghost"}) as gw:
        # At once: the server's no-responders answer, not a wait for the timeout.
        st, hdrs, body = gw.request("GET", "/ghost/1")
        assert st == 503
        assert metric(gw, "gateway_upstream_requests_total", service="ghost", outcome="timeout") == 0
        assert json.loads(body)["error"]["code"] == "unavailable"
        assert "no live instance" in json.loads(body)["error"]["message"] and hdrs["retry-after"] == "1"


# ---- configuration -------------------------------------------------------------------

@pytest.mark.parametrize("doc,needle", [
    ("{not json", "invalid JSON"),
    ('{"routes":[{"prefix":"/a","service":"a","timout_ms":5}]}', 'routes[0]: unknown key "timout_ms"'),
    ('{"routes":[{"prefix":"/a","service":"a.b"}]}', "routes[0].service"),
    ('{"routes":[],"cors":{"origins":["*"]}}', "cors.origins[0]"),
    ('{"routes":[{"prefix":"/loop","service":"gateway"}]}', 'route to "gateway"'),
])
def test_bad_config_stops_the_gateway_with_exit_2(tmp_path, doc, needle):
    path = tmp_path / "gw.json"
    path.write_text(doc)
    env = dict(os.environ, GATEWAY_CONFIG=str(path), NATS_URL="none", PORT="0", HOST="127.0.0.1")
    p = subprocess.run([binary("gateway")], env=env, capture_output=True, timeout=WAIT)
    assert p.returncode == 2, p
    assert needle.encode() in p.stderr and b"GATEWAY_CONFIG" in p.stderr, p.stderr


def test_missing_config_file_exits_2(tmp_path):
    env = dict(os.environ, GATEWAY_CONFIG=str(tmp_path / "none.json"), NATS_URL="none", PORT="0")
    p = subprocess.run([binary("gateway")], env=env, capture_output=True, timeout=WAIT)
    assert p.returncode == 2 and b"none.json" in p.stderr


def test_login_cookie_secure_through_the_gateway(request):
    """The gateway forwards X-Forwarded-Proto as it came and tells auth, in
    Svc-Client, which peer it saw: auth believes the header only from a peer in
    its TRUSTED_PROXIES (a TLS ingress in front of the gateway), so a direct
    client can neither turn Secure on nor off."""
    from test_auth import request_from
    from test_msg_support import NatsServer
    nats = NatsServer()  # its own: no other auth instance may answer
    request.addfinalizer(nats.close)
    env = {"NATS_URL": nats.url}
    with start_auth({**env, "TRUSTED_PROXIES": "127.0.0.2"}) as auth:
        e = {"NATS_URL": nats.url, "AUTH_JWKS_URL": jwks_url(auth)}
        with Service("gateway", env=e) as gw:
            wait_instances(gw, "auth", 1)

            def secure(source, proto):
                name = unique_name()
                creds = {"username": name, "password": "correct-horse"}
                assert request_from(gw, source, "POST", "/auth/register", creds)[0] == 201
                headers = {"X-Forwarded-Proto": proto} if proto else None
                st, hdrs, body = request_from(gw, source, "POST", "/auth/login", creds, headers)
                assert st == 200, body
                return "Secure" in [p.strip() for p in hdrs["set-cookie"].split(";")]

            assert secure("127.0.0.2", "https")        # the trusted ingress says https
            assert not secure("127.0.0.2", None)
            assert not secure("127.0.0.1", "https")    # anyone else is not believed
