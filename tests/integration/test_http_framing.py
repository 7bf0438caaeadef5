"""RFC 9112 framing and hostile input: every malformed request gets the right
4xx with a JSON body and "Connection: close", then the connection closes (or,
where not even a response makes sense, just closes); the worker goes on serving
everyone else, which a parallel keep-alive connection checks after each case."""
import json
import os
import random
import socket

import pytest

from conftest import WAIT, Service, assert_closed, exchange, read_response, recv_until_closed


@pytest.fixture(scope="module")
def svc():
    with Service("testsvc") as s:
        yield s


@pytest.fixture(scope="module")
def bystander(svc):
    """A keep-alive connection that must keep working whatever the others send."""
    s = svc.connect()
    yield s
    s.close()


def still_serving(svc, bystander):
    bystander.sendall(b"GET /items/42 HTTP/1.1\r\nHost: t\r\n\r\n")
    status, _, body = read_response(bystander)
    assert status == 200 and json.loads(body)["id"] == "42"
    assert svc.request("GET", "/healthz")[0] == 200


def rejected(svc, data, status, code="bad_request"):
    got, h, body, s = exchange(svc.port, data)
    try:
        assert got == status, (data[:80], got, body)
        assert h.get("connection") == "close"
        assert h.get("content-type") == "application/json"
        assert json.loads(body)["error"]["code"] == code
        assert_closed(s)
    finally:
        s.close()
    return json.loads(body)["error"]["message"]


H = b"Host: t\r\n"

BAD_REQUESTS = {
    "cl_and_te": b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_and_cl": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "cl_list_same": b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 1,1\r\n\r\nx",
    "cl_twice_same": b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    "cl_twice_differ": b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
    "cl_negative": b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
    "cl_plus": b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: +1\r\n\r\nx",
    "cl_hex": b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 0x1\r\n\r\nx",
    "cl_letters": b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
    "cl_huge": b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    "cl_space_inside": b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 1 2\r\n\r\nx",
    "bad_chunk_size": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "chunk_size_overflow": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nabc\r\n",
    "chunk_no_crlf": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n",
    "te_not_chunked_last": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
    "te_in_http10": b"POST /raw HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_twice": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "obs_fold": b"GET /items/1 HTTP/1.1\r\nHost: t\r\nX-A: one\r\n two\r\n\r\n",
    "obs_fold_tab": b"GET /items/1 HTTP/1.1\r\nHost: t\r\nX-A: one\r\n\ttwo\r\n\r\n",
    "bare_cr_value": b"GET /items/1 HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n",
    "bare_cr_line_end": b"GET /items/1 HTTP/1.1\rHost: t\r\n\r\n",
    "bare_cr_end": b"GET /items/1 HTTP/1.1\r\nHost: t\r\n\r\r\n",
    "no_host": b"GET /items/1 HTTP/1.1\r\nX-A: b\r\n\r\n",
    "two_hosts": b"GET /items/1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "two_hosts_case": b"GET /items/1 HTTP/1.1\r\nHost: a\r\nhOST: a\r\n\r\n",
    "space_before_colon": b"GET /items/1 HTTP/1.1\r\nHost : t\r\n\r\n",
    "nul_in_value": b"GET /items/1 HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
    "nul_in_name": b"GET /items/1 HTTP/1.1\r\nHost: t\r\nX\x00A: ab\r\n\r\n",
    "nul_in_target": b"GET /items/\x001 HTTP/1.1\r\nHost: t\r\n\r\n",
    "nul_in_method": b"G\x00T /items/1 HTTP/1.1\r\nHost: t\r\n\r\n",
    "lower_method": b"get /items/1 HTTP/1.1\r\nHost: t\r\n\r\n",
    "unknown_method": b"FROB /items/1 HTTP/1.1\r\nHost: t\r\n\r\n",
    "bad_version": b"GET /items/1 HTTP/1.x\r\nHost: t\r\n\r\n",
    "space_in_target": b"GET /items/1 2 HTTP/1.1\r\nHost: t\r\n\r\n",
    "control_in_query": b"GET /items/1?a=\x01 HTTP/1.1\r\nHost: t\r\n\r\n",
    "high_bytes_in_name": b"GET /items/1 HTTP/1.1\r\nHost: t\r\nX-\xff: v\r\n\r\n",
    # RFC 9112 5.1: no whitespace between a field name and its colon. The
    # parser would take "Transfer-Encoding :" as the framing header while the
    # checks above look for the exact name, so every one of them was bypassed.
    "te_space_before_colon": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n"
                             b"3\r\nabc\r\n0\r\n\r\n",
    "te_space_colon_and_cl": b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                             b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "te_space_colon_http10": b"POST /raw HTTP/1.0\r\nTransfer-Encoding : chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "te_space_colon_twice": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                            b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "second_host_space_colon": b"GET /items/1 HTTP/1.1\r\nHost: a\r\nHost : b\r\n\r\n",
    "other_field_space_colon": b"GET /items/1 HTTP/1.1\r\nHost: t\r\nX-A : b\r\n\r\n",
    "tab_before_colon": b"GET /items/1 HTTP/1.1\r\nHost: t\r\nX-A\t: b\r\n\r\n",
    "field_without_colon": b"GET /items/1 HTTP/1.1\r\nHost: t\r\nX-A\r\n\r\n",
    # Bare LF as a line end, anywhere in the head.
    "bare_lf_request_line": b"GET /items/1 HTTP/1.1\nHost: t\r\n\r\n",
    "bare_lf_field": b"GET /items/1 HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n",
    "bare_lf_end": b"GET /items/1 HTTP/1.1\r\nHost: t\r\n\n",
    "bare_lf_everywhere": b"GET /items/1 HTTP/1.1\nHost: t\n\n",
    "bare_lf_before_request": b"\nGET /items/1 HTTP/1.1\r\nHost: t\r\n\r\n",
    # Chunk lines: no whitespace after a size without an extension, no bare
    # LF or CR or other control bytes in extensions, CRLF after the data, and
    # the head's rules in the trailers.
    "chunk_size_trailing_space": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"3 \r\nabc\r\n0\r\n\r\n",
    "chunk_size_trailing_tab": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                               b"3\t\r\nabc\r\n0\r\n\r\n",
    "last_chunk_trailing_space": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"3\r\nabc\r\n0 \r\n\r\n",
    "chunk_ext_bare_lf": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"3;a=b\nabc\r\n0\r\n\r\n",
    "chunk_ext_bare_lf_inside": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                                b"3;a\nb\r\nabc\r\n0\r\n\r\n",
    "chunk_ext_bare_cr": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"3;a\rbc\r\nabc\r\n0\r\n\r\n",
    "chunk_ext_control": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"3;a=\x01\r\nabc\r\n0\r\n\r\n",
    "chunk_ext_too_long": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"3;" + b"a" * 5000 + b"\r\nabc\r\n0\r\n\r\n",
    "chunk_size_bare_lf": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"3\nabc\r\n0\r\n\r\n",
    "chunk_data_bare_lf": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"3\r\nabc\n0\r\n\r\n",
    "chunk_data_bare_cr": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"3\r\nabc\r0\r\n\r\n",
    "trailer_bare_lf": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"3\r\nabc\r\n0\r\nX-T: 1\n\r\n",
    "trailer_end_bare_lf": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"3\r\nabc\r\n0\r\n\n",
    "trailer_obs_fold": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"3\r\nabc\r\n0\r\nX-T: 1\r\n 2\r\n\r\n",
    "trailer_space_before_colon": b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  b"3\r\nabc\r\n0\r\nX-T : 1\r\n\r\n",
    # RFC 9112 3.2: 400 for a Host that is no uri-host[:port] (the review
    # found them all answered 200).
    "host_space": b"GET /items/1 HTTP/1.1\r\nHost: a b\r\n\r\n",
    "host_userinfo": b"GET /items/1 HTTP/1.1\r\nHost: user@t\r\n\r\n",
    "host_path": b"GET /items/1 HTTP/1.1\r\nHost: t/x\r\n\r\n",
    "host_bad_port": b"GET /items/1 HTTP/1.1\r\nHost: t:8a\r\n\r\n",
    "host_open_bracket": b"GET /items/1 HTTP/1.1\r\nHost: [::1\r\n\r\n",
    "host_high_bytes": b"GET /items/1 HTTP/1.1\r\nHost: \xc3\xa9t\xc3\xa9\r\n\r\n",
}


# Well-framed requests whose target is refused: 400, and since the framing is
# intact the connection may go on.
BAD_TARGETS = {
    "star_for_get": b"GET * HTTP/1.1\r\nHost: t\r\n\r\n",
    "authority_form": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "other_scheme": b"GET ftp://t/items/1 HTTP/1.1\r\nHost: t\r\n\r\n",
    "fragment": b"GET /items/1#frag HTTP/1.1\r\nHost: t\r\n\r\n",
    "bad_escape": b"GET /items/%zz HTTP/1.1\r\nHost: t\r\n\r\n",
    "encoded_nul": b"GET /items/%00 HTTP/1.1\r\nHost: t\r\n\r\n",
    "encoded_slash": b"GET /files/..%2f..%2fetc HTTP/1.1\r\nHost: t\r\n\r\n",
    "dotdot_above_root": b"GET /../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_malformed_request_gets_400_and_close(svc, bystander, name):
    rejected(svc, BAD_REQUESTS[name], 400)
    still_serving(svc, bystander)


def bad_target(svc, data):
    status, h, body, s = exchange(svc.port, data)
    try:
        assert status == 400 and h["content-type"] == "application/json"
        assert json.loads(body)["error"]["code"] == "bad_request"
        if h.get("connection") == "close":
            assert_closed(s)
        else:
            s.sendall(b"GET /items/1 HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(s)[0] == 200
    finally:
        s.close()


@pytest.mark.parametrize("host", [b"", b"t", b"t:8080", b"127.0.0.1:1", b"[::1]:80", b"[v1.x]", b"xn--bcher-kva.example",
                                  b"a%20b", b"t:"])
def test_valid_host_values_are_served(svc, host):
    status, _, _, s = exchange(svc.port, b"GET /items/1 HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    s.close()
    assert status == 200, host


@pytest.mark.parametrize("name", sorted(BAD_TARGETS))
def test_bad_target_gets_400(svc, bystander, name):
    bad_target(svc, BAD_TARGETS[name])
    still_serving(svc, bystander)


def test_http09_request_line_gets_505(svc, bystander):
    rejected(svc, b"GET /items/1\r\nHost: t\r\n\r\n", 505, "http_version_not_supported")
    still_serving(svc, bystander)


def test_unsupported_transfer_coding_gets_501(svc, bystander):
    rejected(svc, b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
             501, "not_implemented")
    still_serving(svc, bystander)


def test_http2_preface_and_http2_version_are_refused(svc, bystander):
    for data in (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n",
                 b"GET / HTTP/0.9\r\n\r\n"):
        s = socket.create_connection(("127.0.0.1", svc.port), timeout=WAIT)
        s.sendall(data)
        out = recv_until_closed(s)
        s.close()
        assert out == b"" or out.startswith((b"HTTP/1.1 400", b"HTTP/1.1 505")), out[:80]
    still_serving(svc, bystander)


def test_error_after_a_good_request_on_the_same_connection(svc, bystander):
    s = svc.connect()
    s.sendall(b"GET /items/1 HTTP/1.1\r\nHost: t\r\n\r\nGET /items/2 HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n"
              b"GET /items/3 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(s)[0] == 200
    status, h, _ = read_response(s)
    assert status == 400 and h["connection"] == "close"
    assert_closed(s)
    s.close()
    still_serving(svc, bystander)


def test_absolute_form_target_is_accepted(svc, bystander):
    # RFC 9112 3.2.2: a server MUST accept the absolute-form; the path routes.
    status, _, body, s = exchange(svc.port, b"GET http://t/items/5?q=a HTTP/1.1\r\nHost: t\r\n\r\n")
    doc = json.loads(body)
    assert status == 200 and doc["route"] == "/items/:id" and doc["id"] == "5" and doc["q"] == "a"
    s.sendall(b"GET HTTP://T:80 HTTP/1.1\r\nHost: t\r\n\r\n")
    status, _, body = read_response(s)
    assert status == 404  # path "/"
    s.close()
    bad_target(svc, b"GET http:///items/5 HTTP/1.1\r\nHost: t\r\n\r\n")
    bad_target(svc, b"GET http://t/../x HTTP/1.1\r\nHost: t\r\n\r\n")
    still_serving(svc, bystander)


def test_options_star(svc, bystander):
    status, h, body, s = exchange(svc.port, b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 204 and "GET" in h["allow"] and body == b""
    s.close()


def test_random_garbage_never_hurts_the_worker(svc, bystander):
    rng = random.Random(1234)
    for i in range(60):
        n = rng.choice([1, 3, 17, 200, 5000, 40000])
        data = bytes(rng.getrandbits(8) for _ in range(n))
        if i % 3 == 0:  # garbage after a plausible start
            data = b"GET /items/1 HTTP/1.1\r\n" + data
        s = socket.create_connection(("127.0.0.1", svc.port), timeout=WAIT)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            out = recv_until_closed(s)
        except OSError:
            out = b""
        s.close()
        if out:
            assert out.startswith(b"HTTP/1.1 4"), out[:100]
            head, body = out.split(b"\r\n\r\n", 1)
            assert b"connection: close" in head.lower()
            assert json.loads(body)["error"]["code"]
        if i % 10 == 0:
            still_serving(svc, bystander)
    still_serving(svc, bystander)


def test_huge_header_line_gets_431(svc, bystander):
    rejected(svc, b"GET /items/1 HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n", 431,
             "headers_too_large")
    # and whitespace, which the parser skips, is still counted
    rejected(svc, b"GET /items/1 HTTP/1.1\r\nHost: t\r\nX-Big:" + b" " * 100000 + b"a\r\n\r\n", 431,
             "headers_too_large")
    still_serving(svc, bystander)


def test_huge_request_line_gets_414(svc, bystander):
    rejected(svc, b"GET /items/" + b"1" * 200000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "uri_too_long")
    still_serving(svc, bystander)


def test_many_small_bad_connections_at_once(svc, bystander):
    socks = []
    for i in range(100):
        s = socket.create_connection(("127.0.0.1", svc.port), timeout=WAIT)
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64))  # a TLS hello
        socks.append(s)
    for s in socks:
        out = recv_until_closed(s)
        assert out == b"" or out.startswith(b"HTTP/1.1 400")
        s.close()
    still_serving(svc, bystander)
