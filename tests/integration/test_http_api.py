"""The request/response API as a handler sees it, over real HTTP."""
import json
import time

import pytest

from conftest import Service, exchange, read_response, requests_in_flight, wait_until
from test_msg_support import metric


@pytest.fixture(scope="module")
def svc():
    with Service("testsvc") as s:
        yield s


def test_params_query_headers_cookies(svc):
    status, doc = svc.json("GET", "/items/abc?q=hello+world", headers={
        "User-Agent": "probe/1.0  ", "Cookie": "a=1; token=\"t0k\"; b=2"})
    assert status == 200
    assert doc["id"] == "abc" and doc["q"] == "hello world"
    assert doc["agent"] == "probe/1.0"  # trailing whitespace trimmed
    assert doc["cookie"] == "t0k"
    status, doc = svc.json("GET", "/items/1", headers={"Cookie": "tokenx=1; xtoken=2"})
    assert doc["cookie"] is None


def test_header_lookup_is_case_insensitive_and_first_wins(svc):
    status, _, body, s = exchange(svc.port, b"GET /items/1 HTTP/1.1\r\nHost: t\r\nuSeR-aGeNt: first\r\n"
                                            b"User-Agent: second\r\n\r\n")
    assert json.loads(body)["agent"] == "first"
    s.close()


def test_json_body_round_trip(svc):
    doc = {"s": "caf\u00e9 \u2603", "n": [1, 2.5, -3], "o": {"t": True, "f": False, "z": None}}
    assert svc.json("POST", "/echo", doc) == (200, {"echo": doc})


def test_json_content_type_variants(svc):
    for ct in ("application/json", "application/json; charset=utf-8", "application/problem+json",
               "APPLICATION/JSON"):
        status, _ = svc.json("POST", "/echo", b'{"a":1}', headers={"Content-Type": ct})
        assert status == 200, ct


def test_non_json_content_type_gets_415(svc):
    for ct in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx", "multipart/form-data"):
        status, doc = svc.json("POST", "/echo", b'{"a":1}', headers={"Content-Type": ct})
        assert status == 415 and doc["error"]["code"] == "unsupported_media_type", ct


def test_invalid_json_says_where(svc):
    status, doc = svc.json("POST", "/echo", b'{"a":\n  [1, 2,, 3]}', headers={"Content-Type": "application/json"})
    assert status == 400 and doc["error"]["code"] == "invalid_json"
    msg = doc["error"]["message"]
    assert "line 2" in msg and "column" in msg, msg


def test_json_depth_limit(svc):
    ok = b"[" * 32 + b"]" * 32
    assert svc.json("POST", "/echo", ok, headers={"Content-Type": "application/json"})[0] == 200
    deep = b"[" * 33 + b"]" * 33
    status, doc = svc.json("POST", "/echo", deep, headers={"Content-Type": "application/json"})
    assert status == 400 and "deeper than 32" in doc["error"]["message"], doc
    very = b'{"a":' * 100000 + b"1" + b"}" * 100000
    status, doc = svc.json("POST", "/echo", very, headers={"Content-Type": "application/json"})
    assert status == 400 and "deeper than 32" in doc["error"]["message"]


def test_json_string_and_size_limits(svc):
    big_string = b'{"a":"' + b"x" * (64 * 1024 + 1) + b'"}'
    status, doc = svc.json("POST", "/echo", big_string, headers={"Content-Type": "application/json"})
    assert status == 400 and "string" in doc["error"]["message"], doc
    too_big = b"[" + b"1," * (600 * 1024) + b"1]"
    status, doc = svc.json("POST", "/echo", too_big, headers={"Content-Type": "application/json"})
    assert status == 413 and doc["error"]["code"] == "payload_too_large"


def test_empty_and_trailing_json(svc):
    status, doc = svc.json("POST", "/echo", b"", headers={"Content-Type": "application/json"})
    assert status == 400
    status, doc = svc.json("POST", "/echo", b'{"a":1} x', headers={"Content-Type": "application/json"})
    assert status == 400 and doc["error"]["code"] == "invalid_json"
    status, doc = svc.json("POST", "/echo", b'{"a":1,"a":2}', headers={"Content-Type": "application/json"})
    assert status == 400


def test_stream(svc):
    s = svc.connect()
    s.sendall(b"GET /stream?n=20 HTTP/1.1\r\nHost: t\r\n\r\n")
    status, h, body = read_response(s)
    assert status == 200 and h["transfer-encoding"] == "chunked"
    assert h["content-type"] == "application/x-ndjson"
    lines = body.decode().splitlines()
    assert [json.loads(x)["chunk"] for x in lines] == list(range(20))
    # keep-alive after a stream
    s.sendall(b"GET /items/1 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(s)[0] == 200
    s.close()


def test_response_finished_before_the_handler_returns(svc):
    s = svc.connect()
    s.sendall(b"GET /stream-now HTTP/1.1\r\nHost: t\r\n\r\nGET /finish-now HTTP/1.1\r\nHost: t\r\n\r\n"
              b"HEAD /stream-now HTTP/1.1\r\nHost: t\r\n\r\nGET /items/1 HTTP/1.1\r\nHost: t\r\n\r\n")
    status, _, body = read_response(s)
    assert status == 200 and body == b"one\ntwo\n"
    status, _, body = read_response(s)
    assert status == 200 and json.loads(body) == {"now": True}
    assert read_response(s, head=True)[:1] == (200,)
    assert read_response(s)[0] == 200
    s.close()


def test_async(svc):
    t0 = time.monotonic()
    status, doc = svc.json("GET", "/async?ms=100")
    assert status == 200 and doc == {"async": True}
    assert time.monotonic() - t0 >= 0.09


def test_async_client_gone_before_finish(svc):
    for path in (b"/async?ms=50", b"/stream?n=50", b"/slow?ms=50"):
        s = svc.connect()
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        s.close()
    # Their handlers finish with nobody to answer, and all is still well.
    wait_until(lambda: requests_in_flight(svc) == 0, what="the handlers done")
    assert svc.json("GET", "/items/1")[0] == 200


def test_middleware_runs_before_and_after(svc):
    status, h, _ = svc.request("GET", "/items/1")
    assert status == 200 and h["x-middleware"] == "after"
    status, h, body = svc.request("GET", "/items/1", headers={"X-Block": "yes"})
    assert status == 403 and json.loads(body)["error"]["code"] == "forbidden"
    assert h["x-middleware"] == "after"
    # after-hooks see error responses too
    status, h, _ = svc.request("GET", "/nope")
    assert status == 404 and h["x-middleware"] == "after"


def test_handler_that_writes_nothing_gets_500_json(svc):
    status, h, body = svc.request("GET", "/forgot")
    assert status == 500 and h["content-type"] == "application/json"
    assert json.loads(body) == {"error": {"code": "internal", "message": "internal error"}}


def test_big_response(svc):
    status, h, body = svc.request("GET", "/big?kb=4096")
    assert status == 200 and len(body) == 4096 * 1024 and h["content-type"] == "text/plain"


def test_request_id_is_echoed(svc):
    status, h, body = svc.request("GET", "/items/1", headers={"X-Request-Id": "abc-123"})
    assert h["x-request-id"] == "abc-123" and json.loads(body)["request_id"] == "abc-123"


def test_every_response_says_nosniff(svc):
    # Browsers must take the Content-Type as sent (a JSON error that echoes
    # input is never sniffed as HTML): on answers, errors and framing errors.
    requests = [
        (b"GET /items/1 HTTP/1.1\r\nHost: t\r\n\r\n", 200, False),
        (b"HEAD /items/1 HTTP/1.1\r\nHost: t\r\n\r\n", 200, True),
        (b"GET /stream?n=2 HTTP/1.1\r\nHost: t\r\n\r\n", 200, False),
        (b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", 200, False),
        (b"OPTIONS /items/1 HTTP/1.1\r\nHost: t\r\n\r\n", 204, False),
        (b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n", 404, False),
        (b"DELETE /items/1 HTTP/1.1\r\nHost: t\r\n\r\n", 405, False),
        (b"GET /items/1 HTTP/1.1\r\nHost: t\r\nX-Block: yes\r\n\r\n", 403, False),
        (b"GET /forgot HTTP/1.1\r\nHost: t\r\n\r\n", 500, False),
        (b"GET /items/1 HTTP/1.1\r\nHost : t\r\n\r\n", 400, False),
    ]
    for data, status, head in requests:
        s = svc.connect()
        s.sendall(data)
        got, h, _ = read_response(s, head=head)
        s.close()
        assert got == status and h.get("x-content-type-options") == "nosniff", (data, got, h)


def test_typed_values_route_data_and_no_claims_from_a_hook(svc):
    # A hook hands a value to the handler by a key of its own (set twice: the
    # first is freed); the route's own data reaches its handler; and on a
    # public route nothing a hook does makes svc_req_claims non-NULL: only
    # the auth module can set them.
    status, doc = svc.json("GET", "/value", headers={"X-Value": "from-hook", "Authorization": "Bearer x"})
    assert status == 200
    assert doc == {"value": "from-hook", "claims": False, "route_data": "the /value route's data"}
    status, doc = svc.json("GET", "/value")
    assert doc == {"value": None, "claims": False, "route_data": "the /value route's data"}


def test_async_handler_past_its_deadline_gets_504_and_its_late_answer_is_dropped():
    """A handler that returns SVC_ASYNC and answers late (/async) or never
    (/contract/async): at REQUEST_TIMEOUT the request is answered 504
    deadline_exceeded with one log line and a count, the late answer is
    dropped, and the service serves on (under ASan: no leak, no use after
    free, whether the handler let go of its request or not)."""
    with Service("testsvc", env={"REQUEST_TIMEOUT": "0.3", "LOG_LEVEL": "debug"}) as s:
        before = metric(s, "svc_request_deadline_exceeded_total")
        for path in ("/async?ms=1500", "/contract/async"):
            status, _, body = s.request("GET", path)
            assert status == 504, path
            assert json.loads(body)["error"]["code"] == "deadline_exceeded"
        assert metric(s, "svc_request_deadline_exceeded_total") == before + 2
        lines = [ln for ln in s.log_lines() if "did not answer by the deadline" in ln.get("msg", "")]
        assert len(lines) == 2 and all(ln["level"] == "warn" for ln in lines)
        # The late handler answers into its abandoned request, which it frees.
        wait_until(lambda: any("the handler answers now" in ln.get("msg", "") for ln in s.log_lines()),
                   what="the late answer")
        assert s.json("GET", "/items/1")[0] == 200
        assert requests_in_flight(s) == 0

