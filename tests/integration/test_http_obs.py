"""Multi-core and offloading (a slow handler never stalls other connections),
and observability: /metrics, bounded label sets, access log, request ids."""
import json
import re
import shutil
import subprocess
import threading
import time

import pytest

from conftest import Service, exchange, read_response, requests_in_flight, wait_until


def test_slow_offloaded_handlers_never_stall_other_connections():
    # Four handlers of 4 s (a sleep: at least that) fill the thread pool;
    # fifty requests served meanwhile, on the loop, prove it is not stalled.
    # How fast they are is bench/'s business.
    slow_s = 4
    with Service("testsvc", env={"WORKERS": "1"}) as svc:
        slow_times = []

        def slow():
            t0 = time.monotonic()
            status, _, _ = svc.request("GET", f"/slow?ms={slow_s * 1000}")
            slow_times.append((status, time.monotonic() - t0))

        threads = [threading.Thread(target=slow) for _ in range(4)]
        for t in threads:
            t.start()
        wait_until(lambda: requests_in_flight(svc) >= 4, what="the four in flight, filling the thread pool")
        s = svc.connect()
        for i in range(50):
            if i % 2:
                s.sendall(b"GET /items/%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
                status, _, body = read_response(s)
            else:
                status, _, body = svc.request("GET", f"/items/{i}")
            assert status == 200 and json.loads(body)["id"] == str(i)
        s.close()
        still_running = any(t.is_alive() for t in threads)
        for t in threads:
            t.join()
        assert still_running, "the slow requests finished before the fast ones: the test proves nothing"
        assert [st for st, _ in slow_times] == [200] * 4
        assert all(d >= slow_s for _, d in slow_times)


def test_workers_share_the_load():
    with Service("testsvc", env={"WORKERS": "2"}) as svc:
        errors = []

        def hammer(k):
            try:
                for i in range(100):
                    status, _, _ = svc.request("GET", f"/items/{k}-{i}")
                    assert status == 200
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=hammer, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        ids = {json.loads(svc.request("GET", "/items/1")[2])["request_id"].split("-")[0] for _ in range(30)}
        assert len(ids) == 2, ids  # request ids carry their worker's prefix: both served


@pytest.fixture(scope="module")
def svc():
    with Service("testsvc") as s:
        yield s


def metric_lines(text, name):
    return [ln for ln in text.splitlines() if ln.startswith(name + "{") or ln.startswith(name + " ")]


def test_metrics_pass_promtool_and_labels_stay_bounded(svc):
    for i in range(1, 201):
        assert svc.request("GET", f"/items/{i}")[0] == 200
    for i in range(100):
        assert svc.request("GET", f"/garbage/{i}/x{i * 7}")[0] == 404
    for target in (b"/items/%zz", b"/..", b"*"):
        _, _, _, s = exchange(svc.port, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        s.close()
    _, _, _, s = exchange(svc.port, b"BAD\x01 / HTTP/1.1\r\n\r\n")
    s.close()
    svc.request("POST", "/echo", {"a": 1})
    svc.request("HEAD", "/items/3")
    status, h, body = svc.request("GET", "/metrics")
    assert status == 200 and h["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    series = metric_lines(text, "http_requests_total")
    assert any('route="/items/:id"' in ln and 'code="200"' in ln and 'method="GET"' in ln for ln in series)
    assert not any("/items/1\"" in ln or "garbage" in ln for ln in series)
    assert len(series) < 20, series
    get_items = [ln for ln in series if 'route="/items/:id"' in ln and 'method="GET"' in ln]
    assert float(get_items[0].split()[-1]) >= 200
    for name in ("http_request_duration_seconds_bucket", "http_requests_in_flight", "http_connections_open",
                 "svckit_build_info", "process_resident_memory_bytes", "process_open_fds",
                 "process_cpu_seconds_total"):
        assert metric_lines(text, name), name
    if not shutil.which("promtool"):
        pytest.skip("promtool not installed")
    r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


def wait_log(svc, pred):
    return wait_until(lambda: [x for x in svc.log_lines() if x.get("msg") == "request" and pred(x)],
                      what="a matching access-log line")


def test_one_json_log_line_per_request(svc):
    marker = "logprobe-1"
    svc.request("GET", "/items/7?x=1", headers={"X-Request-Id": marker})
    lines = wait_log(svc, lambda x: x.get("request_id") == marker)
    assert len(lines) == 1
    ln = lines[0]
    for field in ("time", "level", "service", "method", "route", "status", "duration_ms", "request_id",
                  "trace_id"):
        assert field in ln, field
    assert ln["service"] == "testsvc" and ln["method"] == "GET" and ln["route"] == "/items/:id"
    assert ln["status"] == 200 and ln["level"] == "info" and re.fullmatch(r"[0-9a-f]{32}", ln["trace_id"])
    assert isinstance(ln["duration_ms"], (int, float)) and ln["duration_ms"] >= 0
    # probes are not logged
    before = len([x for x in svc.log_lines() if x.get("msg") == "request"])
    svc.request("GET", "/healthz")
    svc.request("GET", "/items/8", headers={"X-Request-Id": "logprobe-2"})
    wait_log(svc, lambda x: x.get("request_id") == "logprobe-2")
    after = len([x for x in svc.log_lines() if x.get("msg") == "request"])
    assert after == before + 1


def test_unmatched_and_errors_are_logged(svc):
    svc.request("GET", "/nope/x", headers={"X-Request-Id": "logprobe-404"})
    ln = wait_log(svc, lambda x: x.get("request_id") == "logprobe-404")[0]
    assert ln["status"] == 404 and ln["route"] is None
    svc.request("GET", "/forgot", headers={"X-Request-Id": "logprobe-500"})
    ln = wait_log(svc, lambda x: x.get("request_id") == "logprobe-500")[0]
    assert ln["status"] == 500 and ln["level"] == "error"


@pytest.mark.parametrize("rid,kept", [
    ("simple-id_1.2:3", True),
    ("has space", False),
    ("x" * 200, False),
    ("quote\"d", False),
    ("", False),
    ("\u00e9t\u00e9", False),
])
def test_request_id_kept_when_sane(svc, rid, kept):
    status, h, body = svc.request("GET", "/items/1", headers={"X-Request-Id": rid.encode("utf-8")})
    got = json.loads(body)["request_id"]
    assert h["x-request-id"] == got
    if kept:
        assert got == rid
    else:
        assert got != rid and re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]{8,}", got), got


def test_request_id_generated_when_absent_and_unique(svc):
    ids = {json.loads(svc.request("GET", "/items/1")[2])["request_id"] for _ in range(20)}
    assert len(ids) == 20


def test_traceparent_trace_id_is_used(svc):
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    status, _, body = svc.request("GET", "/items/1", headers={
        "traceparent": f"00-{tid}-00f067aa0ba902b7-01", "X-Request-Id": "trace-probe"})
    assert json.loads(body)["trace_id"] == tid
    ln = wait_log(svc, lambda x: x.get("request_id") == "trace-probe")[0]
    assert ln["trace_id"] == tid
    for bad in (f"00-{'0' * 32}-00f067aa0ba902b7-01", f"ff-{tid}-00f067aa0ba902b7-01",
                f"00-{tid.upper()}-00f067aa0ba902b7-01", "00-xyz", f"00_{tid}_00f067aa0ba902b7_01"):
        body = svc.request("GET", "/items/1", headers={"traceparent": bad})[2]
        got = json.loads(body)["trace_id"]
        assert got != tid and re.fullmatch(r"[0-9a-f]{32}", got), bad
