"""Graceful shutdown on SIGTERM, and start-up configuration."""
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import Service, assert_closed, binary, read_response


def test_readyz_503_at_once_and_connections_accepted_during_drain_delay():
    svc = Service("testsvc", env={"DRAIN_DELAY": "1", "SHUTDOWN_TIMEOUT": "5"})
    try:
        idle = svc.connect()
        idle.sendall(b"GET /items/1 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(idle)[0] == 200
        t0 = time.monotonic()
        svc.signal(signal.SIGTERM)
        deadline = t0 + 0.5
        while True:  # the signal is handled within milliseconds
            status, _, body = svc.request("GET", "/readyz")
            if status == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert status == 503 and json.loads(body)["status"] == "unavailable"
        # during the delay: new connections work, /healthz still 200
        assert svc.request("GET", "/healthz")[0] == 200
        assert svc.request("GET", "/items/2")[0] == 200
        assert time.monotonic() - t0 < 0.9
        # the idle keep-alive connection is closed cleanly after the delay
        assert_closed(idle, timeout=3)
        assert time.monotonic() - t0 >= 0.9
        idle.close()
        assert svc.proc.wait(5) == 0
        # and then nothing listens
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", svc.port), timeout=1).close()
    finally:
        svc.stop()


def test_in_flight_requests_finish():
    svc = Service("testsvc", env={"SHUTDOWN_TIMEOUT": "5"})
    try:
        results = {}

        def call(name, path):
            results[name] = svc.request("GET", path, timeout=10)

        threads = [threading.Thread(target=call, args=("slow", "/slow?ms=800")),
                   threading.Thread(target=call, args=("async", "/async?ms=600")),
                   threading.Thread(target=call, args=("stream", "/stream?n=400"))]
        for t in threads:
            t.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        svc.signal(signal.SIGTERM)
        for t in threads:
            t.join()
        assert results["slow"][0] == 200 and json.loads(results["slow"][2]) == {"slept_ms": 800}
        assert results["slow"][1]["connection"] == "close"
        assert results["async"][0] == 200
        assert results["stream"][0] == 200 and len(results["stream"][2].splitlines()) == 400
        assert svc.proc.wait(5) == 0
        assert time.monotonic() - t0 < 2
    finally:
        svc.stop()


def test_partially_received_request_is_still_answered():
    svc = Service("testsvc", env={"SHUTDOWN_TIMEOUT": "5"})
    try:
        s = svc.connect()
        s.sendall(b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nabc")
        time.sleep(0.1)
        svc.signal(signal.SIGTERM)
        time.sleep(0.2)
        s.sendall(b"def")
        status, h, body = read_response(s)
        assert status == 200 and json.loads(body) == {"bytes": 6} and h["connection"] == "close"
        assert_closed(s)
        s.close()
        assert svc.proc.wait(5) == 0
    finally:
        svc.stop()


def test_no_reset_under_load():
    svc = Service("testsvc", env={"WORKERS": "2", "DRAIN_DELAY": "0.3", "SHUTDOWN_TIMEOUT": "5"})
    stop = threading.Event()
    stats = {"ok": 0, "clean_close": 0, "refused": 0}
    errors = []
    lock = threading.Lock()

    def hammer(k):
        s = None
        while not stop.is_set():
            try:
                if s is None:
                    s = svc.connect(timeout=5)
                s.sendall(b"GET /items/%d HTTP/1.1\r\nHost: t\r\n\r\n" % k)
            except ConnectionRefusedError:
                with lock:
                    stats["refused"] += 1
                return
            except (BrokenPipeError, ConnectionResetError) as e:
                # Our request could not be sent: the server closed between
                # requests. Fine, unless it was a reset after a response started.
                with lock:
                    stats["clean_close"] += 1
                s.close()
                s = None
                continue
            try:
                status, h, body = read_response(s)
            except ConnectionError as e:
                if isinstance(e, ConnectionResetError):
                    errors.append(f"reset while waiting for a response: {e}")
                    return
                with lock:
                    stats["clean_close"] += 1  # closed before any byte of a response
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
            if h.get("connection") == "close":
                s.close()
                s = None
        if s:
            s.close()

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(6)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        svc.signal(signal.SIGTERM)
        code = svc.proc.wait(8)
        stop.set()
        for t in threads:
            t.join(10)
        assert not errors, errors
        assert stats["ok"] > 50, stats
        assert code == 0
    finally:
        stop.set()
        svc.stop()


def test_second_sigterm_forces_exit():
    svc = Service("testsvc", env={"SHUTDOWN_TIMEOUT": "30"}, check_exit=False)
    try:
        s = svc.connect()
        s.sendall(b"GET /async?ms=20000 HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.1)
        svc.signal(signal.SIGTERM)
        time.sleep(0.3)
        assert svc.proc.poll() is None  # still draining
        t0 = time.monotonic()
        svc.signal(signal.SIGTERM)
        code = svc.proc.wait(5)
        assert code != 0 and time.monotonic() - t0 < 2
        s.close()
    finally:
        svc.stop()


def test_handler_outliving_shutdown_timeout():
    svc = Service("testsvc", env={"SHUTDOWN_TIMEOUT": "1"}, check_exit=False)
    try:
        s = svc.connect()
        s.sendall(b"GET /slow?ms=10000 HTTP/1.1\r\nHost: t\r\n\r\n")  # stuck on the thread pool
        time.sleep(0.2)
        t0 = time.monotonic()
        svc.signal(signal.SIGTERM)
        svc.proc.wait(5)
        assert time.monotonic() - t0 < 1 + 1.5
        s.close()
    finally:
        svc.stop()


def test_async_handler_outliving_shutdown_timeout():
    svc = Service("testsvc", env={"SHUTDOWN_TIMEOUT": "0.5"}, check_exit=False)
    try:
        s = svc.connect()
        s.sendall(b"GET /async?ms=20000 HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.1)
        t0 = time.monotonic()
        svc.signal(signal.SIGTERM)
        svc.proc.wait(5)
        assert time.monotonic() - t0 < 0.5 + 1.5
        s.close()
    finally:
        svc.stop()


def run_bin(args=(), env=None, timeout=10):
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
        s.sendall(b"GET / HTTP/1.1\r\n")
        t0 = time.monotonic()
        assert read_response(s, timeout=3)[0] == 408
        assert time.monotonic() - t0 < 0.8
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
