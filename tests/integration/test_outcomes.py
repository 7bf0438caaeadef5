"""Explicit outcomes: a handler or hook that breaks its contract (an invalid
outcome, SVC_NEXT from a handler, two answers, SVC_DONE without an answer, an
answer after SVC_NEXT, SVC_ASYNC where it cannot be) gets a 500 JSON error,
one log line naming the route, and a count in svc_contract_errors_total;
the process keeps serving."""
import json
import re

import pytest

from conftest import Service, wait_until

INTERNAL = {"error": {"code": "internal", "message": "internal error"}}


@pytest.fixture(scope="module")
def svc():
    with Service("testsvc") as s:
        yield s


def contract_errors(svc):
    _, _, body = svc.request("GET", "/metrics")
    m = re.search(rb'^svc_contract_errors_total\{service="testsvc"\} (\d+)', body, re.M)
    return int(m.group(1)) if m else 0


CASES = [
    ("/contract/invalid", {}, "GET /contract/:how: handler returned an invalid outcome"),
    ("/contract/next", {}, "GET /contract/:how: handler returned SVC_NEXT"),
    ("/contract/twice", {}, "GET /contract/:how: a response answered twice"),
    ("/contract/status", {}, "GET /contract/:how: an answer with an invalid status"),
    ("/contract-offload/async", {}, "GET /contract-offload/:how: handler returned SVC_ASYNC from the thread pool"),
    ("/forgot", {}, "GET /forgot: handler returned SVC_DONE without a response"),
    ("/items/1", {"X-Hook-Bug": "before:answer-next"}, "GET /items/:id: a hook answered and returned SVC_NEXT"),
    ("/items/1", {"X-Hook-Bug": "before:done-empty"}, "GET /items/:id: a hook returned SVC_DONE without a response"),
    ("/items/1", {"X-Hook-Bug": "before:invalid"}, "GET /items/:id: a hook returned an invalid outcome"),
    ("/items/1", {"X-Hook-Bug": "head:async"}, "GET /items/:id: a head hook returned SVC_ASYNC"),
    ("/items/1", {"X-Hook-Bug": "head:answer-next"}, "GET /items/:id: a hook answered and returned SVC_NEXT"),
    ("/items/1", {"X-Hook-Bug": "before:then"},
     "GET /items/:id: a hook went on in steps (svc_req_then & co are for handlers)"),
]


@pytest.mark.parametrize("path,headers,line", CASES)
def test_a_broken_contract_is_a_500_a_line_and_a_count(svc, path, headers, line):
    before = contract_errors(svc)
    logged = sum(1 for l in svc.log_lines() if l.get("msg") == line)
    status, h, body = svc.request("GET", path, headers=headers)
    assert status == 500 and h["content-type"] == "application/json", (status, body)
    assert json.loads(body) == INTERNAL
    wait_until(lambda: sum(1 for l in svc.log_lines() if l.get("msg") == line) == logged + 1,
               what=f"one log line {line!r}")
    assert contract_errors(svc) == before + 1
    # and the service goes on serving
    status, _, _ = svc.request("GET", "/contract/fine")
    assert status == 204


def test_a_proper_answer_is_no_contract_error(svc):
    before = contract_errors(svc)
    assert svc.request("GET", "/contract/fine")[0] == 204
    assert svc.request("GET", "/items/1", headers={"X-Block": "yes"})[0] == 403
    assert contract_errors(svc) == before
