"""Graceful shutdown on SIGTERM, and start-up configuration."""
import collections
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (WAIT, ClosedEarly, Service, assert_closed, binary, read_response, requests_in_flight,
                      wait_until)


def drain_started(svc):
    return any(ln.get("msg") == "shutdown: no longer accepting connections" for ln in svc.log_lines())


def test_readyz_503_at_once_and_connections_accepted_during_drain_delay():
    delay = 3  # long enough for the three requests below on any machine
    svc = Service("testsvc", env={"DRAIN_DELAY": str(delay), "SHUTDOWN_TIMEOUT": "10"})
    try:
        idle = svc.connect()
        idle.sendall(b"GET /items/1 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(idle)[0] == 200
        t0 = time.monotonic()
        svc.signal(signal.SIGTERM)
        status, _, body = wait_until(lambda: (lambda r: r[0] == 503 and r)(svc.request("GET", "/readyz")),
                                     what="readyz 503")
        assert json.loads(body)["status"] == "unavailable"
        # during the delay: new connections work, /healthz still 200
        assert svc.request("GET", "/healthz")[0] == 200
        assert svc.request("GET", "/items/2")[0] == 200
        assert time.monotonic() - t0 < delay, "the requests above took longer than the drain delay"
        # the idle keep-alive connection is closed cleanly, not before the
        # delay (its timer started after t0)
        assert_closed(idle)
        assert time.monotonic() - t0 >= delay - 0.01
        idle.close()
        assert svc.proc.wait(WAIT) == 0
        # and then nothing listens
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", svc.port), timeout=WAIT).close()
    finally:
        svc.stop()


def test_in_flight_requests_finish():
    svc = Service("testsvc", env={"SHUTDOWN_TIMEOUT": "10"})
    try:
        results = {}

        def call(name, path):
            results[name] = svc.request("GET", path)

        threads = [threading.Thread(target=call, args=("slow", "/slow?ms=800")),
                   threading.Thread(target=call, args=("async", "/async?ms=600")),
                   threading.Thread(target=call, args=("stream", "/stream?n=400"))]
        for t in threads:
            t.start()
        # All three reached the service (the stream may be done already).
        wait_until(lambda: requests_in_flight(svc) + len(results) >= 3, what="the requests in flight")
        svc.signal(signal.SIGTERM)
        for t in threads:
            t.join()
        assert results["slow"][0] == 200 and json.loads(results["slow"][2]) == {"slept_ms": 800}
        assert results["slow"][1]["connection"] == "close"
        assert results["async"][0] == 200
        assert results["stream"][0] == 200 and len(results["stream"][2].splitlines()) == 400
        # 0: drained on its own, not cut at SHUTDOWN_TIMEOUT
        assert svc.proc.wait(WAIT) == 0
    finally:
        svc.stop()


def test_partially_received_request_is_still_answered():
    svc = Service("testsvc", env={"SHUTDOWN_TIMEOUT": "10"})
    try:
        s = svc.connect()
        s.sendall(b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nabc")
        svc.signal(signal.SIGTERM)
        wait_until(lambda: drain_started(svc), what="the drain")
        s.sendall(b"def")
        status, h, body = read_response(s)
        assert status == 200 and json.loads(body) == {"bytes": 6} and h["connection"] == "close"
        assert_closed(s)
        s.close()
        assert svc.proc.wait(WAIT) == 0
    finally:
        svc.stop()


def test_no_reset_under_load():
    """SIGTERM while six clients send requests in a loop on keep-alive
    connections (a new one after each close). A request that reached the
    service gets its answer: every request in its access log was answered to
    a client. Without an answer, a client may only see what is safe to retry
    (RFC 9112 9.3.1), before any byte of a response:
    - EOF on a connection: the service closed it idle, and the request was
      sent as the FIN crossed it (the keep-alive race, on a reused
      connection, or on a new one accepted during the drain), so it never
      reached the service;
    - a refused connection: the service no longer accepts.
    A reset, while sending or while waiting for the response, is a failure,
    and so is a response cut short."""
    svc = Service("testsvc", env={"WORKERS": "2", "DRAIN_DELAY": "0.3", "SHUTDOWN_TIMEOUT": "10"})
    stop = threading.Event()
    stats = collections.Counter()
    errors = []
    lock = threading.Lock()

    def hammer(k):
        s, reused = None, False
        while not stop.is_set():
            try:
                if s is None:
                    s, reused = svc.connect(), False
                s.sendall(b"GET /items/%d HTTP/1.1\r\nHost: t\r\n\r\n" % k)
                status, h, body = read_response(s)
            except ConnectionRefusedError:
                with lock:
                    stats["refused"] += 1
                return
            except ConnectionResetError as e:
                errors.append(f"reset on a {'reused' if reused else 'new'} connection: {e}")
                return
            except ClosedEarly as e:
                if e.received:
                    errors.append(f"response cut short: {e}")
                    return
                with lock:
                    stats["eof_reused" if reused else "eof_new"] += 1
                s.close()
                s = None
                continue
            except Exception as e:  # noqa: BLE001
                errors.append(f"{type(e).__name__}: {e}")
                return
            if status != 200 or json.loads(body)["id"] != str(k):
                errors.append(f"bad response {status} {body[:80]!r}")
                return
            with lock:
                stats["ok"] += 1
            reused = True
            if h.get("connection") == "close":
                s.close()
                s = None
        if s:
            s.close()

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(6)]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: stats["ok"] >= 50, what="load before the SIGTERM")
        svc.signal(signal.SIGTERM)
        code = svc.proc.wait(WAIT)
        stop.set()
        for t in threads:
            t.join(WAIT)
        assert not errors, (errors, stats)
        assert code == 0
        handled = sum(1 for ln in svc.log_lines()
                      if ln.get("msg") == "request" and ln.get("path", "").startswith("/items/"))
        assert handled == stats["ok"], (handled, stats)
    finally:
        stop.set()
        svc.stop()


def test_second_sigterm_forces_exit():
    svc = Service("testsvc", env={"SHUTDOWN_TIMEOUT": "30"}, check_exit=False)
    try:
        s = svc.connect()
        s.sendall(b"GET /async?ms=20000 HTTP/1.1\r\nHost: t\r\n\r\n")
        wait_until(lambda: requests_in_flight(svc) >= 1, what="the request in flight")
        svc.signal(signal.SIGTERM)
        wait_until(lambda: drain_started(svc), what="the drain")
        assert svc.proc.poll() is None  # still draining: the request holds it
        svc.signal(signal.SIGTERM)
        code = svc.proc.wait(WAIT)
        assert code != 0  # forced, long before the request or SHUTDOWN_TIMEOUT would end it
        assert any("second stop request" in ln.get("msg", "") for ln in svc.log_lines())
        s.close()
    finally:
        svc.stop()


@pytest.mark.parametrize("path", ["/slow?ms=10000", "/async?ms=20000"])
def test_handler_outliving_shutdown_timeout(path):
    """A handler stuck on the thread pool (/slow) or an async one that never
    finishes in time: SHUTDOWN_TIMEOUT ends the process all the same."""
    svc = Service("testsvc", env={"SHUTDOWN_TIMEOUT": "0.5"}, check_exit=False)
    try:
        s = svc.connect()
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        wait_until(lambda: requests_in_flight(svc) >= 1, what="the request in flight")
        svc.signal(signal.SIGTERM)
        assert svc.proc.wait(WAIT) != 0
        assert any("SHUTDOWN_TIMEOUT reached" in ln.get("msg", "") for ln in svc.log_lines())
        s.close()
    finally:
        svc.stop()


def run_bin(args=(), env=None, timeout=WAIT):
    e = dict(os.environ)
    e.update({"HOST": "127.0.0.1", "PORT": "0", "WORKERS": "1"})
    e.update(env or {})
    return subprocess.run([binary("testsvc"), *args], env=e, capture_output=True, timeout=timeout)


@pytest.mark.parametrize("var,value", [
    ("PORT", "abc"), ("PORT", "70000"), ("PORT", "-1"), ("LOG_LEVEL", "loud"), ("JWT_SECRET", "short"),
    ("WORKERS", "0"), ("WORKERS", "two"), ("HTTP_HEADER_TIMEOUT", "-1"), ("HTTP_HEADER_TIMEOUT", "0"),
    ("HTTP_BODY_TIMEOUT", "nan"), ("HTTP_IDLE_TIMEOUT", "1e400"), ("HTTP_MAX_BODY_BYTES", "1k"),
    ("HTTP_MAX_HEADERS", "1000"), ("HTTP_MAX_CONNECTIONS", "0"), ("SHUTDOWN_TIMEOUT", "soon"),
    ("HOST", "localhost:80"), ("LOG_FORMAT", "xml"), ("DRAIN_DELAY", "-2"),
])
def test_bad_configuration_exits_2_naming_the_variable(var, value):
    r = run_bin(env={var: value})
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and var in lines[0], lines
    assert r.stdout == b""
    if var == "JWT_SECRET":
        assert value not in lines[0]  # secrets are never echoed


def test_fractional_timeouts_are_accepted():
    with Service("testsvc", env={"HTTP_HEADER_TIMEOUT": "0.25", "HTTP_IDLE_TIMEOUT": "2.5",
                                 "SHUTDOWN_TIMEOUT": "1.5"}) as svc:
        s = svc.connect()
        t0 = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\n")
        assert read_response(s)[0] == 408
        # 0.25 s, not 0 or 1 (its timer starts once the bytes arrived, after t0)
        assert time.monotonic() - t0 >= 0.25 - 0.01
        s.close()


def test_help_lists_the_variables():
    r = run_bin(["--help"])
    assert r.returncode == 0
    out = r.stdout.decode()
    for var in ("PORT", "HOST", "WORKERS", "LOG_LEVEL", "LOG_FORMAT", "SHUTDOWN_TIMEOUT", "DRAIN_DELAY",
                "JWT_SECRET", "HTTP_MAX_HEADER_BYTES", "HTTP_MAX_HEADERS", "HTTP_MAX_BODY_BYTES",
                "HTTP_HEADER_TIMEOUT", "HTTP_BODY_TIMEOUT", "HTTP_IDLE_TIMEOUT", "HTTP_MAX_CONNECTIONS",
                "TESTSVC_NOT_READY"):
        assert var in out, var


def test_version():
    r = run_bin(["--version"])
    assert r.returncode == 0 and r.stdout.decode().startswith("testsvc (svckit ")


def test_unknown_argument_exits_2():
    r = run_bin(["--frobnicate"])
    assert r.returncode == 2 and b"--frobnicate" in r.stderr


def test_port_in_use_fails_at_start():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        r = run_bin(env={"PORT": str(port), "WORKERS": "2"})
        assert r.returncode != 0 and b"cannot listen" in r.stdout + r.stderr
    finally:
        s.close()


def test_a_missing_data_dir_is_created_0700_and_a_file_there_stops_the_service(tmp_path):
    want = tmp_path / "a" / "b"
    with Service("testsvc", env={"DATA_DIR": str(want)}) as s:
        assert s.request("GET", "/healthz")[0] == 200
        assert want.is_dir() and (want.stat().st_mode & 0o777) == 0o700
    blocker = tmp_path / "file"
    blocker.write_text("x")
    e = dict(os.environ, PORT="0", HOST="127.0.0.1", DATA_DIR=str(blocker / "sub"))
    r = subprocess.run([binary("testsvc")], env=e, capture_output=True, timeout=WAIT)
    assert r.returncode == 2
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "DATA_DIR" in lines[0], lines


def test_a_service_that_verifies_tokens_needs_a_jwks_url_or_a_secret(tmp_path):
    # The library knows no auth service: no default JWKS URL.
    e = {k: v for k, v in os.environ.items() if k not in ("AUTH_JWKS_URL", "JWT_SECRET", "SECRET_KEY")}
    e.update(PORT="0", HOST="127.0.0.1", DATA_DIR=str(tmp_path), NATS_URL="none", LOG_FORMAT="text")
    r = subprocess.run([binary("products")], env=e, capture_output=True, timeout=WAIT)
    assert r.returncode == 2, r
    out = (r.stdout + r.stderr).decode()
    lines = [l for l in out.splitlines() if "AUTH_JWKS_URL" in l]
    assert len(lines) == 1 and "JWT_SECRET" in lines[0], out
