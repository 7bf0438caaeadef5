"""NATS request-reply: one handler, two transports, identical behaviour; the
RPC client (deadline, no-responders); discovery; and hostile messages."""
import json
import time

import jwt
import pytest

from conftest import wait_until
from test_msg_support import JWT_SECRET, Nats, metric, msgsvc, nats_server  # noqa: F401

SVC_ETIMEDOUT, SVC_EAGAIN = -7, -9


@pytest.fixture(scope="module")
def svc(nats_server):  # noqa: F811
    with msgsvc(nats_server) as s:
        yield s


@pytest.fixture
def nc(nats_server):  # noqa: F811
    c = Nats(nats_server.port)
    yield c
    c.close()


def token(**over):
    now = int(time.time())
    claims = {"iss": "svckit-auth", "aud": "svckit", "sub": "7", "iat": now, "exp": now + 600,
              "jti": "j1", "name": "Ann", "role": "user"}
    claims.update(over)
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


# (method, path with query, body, extra headers)
CASES = [
    ("GET", "/hello/bob?q=x%20y", b"", {}),
    ("GET", "/hello/%C3%A9t%C3%A9", b"", {}),
    ("GET", "/hello/a.b*c", b"", {}),
    ("GET", "/hello/bob", b"", {"Cookie": "c=crumb; d=2"}),
    ("HEAD", "/hello/bob", b"", {}),
    ("GET", "/files/a/b/c", b"", {}),
    ("POST", "/echo", b'{"a":[1,2,{"b":null}]}', {"Content-Type": "application/json"}),
    ("POST", "/echo", b'{"a":', {"Content-Type": "application/json"}),
    ("POST", "/echo", b'{"a":1}', {"Content-Type": "text/plain"}),
    ("POST", "/raw", b"x" * 70000, {}),
    ("GET", "/nope", b"", {}),
    ("DELETE", "/hello/bob", b"", {}),
    ("GET", "/status/418", b"", {}),
    ("GET", "/status/503", b"", {}),
    ("GET", "/private", b"", {}),
    ("GET", "/private", b"", {"Authorization": "Bearer not-a-token"}),
]


@pytest.mark.parametrize("method,target,body,headers", CASES)
def test_same_answer_over_http_and_nats(svc, nc, method, target, body, headers):
    hs, hh, hb = svc.request(method, target, body=body or None, headers=headers)
    path, _, query = target.partition("?")
    m = nc.svc("msgsvc", method, path, query=query or None, body=body, headers=headers)
    assert m.svc_status == hs, (m.headers, m.data)
    assert m.data == hb
    if hb:
        assert m.header("Content-Type") == hh.get("content-type")
    if "x-test" in hh:
        assert m.header("X-Test") == hh["x-test"]
    assert m.header("Svc-Instance")
    assert m.header("X-Request-Id")


def test_route_subjects_and_instance_subject(svc, nc):
    m = nc.request("svc.msgsvc.GET.hello.{name}", headers={"Svc-Path": "/hello/ann", "Svc-Query": "q=1"})
    assert m.svc_status == 200 and m.json()["hello"] == "ann" and m.json()["q"] == "1"
    # A route without parameters needs no Svc-Path at all.
    m = nc.request("svc.msgsvc.GET.whoami")
    assert m.svc_status == 200
    inst = m.json()["instance"]
    assert len(inst) == 22 and inst.isalnum()
    m = nc.request(f"svc.msgsvc.{inst}.http", headers={"Svc-Method": "GET", "Svc-Path": "/whoami"})
    assert m.svc_status == 200 and m.json()["instance"] == inst
    m = nc.request("svc.msgsvc.GET.files.{*rest}", headers={"Svc-Path": "/files/x/y"})
    assert m.svc_status == 200 and m.json()["path"] == "/files/x/y"
    # A subject serves its own route only.
    m = nc.request("svc.msgsvc.GET.hello.{name}", headers={"Svc-Path": "/whoami"})
    assert m.svc_status == 400
    assert m.json()["error"]["message"] == "Svc-Path does not match the route of this subject"
    m = nc.request("svc.msgsvc.GET.hello.{name}", headers={"Svc-Path": "/hello/x", "Svc-Method": "POST"})
    assert m.svc_status == 405
    m = nc.request("svc.msgsvc.POST.echo", b'{"k":2}', headers={"Content-Type": "application/json"})
    assert m.svc_status == 200 and m.json() == {"echo": {"k": 2}}


def test_auth_over_nats_same_as_http(svc, nc):
    good = {"Authorization": f"Bearer {token()}"}
    assert svc.request("GET", "/private", headers=good)[0] == 200
    m = nc.svc("msgsvc", "GET", "/private", headers=good)
    assert m.svc_status == 200 and m.json() == {"private": True}
    m = nc.request("svc.msgsvc.GET.private", headers=good)
    assert m.svc_status == 200
    m = nc.request("svc.msgsvc.GET.private")
    assert m.svc_status == 401
    expired = {"Authorization": f"Bearer {token(exp=int(time.time()) - 100, iat=int(time.time()) - 1000)}"}
    assert nc.svc("msgsvc", "GET", "/private", headers=expired).svc_status == 401
    m = nc.svc("msgsvc", "GET", "/private", headers={"Cookie": f"token={token()}"})
    assert m.svc_status == 200


def test_request_id_trace_and_client_travel(svc, nc):
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    m = nc.svc("msgsvc", "GET", "/whoami", headers={"X-Request-Id": "req-42", "traceparent": tp,
                                                   "Svc-Client": "10.1.2.3"})
    doc = m.json()
    assert doc["request_id"] == "req-42" and m.header("X-Request-Id") == "req-42"
    assert doc["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert doc["peer"] == "10.1.2.3"
    # A Svc-Client that is not an address is ignored, not logged raw.
    m = nc.svc("msgsvc", "GET", "/whoami", headers={"Svc-Client": 'x"}'})
    assert m.svc_status == 200 and m.json()["peer"] == ""
    log = wait_until(lambda: [l for l in svc.log_lines() if l.get("request_id") == "req-42"], what="access log")
    assert log[-1]["transport"] == "nats" and log[-1]["route"] == "/whoami"


def test_rpc_call_ok_passes_trace_and_auth(svc):
    tp = "00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    st, doc = svc.json("GET", "/call/msgsvc?path=/whoami", headers={"traceparent": tp, "X-Request-Id": "rpc-1"})
    assert st == 200 and doc["err"] == "ok" and doc["status"] == 200, doc
    inner = json.loads(doc["body"])
    assert inner["trace_id"] == "1af7651916cd43dd8448eb211c80319c"
    assert inner["request_id"] == "rpc-1"
    assert inner["peer"] == "127.0.0.1"
    assert doc["instance"] == inner["instance"]
    st, doc = svc.json("GET", "/call/msgsvc?path=/private")
    assert doc["status"] == 401
    st, doc = svc.json("GET", "/call/msgsvc?path=/private&auth=" + token())
    assert doc["status"] == 200
    st, doc = svc.json("POST", "/call/msgsvc?path=/echo&method=POST", body={"x": 1})
    assert doc["status"] == 200 and json.loads(doc["body"]) == {"echo": {"x": 1}}
    assert doc["content_type"] == "application/json"
    st, doc = svc.json("GET", "/call/msgsvc?path=/hello/q&instance=" + "A" * 22)
    assert doc["err"] != "ok"


def test_rpc_no_responders_is_immediate(svc):
    # No responders is an answer (SVC_EAGAIN), not a wait: a call that waited
    # would end at its deadline (SVC_ETIMEDOUT), ten seconds out.
    before = metric(svc, "rpc_calls_total", service="nobody", outcome="no_responders")
    st, doc = svc.json("GET", "/call/nobody?path=/x&timeout=10000")
    assert doc["code"] == SVC_EAGAIN, doc
    assert metric(svc, "rpc_calls_total", service="nobody", outcome="no_responders") == before + 1


def test_rpc_timeout_and_late_reply(svc):
    late_before = metric(svc, "nats_messages_dropped_total", reason="late_reply")
    # A 200 ms deadline; the handler sleeps 2 s (at least), so its reply
    # always comes after the deadline. path=/slow?ms=2000, percent-encoded
    # in our own query string.
    st, doc = svc.json("GET", "/call/msgsvc?timeout=200&path=%2Fslow%3Fms%3D2000")
    assert doc["code"] == SVC_ETIMEDOUT, doc
    # That reply finds no call and is counted.
    wait_until(lambda: metric(svc, "nats_messages_dropped_total", reason="late_reply") > late_before,
               what="the late reply counted")
    assert metric(svc, "rpc_calls_total", service="msgsvc", outcome="timeout") >= 1


def test_discovery(svc, nc):
    inst = nc.request("svc.msgsvc.GET.whoami").json()["instance"]
    def has_mine(replies):
        return any(m.json().get("id") == inst for m in replies if m.data)

    def no_responders(replies):
        return any(m.status == 503 for m in replies)

    for subj in ("$SRV.PING", "$SRV.PING.msgsvc", f"$SRV.PING.msgsvc.{inst}"):
        docs = [m.json() for m in nc.request_all(subj, until=has_mine)]
        mine = [d for d in docs if d["id"] == inst]
        assert len(mine) == 1, (subj, docs)
        d = mine[0]
        assert d["type"] == "io.nats.micro.v1.ping_response"
        assert d["name"] == "msgsvc" and d["version"].count(".") == 2
        assert d["metadata"]["transport"] == "http+nats"
        assert d["metadata"]["http_port"] == str(svc.port)
    # Nobody else answers: the server says at once that no one listens.
    assert [m for m in nc.request_all("$SRV.PING.other", until=no_responders) if m.status != 503] == []
    assert [m for m in nc.request_all("$SRV.PING.msgsvc.nobody", until=no_responders) if m.status != 503] == []
    info = nc.request_all("$SRV.INFO.msgsvc", until=len)[0].json()
    assert info["type"] == "io.nats.micro.v1.info_response" and info["description"]
    eps = {e["subject"]: e for e in info["endpoints"]}
    e = eps["svc.msgsvc.GET.hello.{name}"]
    assert e["queue_group"] == "msgsvc" and e["metadata"] == {"method": "GET", "path": "/hello/:name"}
    assert "svc.msgsvc.http" in eps and f"svc.msgsvc.{inst}.http" in eps
    names = [e["name"] for e in info["endpoints"]]
    assert len(names) == len(set(names))
    assert all(n and all(c.isalnum() or c in "_-" for c in n) for n in names)
    # STATS counts requests per route, from both transports.
    nc.svc("msgsvc", "GET", "/hello/stats")
    svc.request("GET", "/hello/stats")
    svc.request("GET", "/status/500")
    stats = nc.request_all(f"$SRV.STATS.msgsvc.{inst}", until=len)[0].json()
    assert stats["type"] == "io.nats.micro.v1.stats_response"
    assert stats["started"].endswith("Z") and "T" in stats["started"]
    se = {e["subject"]: e for e in stats["endpoints"]}
    h = se["svc.msgsvc.GET.hello.{name}"]
    assert h["num_requests"] >= 2 and h["data"]["nats_requests"] >= 1
    assert h["processing_time"] > 0 and h["average_processing_time"] > 0
    for k in ("num_requests", "num_errors", "last_error", "processing_time", "average_processing_time"):
        assert k in h
    s5 = se["svc.msgsvc.GET.status.{code}"]
    assert s5["num_errors"] >= 1 and s5["last_error"].startswith("500")
    assert se["svc.msgsvc.http"]["num_requests"] >= 1


def test_malformed_requests_rejected_and_service_keeps_serving(svc, nc):
    bad = [
        ({"Svc-Method": "GET"}, 400),                                    # no Svc-Path
        ({"Svc-Path": "/hello/x"}, 400),                                 # no Svc-Method on .http
        ({"Svc-Method": "GET", "Svc-Path": "hello"}, 400),
        ({"Svc-Method": "GET", "Svc-Path": "/hello/../whoami"}, 400),
        ({"Svc-Method": "GET", "Svc-Path": "/hello/%2e%2E/whoami"}, 400),
        ({"Svc-Method": "GET", "Svc-Path": "/hello/a%2Fb"}, 400),
        ({"Svc-Method": "GET", "Svc-Path": "/hello/a%00b"}, 400),
        ({"Svc-Method": "GET", "Svc-Path": "/hello//x"}, 400),
        ({"Svc-Method": "GET", "Svc-Path": "/hello/a b"}, 400),
        ({"Svc-Method": "GET", "Svc-Path": "/hello/%zz"}, 400),
        ({"Svc-Method": "GET", "Svc-Path": "/hello/x?q=1"}, 400),
        ({"Svc-Method": "get", "Svc-Path": "/hello/x"}, 400),
        ({"Svc-Method": "GET", "Svc-Path": "/hello/x", "Svc-Query": "a b"}, 400),
        ({"Svc-Method": "GET", "Svc-Path": "/hello/x", "svc-path": "/whoami"}, 400),
        ({"Svc-Method": "GET", "Svc-Path": "/hello/\u00e9"}, 400),
    ]
    for headers, status in bad:
        m = nc.request("svc.msgsvc.http", headers=headers)
        assert m.svc_status == status, (headers, m.data)
        assert m.json()["error"]["code"]
    # Too many headers, too large a header section.
    many = [("Svc-Method", "GET"), ("Svc-Path", "/hello/x")] + [(f"X-H{i}", "v") for i in range(120)]
    assert nc.request("svc.msgsvc.http", headers=many).svc_status == 431
    assert nc.svc("msgsvc", "GET", "/hello/x", headers={"X-Big": "v" * 20000}).svc_status == 431
    # A 2 MB payload (the test server allows 4 MB) is refused with 413.
    m = nc.svc("msgsvc", "POST", "/raw", body=b"z" * (2 * 1024 * 1024))
    assert m.svc_status == 413
    # No headers at all, garbage payload.
    m = nc.request("svc.msgsvc.http", b"\x00\xff garbage")
    assert m.svc_status == 400
    # Deadline already passed: dropped, counted.
    before = metric(svc, "nats_messages_dropped_total", reason="expired")
    nc.publish("svc.msgsvc.http", reply=nc.inbox + ".expired",
               headers={"Svc-Method": "GET", "Svc-Path": "/whoami", "Svc-Deadline": "1000"})
    # No reply subject: dropped, counted, logged.
    nr_before = metric(svc, "nats_messages_dropped_total", reason="no_reply")
    nc.publish("svc.msgsvc.http", headers={"Svc-Method": "GET", "Svc-Path": "/whoami"})
    nc.publish("svc.msgsvc.GET.whoami", b"")
    nc.flush()
    wait_until(lambda: metric(svc, "nats_messages_dropped_total", reason="no_reply") >= nr_before + 2 and
               metric(svc, "nats_messages_dropped_total", reason="expired") >= before + 1, what="drops counted")
    wait_until(lambda: any("without a reply subject" in l.get("msg", "") for l in svc.log_lines()),
               what="drop log")
    # Still serving, both ways.
    assert nc.svc("msgsvc", "GET", "/hello/after").svc_status == 200
    assert svc.request("GET", "/hello/after")[0] == 200


def test_subjects_with_wildcards_or_dots_cannot_be_injected(svc, nc):
    # Path parameters never reach a subject: the route subject is fixed, and
    # dots or wildcards in the concrete path are just bytes of a header.
    m = nc.request("svc.msgsvc.GET.hello.{name}", headers={"Svc-Path": "/hello/a.*.%3E"})
    assert m.svc_status == 200 and m.json()["hello"] == "a.*.>"
    # Publishing on a subject with wildcards is refused.
    st, _, _ = svc.request("POST", "/publish?subject=ev.*&n=1", body=b"x")
    assert st == 400
    st, _, _ = svc.request("POST", "/publish?subject=ev..x&n=1", body=b"x")
    assert st == 400
    st, _, _ = svc.request("POST", "/publish?subject=ev.a%20b&n=1", body=b"x")
    assert st == 400
