"""Limits and timeouts: each a named constant with an environment override."""
import json
import resource
import socket
import time

import pytest

from conftest import WAIT, Service, assert_closed, exchange, read_response, recv_until_closed, wait_until

# Short timeouts, for the tests of the timeouts only: elsewhere a loaded
# machine could take that long between two pieces of one request.
HEADER_S, BODY_S, IDLE_S = 0.4, 0.4, 0.5
TIMEOUTS = {"HTTP_HEADER_TIMEOUT": str(HEADER_S), "HTTP_BODY_TIMEOUT": str(BODY_S), "HTTP_IDLE_TIMEOUT": str(IDLE_S)}
# A timer never fires before its time; 10 ms for the clocks' resolution.
EARLY = 0.01


@pytest.fixture(scope="module")
def svc():
    with Service("testsvc") as s:
        yield s


@pytest.fixture(scope="module")
def fast():
    with Service("testsvc", env=TIMEOUTS) as s:
        yield s


def expect_error(svc, data, status, code):
    got, h, body, s = exchange(svc.port, data)
    try:
        assert got == status, (got, body)
        assert h["connection"] == "close" and json.loads(body)["error"]["code"] == code
        assert_closed(s)
    finally:
        s.close()


def test_long_url_gets_414(svc):
    expect_error(svc, b"GET /items/" + b"9" * (16 * 1024) + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "uri_too_long")


def test_url_just_under_the_limit_is_served(svc):
    # request line + headers fit in 16 KiB
    path = b"/items/" + b"9" * (16 * 1024 - 200)
    status, _, body, s = exchange(svc.port, b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 200 and json.loads(body)["path"] == path.decode()
    s.close()


def test_big_headers_get_431(svc):
    hdrs = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1000) for i in range(17))
    expect_error(svc, b"GET /items/1 HTTP/1.1\r\nHost: t\r\n" + hdrs + b"\r\n", 431, "headers_too_large")


def test_big_headers_in_small_pieces_get_431(svc):
    s = svc.connect()
    s.sendall(b"GET /items/1 HTTP/1.1\r\nHost: t\r\n")
    try:
        for i in range(40):
            s.sendall(b"X-H%d: %s\r\n" % (i, b"v" * 500))
            time.sleep(0.002)  # pieces that arrive apart (what is tested); no timing depends on it
    except OSError:
        pass
    status, h, body = read_response(s)
    assert status == 431 and h["connection"] == "close"
    s.close()


def test_more_than_100_headers_get_431(svc):
    ok = b"".join(b"X-H%d: v\r\n" % i for i in range(99))
    status, _, _, s = exchange(svc.port, b"GET /items/1 HTTP/1.1\r\nHost: t\r\n" + ok + b"\r\n")
    assert status == 200  # exactly 100 with Host
    s.close()
    expect_error(svc, b"GET /items/1 HTTP/1.1\r\nHost: t\r\n" + ok + b"X-Last: v\r\n\r\n", 431,
                 "headers_too_large")


def test_big_body_gets_413_before_it_is_sent(svc):
    s = svc.connect()
    s.sendall(b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (1024 * 1024 + 1))
    status, h, body = read_response(s)  # no body sent at all: waiting for it would end in a 408
    assert status == 413 and h["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "payload_too_large"
    assert_closed(s)
    s.close()


def test_body_at_the_limit_is_accepted(svc):
    n = 1024 * 1024
    status, _, body, s = exchange(svc.port, b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % n
                                  + b"x" * n)
    assert status == 200 and json.loads(body) == {"bytes": n}
    s.close()


def test_chunked_body_over_the_limit_gets_413(svc):
    s = svc.connect()
    s.sendall(b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b"y" * 0x10000 + b"\r\n"
    try:
        for _ in range(17):  # 17 x 64 KiB > 1 MiB
            s.sendall(chunk)
    except OSError:
        pass
    status, h, _ = read_response(s)
    assert status == 413 and h["connection"] == "close"
    s.close()


# The timeouts: each one fires (a read bounded by conftest.WAIT would fail
# otherwise), never before its time: the client's clock starts before it
# sends, the server's timer after the bytes arrived. How late is no concern
# of a test.

def test_header_timeout_gets_408_and_close(fast):
    s = fast.connect()
    t0 = time.monotonic()
    s.sendall(b"GET /items/1 HTTP/1.1\r\nHost: t\r\n")  # never finished
    status, h, body = read_response(s)
    assert status == 408 and h["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert time.monotonic() - t0 >= HEADER_S - EARLY
    assert_closed(s)
    s.close()


def test_slowloris_cannot_extend_the_header_timeout(fast):
    # A field line every 50 ms: were each to extend the timeout, no 408
    # would come before the header section's 16 KiB limit, minutes away.
    s = fast.connect()
    s.sendall(b"GET /items/1 HTTP/1.1\r\n")
    t0 = time.monotonic()
    got = b""
    s.settimeout(0.05)
    while time.monotonic() - t0 < WAIT:
        try:
            s.sendall(b"X: y\r\n")
        except OSError:
            break
        try:
            b = s.recv(4096)
            if not b:
                break
            got += b
            if b"\r\n\r\n" in got:
                break
        except socket.timeout:
            pass
    assert got.startswith(b"HTTP/1.1 408"), got[:80]
    s.close()


def test_body_timeout_gets_408_and_close(fast):
    s = fast.connect()
    t0 = time.monotonic()
    s.sendall(b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
    status, h, body = read_response(s)
    assert status == 408 and h["connection"] == "close"
    assert "body" in json.loads(body)["error"]["message"]
    assert time.monotonic() - t0 >= BODY_S - EARLY
    assert_closed(s)
    s.close()


def test_idle_keep_alive_connection_is_closed(fast):
    s = fast.connect()
    t0 = time.monotonic()
    s.sendall(b"GET /items/1 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(s)[0] == 200
    assert_closed(s)
    assert time.monotonic() - t0 >= IDLE_S - EARLY
    s.close()


def test_fresh_silent_connection_is_closed(fast):
    t0 = time.monotonic()
    s = fast.connect()
    assert recv_until_closed(s) == b""
    assert time.monotonic() - t0 >= HEADER_S - EARLY
    s.close()


def test_a_slow_handler_is_not_a_timeout(fast):
    # Timeouts cover the client's sending and idling, not our handling.
    status, doc = fast.json("GET", "/slow?ms=900")
    assert status == 200 and doc == {"slept_ms": 900}


def test_a_slow_reader_is_not_cut_by_the_idle_timeout():
    # A response still being delivered is not idleness: reading 8 MiB at 2
    # MiB/s takes 4 s (at least: the reader sleeps for it), over
    # HTTP_IDLE_TIMEOUT, and it must arrive whole. The idle timeout is 3 s:
    # only a reader that stops reading that long is cut.
    size, rate = 8192 * 1024, 2 * 1024 * 1024
    with Service("testsvc", env={"HTTP_IDLE_TIMEOUT": "3"}) as svc:
        s = svc.connect()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.sendall(b"GET /big?kb=8192 HTTP/1.1\r\nHost: t\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        head, first = head.split(b"\r\n\r\n", 1)
        got = len(first)
        while got < size:
            b = s.recv(65536)
            if not b:
                break
            got += len(b)
            time.sleep(len(b) / rate)
        assert got == size
        s.close()


def test_limits_are_configurable():
    env = {"HTTP_MAX_HEADER_BYTES": "2048", "HTTP_MAX_HEADERS": "10", "HTTP_MAX_BODY_BYTES": "100"}
    with Service("testsvc", env=env) as svc:
        expect_error(svc, b"GET /items/" + b"1" * 2100 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "uri_too_long")
        expect_error(svc, b"GET /items/1 HTTP/1.1\r\nHost: t\r\nX: " + b"v" * 2100 + b"\r\n\r\n", 431,
                     "headers_too_large")
        hdrs = b"".join(b"X-%d: v\r\n" % i for i in range(10))
        expect_error(svc, b"GET /items/1 HTTP/1.1\r\nHost: t\r\n" + hdrs + b"\r\n", 431, "headers_too_large")
        expect_error(svc, b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n", 413,
                     "payload_too_large")
        status, _, body, s = exchange(svc.port, b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n"
                                      + b"z" * 100)
        assert status == 200 and json.loads(body) == {"bytes": 100}
        s.close()


def test_header_limit_above_the_parsers_own():
    # http_parser stops at 80 KiB by itself; a larger configured limit holds.
    with Service("testsvc", env={"HTTP_MAX_HEADER_BYTES": "200000"}) as svc:
        big = b"X-Big: " + b"v" * 150000 + b"\r\n"
        status, _, _, s = exchange(svc.port, b"GET /items/1 HTTP/1.1\r\nHost: t\r\n" + big + b"\r\n")
        assert status == 200
        s.close()
        expect_error(svc, b"GET /items/1 HTTP/1.1\r\nHost: t\r\n" + big + big + b"\r\n", 431,
                     "headers_too_large")


def test_connection_cap_answers_503():
    with Service("testsvc", env={"HTTP_MAX_CONNECTIONS": "5"}) as svc:
        # Asked on the first held connection, so as to open no other: until
        # the readiness probes' connections are gone, only it is open.
        first = svc.connect()

        def open_count():
            first.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            status, _, body = read_response(first)
            assert status == 200
            return [float(ln.rsplit(" ", 1)[1]) for ln in body.decode().splitlines()
                    if ln.startswith("http_connections_open")][0]
        wait_until(lambda: open_count() == 1, what="only the first connection open")
        held = [first] + [svc.connect() for _ in range(4)]
        for s in held:  # make sure all five are accepted and counted
            s.sendall(b"GET /items/1 HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(s)[0] == 200
        for _ in range(3):
            extra = svc.connect()
            extra.sendall(b"GET /items/1 HTTP/1.1\r\nHost: t\r\n\r\n")
            status, h, body = read_response(extra)
            assert status == 503 and h["connection"] == "close" and h["retry-after"] == "1"
            assert h["x-content-type-options"] == "nosniff"
            assert json.loads(body)["error"]["code"] == "unavailable"
            assert_closed(extra)
            extra.close()
        # the held ones still work, and a slot frees up when one closes
        held[0].sendall(b"GET /items/2 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(held[0])[0] == 200
        held.pop().close()

        def one_served():
            s = svc.connect()
            try:
                s.sendall(b"GET /items/3 HTTP/1.1\r\nHost: t\r\n\r\n")
                return read_response(s)[0] == 200
            finally:
                s.close()
        wait_until(one_served, what="a slot freed by the close")
        for s in held:
            s.close()
        # Rejected connections linger briefly and still count.
        metrics = wait_until(lambda: (lambda r: r[0] == 200 and r[2])(svc.request("GET", "/metrics")),
                             what="/metrics with a slot free").decode()
        assert any(ln.startswith("http_connections_rejected_total") and not ln.endswith(" 0")
                   for ln in metrics.splitlines())


def test_1500_concurrent_connections():
    n = 1500
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 500
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        # The child inherits the raised limit.
        with Service("testsvc") as svc:
            socks = []
            for i in range(n):
                socks.append(svc.connect())
            for i, s in enumerate(socks):
                s.sendall(b"GET /items/%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
            for i, s in enumerate(socks):
                status, _, body = read_response(s)
                assert status == 200 and json.loads(body)["id"] == str(i)
            # all still open and usable
            for i, s in enumerate(socks[::50]):
                s.sendall(b"GET /items/x%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
                assert read_response(s)[0] == 200
            metrics = svc.request("GET", "/metrics")[2].decode()
            open_line = [ln for ln in metrics.splitlines() if ln.startswith("http_connections_open{")][0]
            assert float(open_line.split()[-1]) >= n
            for s in socks:
                s.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
