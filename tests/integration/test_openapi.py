"""Declared routes: GET /openapi.json (OpenAPI 3.1, made from the routes and
their declarations, svckit/schema.h) and the 400s the library answers for
them, with every problem in details.

The document is validated by tests/openapi/validate.mjs
(@apidevtools/swagger-parser, installed into tests/openapi/node_modules with
`npm ci` on first use). That it lists every route the router has and nothing
else is checked against the router itself: every documented operation is
OPTIONS on every documented path (the router's answer) allows exactly the
documented methods, and the paths are exactly those the service registers.
"""
import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import Service, binary, node_validator, wait_until
from services_fixtures import ADMIN_PASS, ADMIN_USER, bearer, claims, login, running_system, sign_hs256, start_auth
from shop_support import gateway_config
from test_msg_support import nats_server  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / "tests" / "openapi"
BUILTIN = {"/healthz": {"get"}, "/readyz": {"get"}, "/metrics": {"get"}, "/openapi.json": {"get"}}
ROUTES = {
    "auth": {"/auth/register": {"post"}, "/auth/login": {"post"}, "/auth/me": {"get"},
             "/.well-known/jwks.json": {"get"}},
    "products": {"/products": {"get", "post"}, "/products/add": {"post"}, "/products/search": {"get"},
                 "/products/categories": {"get"}, "/products/category-list": {"get"},
                 "/products/category/{name}": {"get"}, "/products/{id}": {"get", "put", "patch", "delete"}},
    "orders": {"/orders": {"get", "post"}, "/orders/{id}": {"get"}},
    "payments": {"/payments": {"get"}},
}
SECRET = "openapi-test-secret-0123456789abcdef-0123"
SAMPLE = {"id": "1", "name": "beauty"}


@pytest.fixture(scope="module")
def system():
    with running_system() as (auth, products):
        yield {"auth": auth, "products": products, "admin": bearer(login(auth, ADMIN_USER, ADMIN_PASS))}


@pytest.fixture(scope="module")
def shop(nats_server, tmp_path_factory):  # noqa: F811
    """The five services and the gateway on NATS."""
    env = {"NATS_URL": nats_server.url, "JWT_SECRET": SECRET}
    conf = gateway_config(str(tmp_path_factory.mktemp("gateway")))
    with start_auth(env) as auth, Service("products", env=env) as products, Service("orders", env=env) as orders, \
            Service("payments", env=env) as payments, \
            Service("gateway", env={**env, "GATEWAY_CONFIG": conf}) as gateway:
        yield {"auth": auth, "products": products, "orders": orders, "payments": payments, "gateway": gateway}


@pytest.fixture(scope="module")
def validate():
    return node_validator(str(VALIDATOR), "@apidevtools/swagger-parser/package.json")


def document(svc):
    status, doc = svc.json("GET", "/openapi.json")
    assert status == 200, doc
    return doc


@pytest.mark.parametrize("name", ["auth", "products"])
def test_the_document_is_valid_openapi_3_1(system, validate, tmp_path, name):
    doc = document(system[name])
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] == name
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    r = validate(path)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("name", ["orders", "payments"])
def test_every_service_serves_valid_openapi_3_1(shop, validate, tmp_path, name):
    doc = document(shop[name])
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    r = validate(path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert {p: set(ops) for p, ops in doc["paths"].items()} == {**BUILTIN, **ROUTES[name]}


def test_the_gateway_merges_the_routes_it_exposes(shop, validate, tmp_path):
    """Every route of every service behind the route table's prefixes, and
    nothing else (no service's /healthz, no gateway route), with the bearer
    scheme where the gateway checks tokens. (The table's recommendations,
    a Node.js example, is not started here: test_recommendations.py checks
    its part of the document.)"""
    def complete():
        doc = document(shop["gateway"])
        return doc["x-svckit-unavailable"] == ["recommendations"] and doc
    doc = wait_until(complete, what="every service answers the gateway")
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(doc))
    r = validate(path)
    assert r.returncode == 0, r.stdout + r.stderr
    want = {}
    for name in ("auth", "products", "orders", "payments"):
        want.update(ROUTES[name])
    assert {p: set(ops) for p, ops in doc["paths"].items()} == want
    assert doc["paths"]["/orders"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in doc["paths"]["/auth/login"]["post"]
    assert doc["paths"]["/auth/me"]["get"]["security"] == [{"bearer": []}]  # auth's own declaration
    assert "Error" in doc["components"]["schemas"]
    # Each operation is tagged with the service behind it (the explorer at /docs groups by it).
    assert [t["name"] for t in doc["tags"]] == ["auth", "products", "orders", "payments"]
    for name in ("auth", "products", "orders", "payments"):
        for path, methods in ROUTES[name].items():
            assert all(doc["paths"][path][m]["tags"] == [name] for m in methods), path


def test_the_validator_refuses_a_broken_document(system, validate, tmp_path):
    """The validator is no rubber stamp: a parameter "in" the body (OpenAPI 2's) fails."""
    doc = document(system["products"])
    doc["paths"]["/products/{id}"]["get"]["parameters"][0]["in"] = "body"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(doc))
    assert validate(path).returncode != 0


@pytest.mark.parametrize("name", ["auth", "products"])
def test_the_document_lists_every_route_and_nothing_else(system, name):
    svc = system[name]
    doc = document(svc)
    documented = {p: set(ops) for p, ops in doc["paths"].items()}
    assert documented == {**BUILTIN, **ROUTES[name]}
    templates = {p: re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(p)) + "$") for p in documented}
    for path in documented:
        concrete = re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path)
        # The router allows the methods of every route matching the path
        # ("/products/search" is also a "/products/{id}").
        methods = set().union(*(documented[p] for p, t in templates.items() if t.match(concrete)))
        status, hdrs, _ = svc.request("OPTIONS", concrete)
        allowed = {m.strip().lower() for m in hdrs.get("allow", "").split(",")} - {"head", "options", ""}
        assert allowed == methods, (path, hdrs.get("allow"))


def test_declared_routes_are_documented_with_their_schemas(system):
    doc = document(system["products"])
    post = doc["paths"]["/products"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["title", "category", "price"] and body["additionalProperties"] is False
    assert body["properties"]["title"]["maxLength"] == 200 and body["properties"]["id"]["readOnly"] is True
    assert body["properties"]["category"]["pattern"] == "^[a-z0-9-]+$"
    assert {"201", "400", "401", "403"} <= set(post["responses"]) and post["security"] == [{"bearer": []}]
    params = {p["name"]: p for p in doc["paths"]["/products"]["get"]["parameters"]}
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 0, "maximum": 100}
    # select=title,price, or select=title&select=price (DummyJSON's clients send both).
    assert params["select"]["style"] == "form" and params["select"]["explode"] is True
    assert "security" not in doc["paths"]["/healthz"]["get"]


def test_every_problem_is_listed_by_json_pointer(system):
    status, doc = system["products"].json(
        "POST", "/products", {"title": "", "price": -1, "stock": 1.5, "id": 3, "colour": "red"},
        headers=system["admin"])
    assert status == 400 and doc["error"]["code"] == "bad_request", doc
    got = {(d["in"], d["path"], d["problem"]) for d in doc["error"]["details"]}
    assert got == {
        ("body", "/title", "must be 1 to 200 characters long"),
        ("body", "/price", "must be a number from 0 to 1000000000"),
        ("body", "/stock", "must be an integer"),
        ("body", "/id", "is read-only"),
        ("body", "/colour", "is an unknown field"),
        ("body", "/category", "is required"),
    }
    assert doc["error"]["message"] == "title must be 1 to 200 characters long (and 5 more problems)"


def test_parameters_are_checked_and_repeats_refused(system):
    status, doc = system["products"].json(
        "GET", "/products?limit=101&select=title," + "x" * 65 + "&order=up&skip=1&skip=2", headers=system["admin"])
    assert status == 400, doc
    got = {(d["in"], d["path"], d["problem"]) for d in doc["error"]["details"]}
    assert ("query", "/limit", "must be an integer from 0 to 100") in got
    assert ("query", "/skip", "must not be repeated") in got
    assert ("query", "/order", "must be asc or desc, in any case") in got
    assert ("query", "/select/1", "must be 0 to 64 characters long") in got, got
    status, doc = system["products"].json("GET", "/products/0", headers=system["admin"])
    assert status == 400 and doc["error"]["details"] == [
        {"in": "path", "path": "/id", "problem": "must be at least 1"}], doc
    # A value that does not decode is a problem too (it once crashed the worker).
    for query in ("limit=%zz", "sortBy=%00", "%6cimit=5%"):
        status, doc = system["products"].json("GET", "/products?" + query, headers=system["admin"])
        assert status == 400 and doc["error"]["details"] == [
            {"in": "query", "path": "/" + query[:query.index("=")].replace("%6c", "l"),
             "problem": "has a bad percent-escape or %00"}], doc
    assert system["products"].json("GET", "/products?limit=%32", headers=system["admin"])[0] == 200


def test_details_are_bounded(system):
    body = {f"k{i}": i for i in range(1000)}
    status, doc = system["products"].json("PATCH", "/products/1", body, headers=system["admin"])
    assert status == 400 and len(doc["error"]["details"]) == 16, doc
    assert doc["error"]["message"].endswith("(and more problems)")


def test_numbers_beyond_2_53_are_refused(system):
    status, doc = system["products"].json("PATCH", "/products/1", {"stock": 2 ** 53 + 1}, headers=system["admin"])
    assert status == 400 and doc["error"]["details"][0]["problem"] == "must be an integer from -2^53 to 2^53", doc


def test_payments_needs_one_positive_order_id(shop):
    headers = bearer(sign_hs256(SECRET.encode(), claims(sub="ann", role="user", name="ann")))
    for query, path, problem in [("", "/order_id", "is required"), ("?order_id=0", "/order_id", "must be at least 1"),
                                 ("?order_id=1&order_id=2", "/order_id", "must not be repeated")]:
        status, doc = shop["payments"].json("GET", "/payments" + query, headers=headers)
        assert status == 400 and doc["error"]["details"] == [{"in": "query", "path": path, "problem": problem}], doc
    assert shop["payments"].json("GET", "/payments?order_id=1", headers=headers) == (200, {"payments": []})


def test_an_invalid_declaration_stops_the_start_with_exit_2():
    r = subprocess.run([binary("testsvc")], env={"TESTSVC_BAD_SCHEMA": "1", "NATS_URL": "none", "PORT": "0"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert 'testsvc: route GET /items/:id: path parameter "nope" is not in the pattern' in r.stderr, r.stderr
