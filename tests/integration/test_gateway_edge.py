"""The gateway as an edge: its request metrics are labelled by the route of its
table ("/products*", "/auth/*"), never by the raw path nor one "/*path" for
everything; and a plain OPTIONS gets the answer the services give."""
import re

import pytest

from conftest import Service
from services_fixtures import jwks_url, start_auth, start_products
from test_gateway_support import FakeInstance, gateway, metric, nats_server, wait_instances  # noqa: F401


def metrics_text(svc):
    status, _, body = svc.request("GET", "/metrics")
    assert status == 200
    return body.decode()


def test_edge_metrics_are_labelled_by_the_route_of_the_table(nats_server):  # noqa: F811
    routes = [{"prefix": "/products", "service": "products"}, {"prefix": "/auth/", "service": "auth"},
              {"prefix": "/.well-known/", "service": "auth"}]
    with FakeInstance(nats_server, "products") as products, FakeInstance(nats_server, "auth") as auth, \
            gateway(nats_server, routes) as gw:
        wait_instances(gw, "products", 1)
        wait_instances(gw, "auth", 1)
        for i in range(300):  # as many paths as requests: still one series
            assert gw.request("GET", f"/products/{i}")[0] == 200
        assert gw.request("GET", "/products")[0] == 200
        assert gw.request("HEAD", "/products/1")[0] == 200
        assert gw.request("POST", "/auth/login", {"username": "u", "password": "p"})[0] == 200
        assert gw.request("GET", "/.well-known/jwks.json")[0] == 200
        assert gw.request("GET", "/nope")[0] == 404
        assert products.count() == 302 and auth.count() == 2
        text = metrics_text(gw)
        assert metric(gw, "http_requests_total", route="/products*", method="GET", code="200") == 301
        assert metric(gw, "http_requests_total", route="/products*", method="HEAD", code="200") == 1
        assert metric(gw, "http_requests_total", route="/auth/*", method="POST", code="200") == 1
        assert metric(gw, "http_requests_total", route="/.well-known/*", method="GET", code="200") == 1
        assert metric(gw, "http_request_duration_seconds_count", route="/products*", method="GET") == 301
        assert metric(gw, "http_request_duration_seconds_count", route="/auth/*", method="POST") == 1
        # Only a path no route takes keeps the catch-all's template.
        assert metric(gw, "http_requests_total", route="/*path") == 1
        routes_seen = set(re.findall(r'^http_requests_total\{[^}]*route="([^"]*)"', text, re.M))
        assert routes_seen == {"/products*", "/auth/*", "/.well-known/*", "/*path", "/readyz", "/metrics"}


# ---- OPTIONS ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def system(nats_server):  # noqa: F811
    env = {"NATS_URL": nats_server.url}
    with start_auth(env) as auth, start_products(auth, env) as products:
        e = {"NATS_URL": nats_server.url, "AUTH_JWKS_URL": jwks_url(auth), "WORKERS": "2"}
        with Service("gateway", env=e) as gw:
            wait_instances(gw, "auth", 1)
            wait_instances(gw, "products", 1)
            yield auth, products, gw


def options(svc, path):
    status, headers, body = svc.request("OPTIONS", path)
    return status, headers.get("allow"), body


@pytest.mark.parametrize("service,path", [
    ("products", "/products"), ("products", "/products/7"), ("products", "/products/categories"),
    ("products", "/products/category/beauty"), ("products", "/productsX"),
    ("auth", "/auth/login"), ("auth", "/auth/me"), ("auth", "/auth/nope"), ("auth", "/.well-known/jwks.json"),
    ("products", "/healthz"), ("products", "/readyz"), ("products", "/metrics"), ("products", "/nope"),
    ("products", "*"),
])
def test_plain_options_answers_like_the_services(system, service, path):
    auth, products, gw = system
    direct = options(products if service == "products" else auth, path)
    through = options(gw, path)
    # Same status and Allow; the 404's body is the same JSON error.
    assert through == direct, (path, direct, through)
    assert direct[0] in (204, 404)


def test_options_without_a_token_reaches_no_handler(system):
    auth, products, gw = system
    before = metric(products, "http_requests_total", route="/products")
    assert options(gw, "/products")[0] == 204
    # Answered by the service's core, not by a route handler (none declares OPTIONS).
    assert metric(products, "http_requests_total", route="/products") == before
    assert metric(products, "http_requests_total", route="unmatched", method="OPTIONS", code="204") >= 1
