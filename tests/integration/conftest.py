"""Shared fixtures for the integration tests.

Every test talks to real processes over real sockets on 127.0.0.1. The binaries
come from $SVCKIT_BUILD (build or build/san; tests/run.sh runs the suite against
both). A service is started with `Service(...)`, which picks a free port, waits
for /readyz (bounded), keeps its log, and stops it by PID.

The machine is slow and shared (tests/README.md): every wait here is for a
condition, bounded by WAIT, which costs time only when something is wrong.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref

import pytest

from ports import free_port  # noqa: F401 (tests import it from conftest)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(ROOT, os.environ.get("SVCKIT_BUILD", "build"))
BIN = os.path.join(BUILD, "bin")
TEST_BIN = os.path.join(BUILD, "tests", "bin")

# The bound of every wait for something that should happen: generous, since a
# loaded machine with sanitizers can be very slow, and it is only reached when
# the thing never happens.
WAIT = 30.0


def wait_until(cond, timeout=WAIT, what="condition", interval=0.02):
    """Polls cond() until it returns something truthy, and returns that. An
    OSError from cond (a process not listening yet) counts as not yet."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except OSError as e:
            last = e
        if time.monotonic() > deadline:
            why = f" (last: {last})" if last else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{why}")
        time.sleep(interval)


# Every process a test starts, so that none outlives the session (see
# pytest_sessionfinish), whatever a failing test left behind.
_processes = []


def track(proc):
    _processes.append(proc)
    return proc


def terminate(proc, sig=signal.SIGTERM, timeout=WAIT):
    """Sends sig to proc if it still runs and waits for its exit; SIGKILL
    after timeout. Returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def pytest_sessionfinish(session, exitstatus):
    for p in _processes:
        if p.poll() is None:
            p.kill()
            p.wait()
    if _pg["server"]:
        _pg["server"].stop()
        shutil.rmtree(_pg["server"].root, ignore_errors=True)


# SVCKIT_TEST_PG=1 (tests/run.sh, with SVCKIT_BUILD=build/pg): every service
# a test starts runs its store on PostgreSQL, one throwaway server for the
# session, a database per DATA_DIR (the same DATA_DIR again, the same data,
# as with SQLite files).
_pg = {"server": None, "dbs": {}}


def pg_psql(url, sql):
    """Runs sql on the PostgreSQL database at url (psql); its output."""
    from pg_support import pg_bindir
    r = subprocess.run([os.path.join(pg_bindir(), "psql"), url, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                       capture_output=True, text=True, timeout=WAIT)
    assert r.returncode == 0, r.stderr
    return r.stdout


def db_rows(svc, db, sql):
    """Rows of sql (read-only) in the store `db` ("products") of a running
    or stopped Service, on whichever backend it ran: its SQLite file, or
    its PostgreSQL schema (values then come back as text)."""
    url = svc.env.get("DATABASE_URL")
    if not url:
        import sqlite3
        con = sqlite3.connect(f"file:{os.path.join(svc.data_dir, db + '.db')}?mode=ro", uri=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    out = pg_psql(url, f"SET search_path TO {db}; {sql}")
    return [tuple(line.split("|")) for line in out.splitlines()[1:]]  # [0]: SET's tag


def pg_database_for(data_dir):
    from pg_support import PgServer
    if not _pg["server"]:
        _pg["server"] = PgServer(tempfile.mkdtemp(prefix="svckit-pg-")).start()
    key = os.path.realpath(data_dir)
    if key not in _pg["dbs"]:
        _pg["dbs"][key] = _pg["server"].database(f"d{len(_pg['dbs'])}")
    return _pg["dbs"][key]


def npm_ci(folder, installed):
    """Installs the npm packages of folder's package-lock.json into its
    node_modules (`npm ci`) unless the file `installed` (a path inside
    node_modules) is there. Returns node's path. make test installs node and
    npm (scripts/deps.sh); without them the test fails."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are required (make test installs them)"
    if not os.path.exists(os.path.join(folder, "node_modules", installed)):
        r = subprocess.run([npm, "ci", "--prefix", str(folder), "--no-audit", "--no-fund"],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"npm ci failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    assert os.path.exists(os.path.join(folder, "node_modules", installed)), f"npm ci did not install {installed}"
    return node


def node_validator(folder, installed):
    """npm_ci(folder, installed), then a function that runs folder's
    validate.mjs on the given files and returns the CompletedProcess."""
    node = npm_ci(folder, installed)

    def run(*files):
        return subprocess.run([node, os.path.join(folder, "validate.mjs"), *map(str, files)],
                              capture_output=True, text=True, timeout=120, cwd=folder)
    return run


def binary(name):
    for d in (BIN, TEST_BIN):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"{name} not built in {BUILD}")


def sanitized(name):
    """Whether binary name is built with ASan, whose allocator replaces
    glibc's (and keeps freed memory in its quarantine): what glibc gives
    back or keeps is not for it to show."""
    with open(binary(name), "rb") as f:
        return b"__asan_init" in f.read()


class Service:
    """A service process on a free port. Use as a context manager or call stop().
    argv_prefix runs it under another command (["prlimit", "--nofile=256"]);
    path: a program built elsewhere than $SVCKIT_BUILD (default binary(name))."""

    def __init__(self, name, env=None, port=None, wait_ready=True, timeout=WAIT, data_dir=None,
                 check_exit=True, argv_prefix=(), path=None):
        self.name = name
        self.check_exit = check_exit
        self.sigterm_sent = False
        self.port = port or free_port()
        self.tmp = None
        if data_dir is None:
            self.tmp = tempfile.TemporaryDirectory(prefix=f"svckit-{name}-")
            data_dir = self.tmp.name
        self.data_dir = data_dir
        self.log_path = os.path.join(data_dir, f"{name}.log")
        e = dict(os.environ)
        e.update({
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "WORKERS": "1",
            "DATA_DIR": data_dir,
            "LOG_FORMAT": "json",
            "SHUTDOWN_TIMEOUT": "5",
            "DRAIN_DELAY": "0",
            # No NATS unless the test brings its own (test_msg_*.py pass NATS_URL).
            "NATS_URL": "none",
        })
        if os.environ.get("SVCKIT_TEST_PG") == "1" and "DATABASE_URL" not in (env or {}):
            e["DATABASE_URL"] = pg_database_for(data_dir)
        e.update(env or {})
        self.env = e
        self.log = open(self.log_path, "wb")
        self.proc = track(subprocess.Popen([*argv_prefix, path or binary(name)], env=e, stdout=self.log,
                                           stderr=subprocess.STDOUT, cwd=data_dir))
        if wait_ready:
            self.wait_ready(timeout)

    def wait_ready(self, timeout=WAIT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.read_log()}")
            try:
                status, _, _ = self.request("GET", "/readyz", timeout=1)
                if status == 200:
                    return
                last = status
            except OSError as e:
                last = e
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} not ready after {timeout}s ({last}):\n{self.read_log()}")

    def request(self, method, path, body=None, headers=None, timeout=WAIT):
        """One request on a fresh connection: (status, headers dict lower-cased, body bytes)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                headers = dict(headers or {})
                headers.setdefault("Content-Type", "application/json")
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def json(self, method, path, body=None, headers=None, timeout=WAIT):
        status, hdrs, data = self.request(method, path, body, headers, timeout)
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            raise AssertionError(f"not JSON ({status}): {data[:200]!r}")
        return status, doc

    def connect(self, timeout=WAIT):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def read_log(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log_lines(self):
        out = []
        for line in self.read_log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def signal(self, sig):
        if self.proc.poll() is None:
            if sig == signal.SIGTERM:
                self.sigterm_sent = True
            self.proc.send_signal(sig)

    def stop(self, timeout=WAIT):
        """SIGTERM, wait; SIGKILL if it does not exit. Returns the exit code.
        Raises AssertionError on a sanitizer report in the log, or (with
        check_exit) a non-zero exit after SIGTERM or a hang."""
        problems = []
        if self.proc.poll() is None:
            self.sigterm_sent = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                problems.append(f"did not exit {timeout}s after SIGTERM; killed")
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
        code = self.proc.returncode
        if self.check_exit and self.sigterm_sent and code != 0 and not problems:
            problems.append(f"exited with {code} after SIGTERM")
        log = self.read_log()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if marker in log:
                problems.append(f"sanitizer report ({marker!r})")
        if problems:
            tail = "\n".join(log.splitlines()[-60:])
            # Report once: a second stop() (e.g. __exit__ after a test's own) stays quiet.
            self.check_exit = False
            if not getattr(self, "_reported", False):
                self._reported = True
                raise AssertionError(f"{self.name}: {'; '.join(problems)}\n--- log tail ---\n{tail}")
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            if self.tmp:
                self.tmp.cleanup()


def requests_in_flight(svc):
    """Requests the service is handling, not counting the /metrics request
    that asks."""
    for line in svc.request("GET", "/metrics")[2].decode().splitlines():
        if line.startswith("http_requests_in_flight"):
            return float(line.rsplit(" ", 1)[1]) - 1
    raise AssertionError("no http_requests_in_flight in /metrics")


def recv_until_closed(sock, timeout=WAIT, limit=64 * 1024 * 1024):
    """Reads until the peer closes (a reset counts as closed) and returns the
    bytes; raises if the connection is still open after timeout."""
    sock.settimeout(timeout)
    chunks = []
    total = 0
    deadline = time.monotonic() + timeout
    while total < limit:
        if time.monotonic() > deadline:
            raise AssertionError(f"connection still open after {timeout}s")
        try:
            b = sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"connection still open after {timeout}s")
        except ConnectionResetError:
            break
        if not b:
            break
        chunks.append(b)
        total += len(b)
    return b"".join(chunks)


_leftover = weakref.WeakKeyDictionary()


class ClosedEarly(ConnectionError):
    """The peer closed (EOF) before a whole response; .received holds the
    bytes of it that came (b"": closed before any)."""

    def __init__(self, received):
        super().__init__(f"closed after {len(received)} bytes of a response" if received
                         else "closed before a response")
        self.received = received


def read_response(sock, timeout=WAIT, head=False):
    """Reads exactly one HTTP/1.1 response (Content-Length or chunked) from a raw socket.
    Returns (status, headers dict lower-cased, body bytes); bytes after it are kept for the next call.
    head=True: the response to a HEAD request (no body whatever the headers say)."""
    sock.settimeout(timeout)
    buf = _leftover.get(sock, b"")

    def fill():
        nonlocal buf
        b = sock.recv(65536)
        if not b:
            raise ClosedEarly(buf)
        buf += b

    while b"\r\n\r\n" not in buf:
        fill()
    section, buf = buf.split(b"\r\n\r\n", 1)
    lines = section.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = b""
    if head or status in (204, 304) or 100 <= status < 200:
        pass
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            while b"\r\n" not in buf:
                fill()
            size_line, buf = buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                fill()
            body += buf[:size]
            buf = buf[size + 2:]
            if size == 0:
                break
    elif "content-length" in headers:
        n = int(headers["content-length"])
        while len(buf) < n:
            fill()
        body, buf = buf[:n], buf[n:]
    else:
        while True:
            try:
                fill()
            except ClosedEarly:
                break
        body, buf = buf, b""
    _leftover[sock] = buf
    return status, headers, body


def assert_closed(sock, timeout=WAIT):
    """Asserts the peer closed the connection cleanly: no bytes beyond the last
    response read with read_response, then EOF (not a reset, not a timeout)."""
    left = _leftover.get(sock, b"")
    assert left == b"", f"unexpected bytes after the response: {left[:200]!r}"
    sock.settimeout(timeout)
    try:
        b = sock.recv(65536)
    except socket.timeout:
        raise AssertionError("connection still open")
    except ConnectionResetError:
        raise AssertionError("connection reset instead of closed")
    assert b == b"", f"unexpected bytes instead of a close: {b[:200]!r}"


def exchange(port, data, timeout=WAIT):
    """Sends raw bytes on a fresh connection and reads one response:
    (status, headers, body, sock). The caller closes sock."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(data)
    status, headers, body = read_response(s, timeout)
    return status, headers, body, s


@pytest.fixture
def testsvc():
    with Service("testsvc") as s:
        yield s


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL server for the session (pg_support.py);
    pg_server.database(name) gives a fresh database's DATABASE_URL. Its
    directory is under /tmp itself, not pytest's 0700 one: as root the
    server runs as the postgres user, who must reach it."""
    from pg_support import PgServer
    root = tempfile.mkdtemp(prefix="svckit-pg-")
    srv = PgServer(root).start()
    yield srv
    srv.stop()
    shutil.rmtree(root, ignore_errors=True)
