"""Partial reads: a request split at every byte offset, and sent byte by byte,
is parsed exactly as if it had arrived whole."""
import json
import socket
import time

import pytest

from conftest import WAIT, Service, read_response

REQUEST = (b"POST /echo?q=split HTTP/1.1\r\n"
           b"Host: t\r\n"
           b"Content-Type: application/json\r\n"
           b"X-Empty:\r\n"
           b"Cookie: a=1; token=abc\r\n"
           b"Transfer-Encoding: chunked\r\n"
           b"\r\n"
           b"6;name=v\r\n{\"k\": \r\n"
           b"c\r\n[1,2,\"\\r\\n\"]\r\n"
           b"1\r\n}\r\n"
           b"0\r\n"
           b"X-Trailer: t\r\n"
           b"\r\n")
EXPECTED = {"echo": {"k": [1, 2, "\r\n"]}}


@pytest.fixture(scope="module")
def svc():
    with Service("testsvc") as s:
        yield s


# The sleeps below make pieces arrive in separate reads, which is what these
# tests are about; on a slow machine pieces may arrive together and a test
# proves less, but none can fail for it.

def connect(svc):
    s = socket.create_connection(("127.0.0.1", svc.port), timeout=WAIT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def test_whole_request(svc):
    s = connect(svc)
    s.sendall(REQUEST)
    status, _, body = read_response(s)
    assert status == 200 and json.loads(body) == EXPECTED
    s.close()


def test_split_at_every_offset(svc):
    # Several connections at once, each split at its own offset, so that the
    # pause between the pieces is shared and the whole test stays fast.
    offsets = list(range(1, len(REQUEST)))
    batch = 40
    for start in range(0, len(offsets), batch):
        group = offsets[start:start + batch]
        socks = [connect(svc) for _ in group]
        for s, i in zip(socks, group):
            s.sendall(REQUEST[:i])
        time.sleep(0.02)  # the first pieces are read on their own
        for s, i in zip(socks, group):
            s.sendall(REQUEST[i:])
        for s, i in zip(socks, group):
            status, _, body = read_response(s)
            assert status == 200 and json.loads(body) == EXPECTED, (i, REQUEST[:i][-20:], body)
            # the connection is still in a clean state for the next request
            s.sendall(b"GET /items/%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
            status, _, body = read_response(s)
            assert status == 200 and json.loads(body)["id"] == str(i)
            s.close()


def test_split_between_pipelined_requests(svc):
    two = REQUEST + b"GET /items/2?q=x%20y HTTP/1.1\r\nHost: t\r\n\r\n"
    for i in range(len(REQUEST) - 5, len(two)):
        s = connect(svc)
        s.sendall(two[:i])
        time.sleep(0.002)
        s.sendall(two[i:])
        status, _, body = read_response(s)
        assert status == 200 and json.loads(body) == EXPECTED
        status, _, body = read_response(s)
        assert status == 200 and json.loads(body)["q"] == "x y", i
        s.close()


def test_byte_by_byte(svc):
    s = connect(svc)
    for b in REQUEST:
        s.sendall(bytes([b]))
        time.sleep(0.0005)
    status, _, body = read_response(s)
    assert status == 200 and json.loads(body) == EXPECTED
    s.close()


def test_byte_by_byte_content_length(svc):
    body = b'{"x":"' + b"y" * 50 + b'"}'
    req = (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    s = connect(svc)
    for b in req:
        s.sendall(bytes([b]))
        time.sleep(0.0005)
    status, _, rbody = read_response(s)
    assert status == 200 and json.loads(rbody) == {"echo": {"x": "y" * 50}}
    s.close()


def test_malformed_split_is_still_caught(svc):
    # A bare CR and an obs-fold that straddle a read boundary.
    for bad in (b"GET /items/1 HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n",
                b"GET /items/1 HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n"):
        for i in range(len(bad) - 12, len(bad)):
            s = connect(svc)
            s.sendall(bad[:i])
            time.sleep(0.002)
            try:
                s.sendall(bad[i:])
            except OSError:
                pass
            status, h, _ = read_response(s)
            assert status == 400 and h["connection"] == "close", (bad, i)
            s.close()
