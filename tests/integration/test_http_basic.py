"""Smoke tests of the core: routing, JSON, errors, built-in endpoints."""
import json

from conftest import read_response


def test_healthz_and_readyz(testsvc):
    assert testsvc.json("GET", "/healthz") == (200, {"status": "ok"})
    status, doc = testsvc.json("GET", "/readyz")
    assert status == 200 and doc["status"] == "ready"


def test_param_route_and_static_wins(testsvc):
    status, doc = testsvc.json("GET", "/items/42")
    assert status == 200 and doc["route"] == "/items/:id" and doc["id"] == "42"
    status, doc = testsvc.json("GET", "/items/special")
    assert status == 200 and doc["route"] == "/items/special" and doc["id"] is None


def test_pipelined_requests_answer_in_order(testsvc):
    s = testsvc.connect()
    reqs = b"".join(b"GET /items/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(10))
    s.sendall(reqs)
    for i in range(10):
        status, _, body = read_response(s)
        assert status == 200
        assert json.loads(body)["id"] == str(i)
    s.close()
