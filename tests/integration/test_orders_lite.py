"""The worked example (examples/orders-lite, docs/api.md): validate a body, ask
products over NATS whether the product exists, insert into SQLite off the
loop, publish orders.created, answer 201."""
import json

import pytest

from conftest import Service, wait_until
from services_fixtures import claims, sign_hs256
from test_msg_support import Nats, nats_server  # noqa: F401

SECRET = b"orders-lite-test-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def system(nats_server):  # noqa: F811
    env = {"NATS_URL": nats_server.url, "JWT_SECRET": SECRET.decode()}
    with Service("products", env=env) as products, Service("orders-lite", env=env) as orders:
        yield products, orders


def user_token(sub="42"):
    return sign_hs256(SECRET, claims(sub=sub, role="user", name="ann"))


def post(orders, body, token=None, raw=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    return orders.request("POST", "/orders", body=raw if raw is not None else json.dumps(body).encode(),
                          headers=headers)


def test_an_order_for_a_product_that_exists(system, nats_server):  # noqa: F811
    _, orders = system
    nc = Nats(nats_server.port)
    try:
        nc.subscribe("orders.created")
        nc.flush()
        # products may still be announcing itself on NATS
        wait_until(lambda: post(orders, {"product_id": 1, "quantity": 1}, user_token())[0] == 201,
                   what="orders-lite reaches products")
        nc.next_msg()  # the event of that first order
        status, h, body = post(orders, {"product_id": 3, "quantity": 2}, user_token("7"))
        assert status == 201, body
        doc = json.loads(body)
        assert doc["product_id"] == 3 and doc["quantity"] == 2 and doc["user_id"] == "7"
        assert h["location"] == f"/orders/{doc['id']}"
        ev = nc.next_msg()
        assert ev.subject == "orders.created" and json.loads(ev.data) == doc
    finally:
        nc.close()


def test_an_unknown_product_is_422(system):
    _, orders = system
    status, _, body = post(orders, {"product_id": 999999, "quantity": 1}, user_token())
    assert status == 422 and json.loads(body)["error"]["code"] == "unknown_product"


@pytest.mark.parametrize("body", [
    {"product_id": 1}, {"product_id": 0, "quantity": 1}, {"product_id": 1, "quantity": 1001},
    {"product_id": "1", "quantity": 1}, {"product_id": 1, "quantity": 1, "extra": True}, [1, 2],
])
def test_an_invalid_body_is_400(system, body):
    _, orders = system
    status, _, resp = post(orders, body, user_token())
    assert status == 400 and json.loads(resp)["error"]["code"] == "bad_request"


def test_a_caller_without_a_token_is_401(system):
    _, orders = system
    assert post(orders, {"product_id": 1, "quantity": 1})[0] == 401
