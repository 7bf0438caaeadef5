"""Metric label values from outside are normalised to a fixed set over both
transports (the security review's finding: 3,000 NATS requests with made-up
Svc-Method values grew /metrics from 1,001 lines to 42,080). The method label
is a known method, the matched route's own, or "other"; the route label a
declared template or "unmatched"; the code a status the response writers
accept."""
import re
import socket

from test_msg_support import Nats, msgsvc, nats_server  # noqa: F401

KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "other"}
# Methods http_parser accepts that no route of msgsvc declares.
HTTP_PARSER_METHODS = ["COPY", "LOCK", "MKCOL", "MOVE", "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK", "BIND",
                       "REBIND", "UNBIND", "ACL", "REPORT", "MKACTIVITY", "CHECKOUT", "MERGE", "M-SEARCH",
                       "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PURGE", "MKCALENDAR", "LINK", "UNLINK", "SOURCE",
                       "TRACE", "CONNECT"]


def made_up_method(i):
    """A distinct valid Svc-Method (upper-case letters) per i."""
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(ord("A") + r) + s
    return "X" + s


def metrics_text(svc):
    status, _, body = svc.request("GET", "/metrics")
    assert status == 200
    return body.decode()


def label_values(text, family, label):
    return set(re.findall(rf'^{family}(?:_bucket|_sum|_count)?{{[^}}]*\b{label}="([^"]*)"', text, re.M))


def pipelined(nc, n, subject, headers_of):
    """n requests published back to back, then every reply read: statuses."""
    base = nc.req_seq
    for i in range(n):
        nc.req_seq += 1
        nc.publish(subject, b"", reply=f"{nc.inbox}.{nc.req_seq}", headers=headers_of(i))
    nc.flush()
    statuses = []
    for _ in range(n):
        m = nc.next_msg(timeout=30, subject_prefix=nc.inbox + ".")
        assert int(m.subject.rsplit(".", 1)[1]) > base
        statuses.append(m.svc_status)
    return statuses


def test_made_up_methods_and_paths_over_nats_add_no_series(nats_server):  # noqa: F811
    with msgsvc(nats_server) as svc:
        nc = Nats(nats_server.port)
        try:
            # Every kind of answer once, so the normal series exist before the count.
            pipelined(nc, 4, "svc.msgsvc.http", lambda i: {"Svc-Method": ["GET", "XA", "GET", "XB"][i],
                                                            "Svc-Path": ["/whoami", "/whoami", "/x", "/y"][i]})
            before = metrics_text(svc).count("\n")
            # Made-up methods on a route, made-up paths, both at once, and on
            # a route's own subject (answered 405 there).
            s1 = pipelined(nc, 1500, "svc.msgsvc.http",
                           lambda i: {"Svc-Method": made_up_method(i), "Svc-Path": "/whoami"})
            s2 = pipelined(nc, 1500, "svc.msgsvc.http",
                           lambda i: {"Svc-Method": made_up_method(i), "Svc-Path": f"/made/up/{i}"})
            s3 = pipelined(nc, 500, "svc.msgsvc.GET.whoami", lambda i: {"Svc-Method": made_up_method(i)})
            assert set(s1) == {405} and set(s2) == {404} and set(s3) == {405}
        finally:
            nc.close()
        text = metrics_text(svc)
        after = text.count("\n")
        # One series per family for ("unmatched", "other", 404|405) at most.
        assert after - before <= 60, (before, after)
        for family in ("http_requests_total", "nats_requests_total", "http_request_duration_seconds"):
            assert label_values(text, family, "method") <= KNOWN_METHODS, family
            assert "other" in label_values(text, family, "method"), family
        assert label_values(text, "nats_requests_total", "route") <= {
            "/whoami", "unmatched"}
        assert not re.search(r"^svckit_metric_series_overflow_total\{", text, re.M)


def raw_request(port, method, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        return int(data.split(b" ", 2)[1])
    finally:
        s.close()


def test_made_up_paths_and_every_parser_method_over_http_add_no_series():
    with msgsvc(None) as svc:
        # Every label value once (a method http_parser knows and no route
        # declares stands for "other"), so the flood below can only reuse them.
        for path in ("/whoami", "/nope"):
            for m in sorted(KNOWN_METHODS - {"other"}) + ["PROPFIND"]:
                raw_request(svc.port, m, path)
        before = metrics_text(svc).count("\n")
        for i in range(1000):
            assert raw_request(svc.port, "GET", f"/made/up/{i}") == 404
        for m in HTTP_PARSER_METHODS:
            for path in ("/whoami", f"/made/{m}"):
                assert raw_request(svc.port, m, path) in (400, 404, 405)
        text = metrics_text(svc)
        after = text.count("\n")
        assert after - before <= 60, (before, after)
        assert label_values(text, "http_requests_total", "method") <= KNOWN_METHODS
        assert label_values(text, "http_request_duration_seconds", "method") <= KNOWN_METHODS
        assert label_values(text, "http_requests_total", "route") <= {"/whoami", "unmatched", "/metrics", "/readyz"}


def test_known_methods_keep_their_label(nats_server):  # noqa: F811
    with msgsvc(nats_server) as svc:
        assert svc.request("DELETE", "/whoami")[0] == 405
        assert svc.request("GET", "/whoami")[0] == 200
        text = metrics_text(svc)
        assert 'route="/whoami",method="GET",code="200"' in text
        assert 'route="unmatched",method="DELETE",code="405"' in text
