"""The router over HTTP: 404/405/OPTIONS/HEAD, path normalisation, query decoding."""
import json

import pytest

from conftest import Service, exchange, read_response


@pytest.fixture(scope="module")
def svc():
    with Service("testsvc") as s:
        yield s


def raw_get(svc, target, method=b"GET"):
    status, h, body, s = exchange(svc.port, method + b" " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    s.close()
    return status, h, body


def test_404_is_json(svc):
    status, h, body = raw_get(svc, b"/no/such/thing")
    assert status == 404 and h["content-type"] == "application/json"
    assert json.loads(body) == {"error": {"code": "not_found", "message": "no such resource"}}


def test_405_lists_allowed_methods(svc):
    status, h, body = raw_get(svc, b"/items/5", b"DELETE")
    assert status == 405 and h["allow"] == "GET, HEAD, PUT, OPTIONS"
    assert json.loads(body)["error"]["code"] == "method_not_allowed"
    status, h, body = raw_get(svc, b"/echo", b"GET")
    assert status == 405 and h["allow"] == "POST, OPTIONS"


def test_head_for_every_get(svc):
    for path in (b"/items/5", b"/items/special", b"/files/a/b", b"/healthz", b"/metrics", b"/big?kb=3"):
        s = svc.connect()
        s.sendall(b"HEAD " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        status, h, body = read_response(s, head=True)
        assert status == 200 and body == b"" and int(h["content-length"]) > 0, path
        s.sendall(b"GET /items/1 HTTP/1.1\r\nHost: t\r\n\r\n")  # nothing stray in between
        assert read_response(s)[0] == 200
        s.close()
    s = svc.connect()
    s.sendall(b"HEAD /echo HTTP/1.1\r\nHost: t\r\n\r\n")
    status, h, _ = read_response(s, head=True)
    assert status == 405 and h["allow"] == "POST, OPTIONS"
    s.close()


def test_options(svc):
    status, h, body = raw_get(svc, b"/items/5", b"OPTIONS")
    assert status == 204 and h["allow"] == "GET, HEAD, PUT, OPTIONS" and body == b""
    assert "content-length" not in h
    status, h, body = raw_get(svc, b"/echo", b"OPTIONS")
    assert status == 204 and h["allow"] == "POST, OPTIONS"
    status, h, body = raw_get(svc, b"/nothing/here", b"OPTIONS")
    assert status == 404


@pytest.mark.parametrize("target,route,path,ident", [
    (b"/items/../items/5", "/items/:id", "/items/5", "5"),
    (b"/items/./7", "/items/:id", "/items/7", "7"),
    (b"//items//7", "/items/:id", "/items/7", "7"),
    (b"/items/%2e%2e/items/8", "/items/:id", "/items/8", "8"),
    (b"/items/%2E%2E/items/%38", "/items/:id", "/items/8", "8"),
    (b"/files/a/../b", "/files/*rest", "/files/b", None),
    (b"/items/a%20b", "/items/:id", "/items/a b", "a b"),
    (b"/items/special", "/items/special", "/items/special", None),
    (b"/items/%73pecial", "/items/special", "/items/special", None),
    (b"/x/../items/9", "/items/:id", "/items/9", "9"),
])
def test_normalised_paths_route(svc, target, route, path, ident):
    status, _, body = raw_get(svc, target)
    doc = json.loads(body)
    assert status == 200 and doc["route"] == route and doc["path"] == path and doc["id"] == ident


@pytest.mark.parametrize("target", [
    b"/files/..%2f..%2fetc", b"/files/%2fetc", b"/files/%2F", b"/../items/1", b"/items/%2e%2e/%2e%2e/x",
    b"/items/%", b"/items/%4", b"/items/%g0", b"/items/%00", b"/items/%0a",
])
def test_paths_that_must_not_route(svc, target):
    status, _, body = raw_get(svc, target)
    assert status == 400, (target, body)
    assert json.loads(body)["error"]["code"] == "bad_request"


def test_catch_all_parameter(svc):
    status, doc = svc.json("GET", "/files/a/b%20c/d")
    assert status == 200 and doc["rest"] == "a/b c/d"
    status, doc = svc.json("GET", "/files/")
    assert status == 200 and doc["rest"] == ""
    assert svc.json("GET", "/files")[0] == 404


def test_trailing_slash_is_significant(svc):
    assert svc.json("GET", "/items/5/")[0] == 404
    assert svc.json("GET", "/items/")[0] == 404


def test_query_percent_decoding(svc):
    status, doc = svc.json("GET", "/items/1?q=a%20b+c%26d&x=1")
    assert status == 200 and doc["q"] == "a b c&d"
    status, doc = svc.json("GET", "/items/1?x=1&q=")
    assert doc["q"] == ""
    status, doc = svc.json("GET", "/items/1?%71=named")  # encoded key
    assert doc["q"] == "named"
    status, doc = svc.json("GET", "/items/1?q=%zz")  # bad escape: absent
    assert status == 200 and doc["q"] is None
    status, doc = svc.json("GET", "/items/1?q=%00")
    assert status == 200 and doc["q"] is None
    status, doc = svc.json("GET", "/items/1?q=caf%C3%A9")
    assert doc["q"] == "café"


def test_static_beats_param_and_methods_are_separate(svc):
    assert svc.json("GET", "/items/special")[1]["route"] == "/items/special"
    status, doc = svc.json("PUT", "/items/special", {"a": 1})
    assert status == 200 and doc["route"] == "/items/:id" and doc["id"] == "special"
