"""Composition: a handler that calls other services (svc_req_call), does
blocking work off the loop (svc_req_offload), and answers from a
continuation (svc_req_then), with deadlines, late replies and clients that
go away. composesvc calls itself over NATS, as one service calls another."""
import json
import socket
import struct

import pytest

from conftest import Service, recv_until_closed, wait_until
from test_msg_support import metric, nats_server  # noqa: F401


def composesvc(nats, env=None):
    e = {"NATS_URL": nats.url, "WORKERS": "2"}
    e.update(env or {})
    return Service("composesvc", env=e)


@pytest.fixture(scope="module")
def svc(nats_server):  # noqa: F811
    with composesvc(nats_server) as s:
        wait_until(lambda: s.request("GET", "/parallel")[0] == 200, what="composesvc answers itself over NATS")
        yield s


def test_call_then_offload_then_answer(svc):
    status, doc = svc.json("GET", "/chain")
    assert status == 200, doc
    assert doc["worked"] is True
    assert doc["calls"] == [{"status": 200, "peer": "echo",
                             "body": {"authorization": None, "token_cookie": None, "deadline": True, "n": "1"}}]


def test_two_calls_in_parallel(svc):
    status, doc = svc.json("GET", "/parallel")
    assert status == 200, doc
    assert [c["status"] for c in doc["calls"]] == [200, 200]
    assert doc["calls"][0]["body"] == {"slow": True}
    assert doc["calls"][1]["body"]["n"] == "2"


def test_a_call_from_offloaded_work(svc):
    status, doc = svc.json("GET", "/from-work")
    assert status == 200, doc
    assert doc["worked"] is True and doc["calls"][0]["body"]["n"] == "3"


def test_an_offloaded_handler_calls(svc):
    status, doc = svc.json("GET", "/offloaded")
    assert status == 200, doc
    assert doc["calls"][0]["status"] == 200 and doc["calls"][0]["body"]["n"] == "4"


def test_forward_auth_header_and_cookie(svc):
    status, doc = svc.json("GET", "/forward", headers={"Authorization": "Bearer abc.def.ghi"})
    assert status == 200, doc
    fwd, plain = doc["calls"][0]["body"], doc["calls"][1]["body"]
    assert fwd["authorization"] == "Bearer abc.def.ghi" and fwd["n"] == "5"
    assert plain["authorization"] is None and plain["token_cookie"] is None  # only when asked
    status, doc = svc.json("GET", "/forward", headers={"Cookie": "a=1; token=tok123; b=2"})
    fwd = doc["calls"][0]["body"]
    assert fwd["token_cookie"] == "tok123" and fwd["authorization"] is None


def test_too_many_calls_in_a_step(svc):
    status, doc = svc.json("GET", "/too-many")
    assert status == 200 and doc["last"] == -5  # SVC_ERANGE


def test_a_reply_after_the_request_ended_is_dropped_and_counted(svc):
    before = metric(svc, "svc_calls_dropped_total")
    status, _, _ = svc.request("GET", "/no-wait?ms=200")
    assert status == 202
    wait_until(lambda: metric(svc, "svc_calls_dropped_total") >= before + 1, what="the late reply counted")
    assert svc.request("GET", "/parallel")[0] == 200  # still serving


def test_the_deadline_answers_504(nats_server):  # noqa: F811
    with composesvc(nats_server, {"REQUEST_TIMEOUT": "0.5"}) as s:
        wait_until(lambda: s.request("GET", "/parallel")[0] == 200, what="composesvc answers itself")
        status, _, body = s.request("GET", "/wait?ms=5000")
        assert status == 504, body
        assert json.loads(body)["error"]["code"] in ("deadline_exceeded", "upstream")
        # the callee's reply, long after, is dropped without harm
        assert s.request("GET", "/parallel")[0] == 200


def test_work_past_the_deadline_answers_504_deadline_exceeded(nats_server):  # noqa: F811
    """The request's own deadline, with no call to time out: offloaded work
    that outlasts REQUEST_TIMEOUT ends in 504 deadline_exceeded, counted,
    and its continuation never answers."""
    with composesvc(nats_server, {"REQUEST_TIMEOUT": "0.5"}) as s:
        before = metric(s, "svc_request_deadline_exceeded_total")
        status, _, body = s.request("GET", "/slow-work?ms=2000")
        assert status == 504, body
        assert json.loads(body)["error"]["code"] == "deadline_exceeded"
        assert metric(s, "svc_request_deadline_exceeded_total") == before + 1
        assert s.request("GET", "/slow-work?ms=0")[0] == 200


def test_a_client_that_goes_away_ends_the_chain(svc):
    before = metric(svc, "http_requests_in_flight")
    sock = socket.create_connection(("127.0.0.1", svc.port))
    sock.sendall(b"GET /wait?ms=3000 HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_until(lambda: metric(svc, "http_requests_in_flight") >= before + 2, what="the request in flight")
    # a reset, not a half-close: the client is gone
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    wait_until(lambda: any(l.get("msg") == "GET /wait: the client went away; the chain ends"
                           for l in svc.log_lines()), what="the chain ended")
    assert svc.request("GET", "/chain")[0] == 200


def test_a_client_that_half_closes_while_a_step_waits_ends_the_chain(svc):
    """A FIN while the request waits for its call: the client may be gone
    (TCP cannot tell a half-close from a close), so the chain ends; a client
    that only half-closed still reads the 499, then the close."""
    before = metric(svc, "http_requests_in_flight")
    ended = sum(1 for l in svc.log_lines() if l.get("msg") == "GET /wait: the client went away; the chain ends")
    sock = socket.create_connection(("127.0.0.1", svc.port))
    sock.sendall(b"GET /wait?ms=3000 HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_until(lambda: metric(svc, "http_requests_in_flight") >= before + 2, what="the request in flight")
    sock.shutdown(socket.SHUT_WR)
    data = recv_until_closed(sock)
    sock.close()
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 499"), head
    assert json.loads(body)["error"]["code"] == "client_closed"
    wait_until(lambda: sum(1 for l in svc.log_lines()
                           if l.get("msg") == "GET /wait: the client went away; the chain ends") == ended + 1,
               what="the line that says so")
    assert svc.request("GET", "/chain")[0] == 200
