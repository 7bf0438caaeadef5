"""HTTP/1.1 message exchange: keep-alive, pipelining, request bodies, HEAD,
HTTP/1.0, Connection: close, Expect: 100-continue, half-close."""
import json
import socket
import time

import pytest

from conftest import WAIT, Service, assert_closed, exchange, read_response, recv_until_closed


@pytest.fixture(scope="module")
def svc():
    with Service("testsvc", env={"HTTP_MAX_BODY_BYTES": "65536"}) as s:
        yield s


def get(path, extra=b""):
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n"


def test_keep_alive_serves_many_requests_on_one_connection(svc):
    s = svc.connect()
    for i in range(20):
        s.sendall(get(f"/items/{i}"))
        status, h, body = read_response(s)
        assert status == 200 and json.loads(body)["id"] == str(i)
        assert "connection" not in h  # HTTP/1.1 default: stays open
    s.close()


def test_pipelined_mixed_requests_answer_in_order(svc):
    s = svc.connect()
    body = b'{"a":1}'
    reqs = [
        get("/items/1"),
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body),
        get("/async?ms=30"),  # finishes later: the next ones must wait for it
        get("/nope"),
        b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        b"HEAD /items/2 HTTP/1.1\r\nHost: t\r\n\r\n",
        get("/slow?ms=20"),  # offloaded
        get("/items/3"),
    ]
    s.sendall(b"".join(reqs))
    got = [read_response(s, head=r.startswith(b"HEAD")) for r in reqs]
    assert [g[0] for g in got] == [200, 200, 200, 404, 200, 200, 200, 200]
    assert json.loads(got[0][2])["id"] == "1"
    assert json.loads(got[1][2]) == {"echo": {"a": 1}}
    assert json.loads(got[2][2]) == {"async": True}
    assert json.loads(got[4][2]) == {"bytes": 5}
    assert got[5][2] == b""
    assert json.loads(got[6][2]) == {"slept_ms": 20}
    assert json.loads(got[7][2])["id"] == "3"
    s.close()


def test_many_pipelined_requests_in_one_write(svc):
    # More than fits the read buffer at once, with responses larger than requests.
    n = 300
    s = svc.connect()
    s.sendall(b"".join(get(f"/items/{i}") for i in range(n)))
    for i in range(n):
        status, _, body = read_response(s)
        assert status == 200 and json.loads(body)["id"] == str(i)
    s.close()


def test_pipelined_large_responses_with_slow_reader(svc):
    # 8 x 512 KiB responses: the server must stop at its output high-water mark
    # and resume as the client reads, never losing or reordering a byte.
    s = svc.connect()
    s.sendall(b"".join(get(f"/big?kb={512 + i}") for i in range(8)))
    time.sleep(0.3)  # the slow reader of the test's name; no outcome depends on how long
    for i in range(8):
        status, _, body = read_response(s)
        assert status == 200 and len(body) == (512 + i) * 1024
    s.close()


def test_content_length_body(svc):
    status, doc = svc.json("POST", "/echo", {"x": [1, 2, 3]})
    assert status == 200 and doc == {"echo": {"x": [1, 2, 3]}}


def test_chunked_body_with_extensions_and_trailers(svc):
    req = (b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"4;ext=1\r\nabcd\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\nX-Trailer: 1\r\n\r\n")
    status, _, body, s = exchange(svc.port, req)
    assert status == 200 and json.loads(body) == {"bytes": 30}
    # and the connection is still usable
    s.sendall(get("/items/9"))
    assert read_response(s)[0] == 200
    s.close()


def test_what_the_strict_framing_still_accepts(svc):
    # RFC 9112 7.1.1 allows whitespace before a chunk extension's ";" (BWS),
    # and quoted extension values; leading zeros in a size are still hex.
    s = svc.connect()
    for chunks, n in ((b"3 ;a=b\r\nabc\r\n0\r\n\r\n", 3),
                      (b"3 ; a = \"q;\\\"x\"\r\nabc\r\n0;last\r\n\r\n", 3),
                      (b"0003\r\nabc\r\n00\r\nX-T: v\r\nX-U:\r\n\r\n", 3)):
        s.sendall(b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
        status, _, body = read_response(s)
        assert status == 200 and json.loads(body) == {"bytes": n}, (chunks, body)
    # Whitespace after a field's colon and at the end of its value is fine.
    s.sendall(b"GET /items/8 HTTP/1.1\r\nHost:t\r\nUser-Agent: \t spaced \t\r\n\r\n")
    status, _, body = read_response(s)
    assert status == 200 and json.loads(body)["agent"] == "spaced"
    s.close()


def test_large_trailers_leave_the_headers_intact(svc):
    # Trailers arrive after the header section has been indexed; they must not
    # move the memory the indexed headers point into (a use-after-free, once).
    trailers = b"".join(b"X-T%d: %s\r\n" % (i, b"v" * 200) for i in range(60))
    req = (b"POST /raw HTTP/1.1\r\nHost: t\r\nX-Request-Id: keep-me-1\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n" + trailers + b"\r\n")
    status, headers, body, s = exchange(svc.port, req)
    assert status == 200 and json.loads(body) == {"bytes": 4}
    assert headers["x-request-id"] == "keep-me-1"
    s.sendall(get("/items/9"))
    assert read_response(s)[0] == 200
    s.close()


def test_empty_bodies(svc):
    status, _, body, s = exchange(svc.port, b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
    assert status == 200 and json.loads(body) == {"bytes": 0}
    s.sendall(b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    status, _, body = read_response(s)
    assert status == 200 and json.loads(body) == {"bytes": 0}
    s.close()


def test_head_has_no_body_and_the_get_content_length(svc):
    status, h, body = svc.request("GET", "/items/77")
    s = svc.connect()
    s.sendall(b"HEAD /items/77 HTTP/1.1\r\nHost: t\r\n\r\n" + get("/items/1"))
    hstatus, hh, hbody = read_response(s, head=True)
    assert hstatus == 200 and hbody == b""
    assert hh["content-length"] == h["content-length"] == str(len(body))
    assert hh["content-type"] == "application/json"
    # The next response starts right after the HEAD's header section.
    status2, _, body2 = read_response(s)
    assert status2 == 200 and json.loads(body2)["id"] == "1"
    s.close()


def test_head_of_a_streamed_response_sends_no_body(svc):
    s = svc.connect()
    s.sendall(b"HEAD /stream?n=3 HTTP/1.1\r\nHost: t\r\n\r\n")
    s.settimeout(WAIT)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200")
    # Responses leave in request order: any chunk of the HEAD's stream would
    # come before the next response.
    s.sendall(get("/items/5"))
    while True:
        rest += s.recv(65536)
        if b"\r\n\r\n" in rest:
            break
    assert rest.startswith(b"HTTP/1.1 200"), rest[:100]
    s.close()


def test_http10_closes_by_default(svc):
    status, h, body, s = exchange(svc.port, b"GET /items/4 HTTP/1.0\r\n\r\n")
    assert status == 200 and json.loads(body)["id"] == "4"
    assert h.get("connection", "").lower() == "close"
    assert_closed(s)
    s.close()


def test_http10_keep_alive_when_asked(svc):
    s = svc.connect()
    for i in range(3):
        s.sendall(b"GET /items/%d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % i)
        status, h, body = read_response(s)
        assert status == 200 and json.loads(body)["id"] == str(i)
        assert h["connection"].lower() == "keep-alive"
    s.sendall(b"GET /items/9 HTTP/1.0\r\n\r\n")
    assert read_response(s)[0] == 200
    assert_closed(s)
    s.close()


def test_http10_stream_is_unchunked_and_closes(svc):
    s = svc.connect()
    s.sendall(b"GET /stream?n=3 HTTP/1.0\r\n\r\n")
    data = recv_until_closed(s)
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding" not in head.lower()
    assert body == b'{"chunk":0}\n{"chunk":1}\n{"chunk":2}\n'
    s.close()


def test_connection_close_is_honoured(svc):
    status, h, _, s = exchange(svc.port, get("/items/1", b"Connection: close\r\n") + get("/items/2"))
    assert status == 200 and h["connection"] == "close"
    assert_closed(s)  # the pipelined second request is not answered
    s.close()


def test_expect_100_continue(svc):
    s = svc.connect()
    body = b'{"k":"v"}'
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
              b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
    status, _, _ = read_response(s)
    assert status == 100
    s.sendall(body)
    status, _, rbody = read_response(s)
    assert status == 200 and json.loads(rbody) == {"echo": {"k": "v"}}
    s.close()


def test_expect_100_continue_chunked(svc):
    s = svc.connect()
    s.sendall(b"POST /raw HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert read_response(s)[0] == 100
    s.sendall(b"2\r\nhi\r\n0\r\n\r\n")
    status, _, rbody = read_response(s)
    assert status == 200 and json.loads(rbody) == {"bytes": 2}
    s.close()


def test_expect_100_continue_over_limit_gets_413_without_100(svc):
    s = svc.connect()
    s.sendall(b"POST /raw HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n")
    status, h, body = read_response(s)
    assert status == 413 and h["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "payload_too_large"
    assert_closed(s)
    s.close()


def test_unknown_expectation_gets_417(svc):
    status, _, body, s = exchange(svc.port, get("/items/1", b"Expect: teapot\r\n"))
    assert status == 417 and json.loads(body)["error"]["code"] == "expectation_failed"
    s.close()


def test_half_close_after_request_still_gets_the_whole_response(svc):
    # A client that shuts down its sending side after the request (as HTTP/1.0
    # tools do) must still receive every byte of a large response.
    for path in ("/big?kb=4096", "/slow?ms=50", "/async?ms=50"):
        s = svc.connect()
        s.sendall(get(path))
        s.shutdown(socket.SHUT_WR)
        data = recv_until_closed(s)
        head, body = data.split(b"\r\n\r\n", 1)
        n = int([ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")][0].split(b":")[1])
        assert head.startswith(b"HTTP/1.1 200") and len(body) == n, (path, len(body), n)
        s.close()


def test_pipelined_then_half_close_answers_everything(svc):
    s = svc.connect()
    s.sendall(b"".join(get(f"/items/{i}") for i in range(5)) + get("/big?kb=2048"))
    s.shutdown(socket.SHUT_WR)
    for i in range(5):
        status, _, body = read_response(s)
        assert status == 200 and json.loads(body)["id"] == str(i)
    status, _, body = read_response(s)
    assert status == 200 and len(body) == 2048 * 1024
    assert_closed(s)
    s.close()


def test_leading_blank_lines_are_ignored(svc):
    status, _, body, s = exchange(svc.port, b"\r\n\r\n" + get("/items/6"))
    assert status == 200 and json.loads(body)["id"] == "6"
    s.close()


def test_response_has_date_and_request_id(svc):
    status, h, _ = svc.request("GET", "/items/1")
    assert status == 200 and h["date"].endswith("GMT") and h["x-request-id"]
