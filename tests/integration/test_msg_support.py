"""Support for the messaging tests: a real nats-server per test module, and a
small NATS client speaking the text protocol directly (Debian ships no Python
NATS client, and a hand-rolled one can also send what a polite client never
would: requests without reply subjects, bad headers, huge payloads).

No tests here; test_msg_*.py import what they need.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import WAIT, Service, free_port, terminate, track

NATS_SERVER = shutil.which("nats-server") or "/usr/bin/nats-server"


class NatsServer:
    """nats-server with JetStream (jetstream False: without) on a free port;
    kept across stop() and start() (same port, same store). conf: more lines
    of configuration; start False: write_conf() may change it first."""

    def __init__(self, max_payload=4 * 1024 * 1024, port=None, conf="", jetstream=True, start=True):
        self.port = port or free_port()
        self.tmp = tempfile.mkdtemp(prefix="svckit-nats-")
        self.conf = os.path.join(self.tmp, "nats.conf")
        self.max_payload = max_payload
        self.write_conf((f"jetstream {{ store_dir: \"{self.tmp}/js\" }}\n" if jetstream else "") + conf)
        self.proc = None
        self.log = None
        if start:
            self.start()

    def write_conf(self, conf):
        """The configuration file: the port, max_payload and conf."""
        with open(self.conf, "w") as f:
            f.write(f"listen: 127.0.0.1:{self.port}\n"
                    f"max_payload: {self.max_payload}\n" + conf)

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout=WAIT):
        """Starts it and waits until it says it is ready (its own log line: a
        client probing it could be refused, by max_connections say)."""
        log_path = os.path.join(self.tmp, "nats.log")
        before = self.read_log().count("Server is ready") if os.path.exists(log_path) else 0
        self.log = open(log_path, "ab")
        self.proc = track(subprocess.Popen([NATS_SERVER, "-c", self.conf], stdout=self.log,
                                           stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout
        while self.read_log().count("Server is ready") == before:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.read_log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start in {timeout}s: {self.read_log()}")
            time.sleep(0.02)

    def stop(self, sig=signal.SIGTERM):
        if self.proc:
            terminate(self.proc, sig)
        if self.log:
            self.log.close()
            self.log = None

    def read_log(self):
        with open(os.path.join(self.tmp, "nats.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def close(self):
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def nats_server():
    s = NatsServer()
    try:
        yield s
    finally:
        s.close()


class FakeServer:
    """A listener that plays a NATS server's side of the handshake; info:
    more INFO fields (connect_urls, nonce)."""

    def __init__(self, info=None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.info = {"server_id": "FAKE", "version": "2.9.10", "proto": 1, "headers": True,
                     "max_payload": 1048576}
        self.info.update(info or {})

    def greet(self):
        """Accepts a client and sends INFO: the connection."""
        self.sock.settimeout(WAIT)
        conn, _ = self.sock.accept()
        conn.settimeout(WAIT)
        conn.sendall(b"INFO " + json.dumps(self.info).encode() + b"\r\n")
        return conn

    def serve_one(self):
        """Accepts a client, answers its CONNECT and PING, then drops it.
        Returns the CONNECT document."""
        conn = self.greet()
        buf = b""
        while b"PING\r\n" not in buf:
            data = conn.recv(65536)
            assert data, "the client closed before its PING"
            buf += data
        assert buf.startswith(b"CONNECT {"), buf[:80]
        conn.sendall(b"PONG\r\n")
        conn.close()
        return json.loads(buf[len(b"CONNECT "):buf.index(b"\r\n")])

    def close(self):
        self.sock.close()


class StatusDroppingProxy:
    """Between clients and a real nats-server: forwards everything, except
    that the server's status messages of one code (408: a pull expired) are
    dropped, as nats-server may do when a pull expires while messages
    arrive. pulls: the reply subjects of the CONSUMER.MSG.NEXT requests the
    clients sent, in order; dropped: how many statuses were dropped."""

    def __init__(self, upstream_port, status=b"408"):
        self.upstream_port, self.status = upstream_port, status
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.pulls, self.dropped = [], 0
        self.lock = threading.Lock()
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.conns += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, self._client_op), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, self._server_op), daemon=True).start()

    def _client_op(self, line, payload):
        parts = line.split()
        if parts[:1] == [b"PUB"] and parts[1].startswith(b"$JS.API.CONSUMER.MSG.NEXT.") and len(parts) == 4:
            with self.lock:
                self.pulls.append(parts[2].decode())
        return True

    def _server_op(self, line, payload):
        if line.startswith(b"HMSG ") and payload.startswith(b"NATS/1.0 " + self.status):
            with self.lock:
                self.dropped += 1
            return False
        return True

    def _pipe(self, src, dst, keep):
        """Forwards whole protocol operations (a line, and for PUB, HPUB,
        MSG and HMSG its payload) from src to dst when keep(line, payload)."""
        buf = b""
        try:
            while True:
                while b"\r\n" not in buf:
                    data = src.recv(65536)
                    if not data:
                        raise OSError("closed")
                    buf += data
                line, rest = buf.split(b"\r\n", 1)
                payload = b""
                if line.split(b" ", 1)[0] in (b"PUB", b"HPUB", b"MSG", b"HMSG"):
                    n = int(line.split()[-1]) + 2
                    while len(rest) < n:
                        data = src.recv(65536)
                        if not data:
                            raise OSError("closed")
                        rest += data
                    payload, rest = rest[:n], rest[n:]
                buf = rest
                if keep(line, payload):
                    dst.sendall(line + b"\r\n" + payload)
        except OSError:
            for s in (src, dst):
                s.close()

    def close(self):
        self.sock.close()
        for s in self.conns:
            s.close()


JWT_SECRET = "msgsvc-test-secret-0123456789abcdef-0123"


def msgsvc(nats, env=None, **kw):
    e = {"NATS_URL": nats.url if nats else "none", "WORKERS": "2", "JWT_SECRET": JWT_SECRET}
    e.update(env or {})
    return Service("msgsvc", env=e, **kw)


class Msg:
    def __init__(self, subject, reply, headers, status, data):
        self.subject, self.reply, self.headers, self.status, self.data = subject, reply, headers, status, data

    def header(self, name):
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.data)

    @property
    def svc_status(self):
        v = self.header("Svc-Status")
        return int(v) if v is not None else None


class Nats:
    """A blocking NATS client: enough protocol for tests, nothing hidden.
    connect: more CONNECT fields (credentials), or a function of the INFO
    document that returns them (a signature of its nonce). tls: an
    ssl.SSLContext, for a server that requires TLS after its INFO. inbox:
    the prefix of its reply subjects (NATS permissions may allow only one)."""

    def __init__(self, port, timeout=WAIT, connect=None, tls=None, inbox=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.sid = 0
        self.pending = []  # messages read while waiting for something else
        info = self._line()
        assert info.startswith(b"INFO "), info
        self.info = json.loads(info[5:])
        if tls:
            self.sock = tls.wrap_socket(self.sock, server_hostname="127.0.0.1")
        fields = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True,
                  "protocol": 1, "name": "pytest"}
        fields.update(connect(self.info) if callable(connect) else connect or {})
        self.send(b"CONNECT " + json.dumps(fields).encode() + b"\r\nPING\r\n")
        self._wait_pong()
        self.inbox = inbox or "_INBOX.pytest%d" % os.getpid() + "x" + str(id(self))
        self.inbox_sid = self.subscribe(self.inbox + ".*")
        self.req_seq = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from nats-server")
        self.sock.settimeout(remaining)
        b = self.sock.recv(1 << 20)
        if not b:
            raise ConnectionError("nats-server closed the connection")
        self.buf += b

    def _line(self, deadline=None):
        deadline = deadline or time.monotonic() + WAIT
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _bytes(self, n, deadline):
        while len(self.buf) < n + 2:
            self._fill(deadline)
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _read_op(self, deadline):
        """One protocol operation: returns a Msg, or None for control lines."""
        line = self._line(deadline)
        if line.startswith(b"MSG "):
            parts = line.split()
            subject, n = parts[1].decode(), int(parts[-1])
            reply = parts[3].decode() if len(parts) == 5 else None
            return Msg(subject, reply, {}, None, self._bytes(n, deadline))
        if line.startswith(b"HMSG "):
            parts = line.split()
            subject, hlen, total = parts[1].decode(), int(parts[-2]), int(parts[-1])
            reply = parts[3].decode() if len(parts) == 6 else None
            raw = self._bytes(total, deadline)
            head, data = raw[:hlen], raw[hlen:]
            lines = head.decode("latin-1").split("\r\n")
            status = None
            first = lines[0].split(" ", 2)
            if len(first) > 1 and first[1].isdigit():
                status = int(first[1])
            headers = {}
            for l in lines[1:]:
                if ":" in l:
                    k, v = l.split(":", 1)
                    headers.setdefault(k.strip(), v.strip())
            return Msg(subject, reply, headers, status, data)
        if line == b"PING":
            self.send(b"PONG\r\n")
        elif line.startswith(b"-ERR"):
            raise RuntimeError(line.decode())
        return None

    def _wait_pong(self, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while True:
            line = self._line(deadline)
            if line == b"PONG":
                return
            if line.startswith(b"-ERR"):
                raise RuntimeError(line.decode())
            if line.startswith(b"MSG") or line.startswith(b"HMSG"):
                # put it back; it is read as data by the caller later
                self.buf = line + b"\r\n" + self.buf
                m = self._read_op(deadline)
                if m:
                    self.pending.append(m)

    def flush(self, timeout=WAIT):
        self.send(b"PING\r\n")
        self._wait_pong(timeout)

    def subscribe(self, subject, queue=None):
        self.sid += 1
        q = f" {queue}" if queue else ""
        self.send(f"SUB {subject}{q} {self.sid}\r\n".encode())
        return self.sid

    @staticmethod
    def encode_headers(headers):
        h = "NATS/1.0\r\n"
        for k, v in (headers.items() if isinstance(headers, dict) else headers):
            h += f"{k}: {v}\r\n"
        return (h + "\r\n").encode()

    def publish(self, subject, data=b"", reply=None, headers=None):
        if isinstance(data, str):
            data = data.encode()
        r = f" {reply}" if reply else ""
        if headers is not None:
            h = self.encode_headers(headers)
            self.send(f"HPUB {subject}{r} {len(h)} {len(h) + len(data)}\r\n".encode() + h + data + b"\r\n")
        else:
            self.send(f"PUB {subject}{r} {len(data)}\r\n".encode() + data + b"\r\n")

    def next_msg(self, timeout=WAIT, subject_prefix=None):
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.pending):
                if subject_prefix is None or m.subject.startswith(subject_prefix):
                    return self.pending.pop(i)
            m = self._read_op(deadline)
            if m:
                self.pending.append(m)

    def request(self, subject, data=b"", headers=None, timeout=WAIT):
        self.req_seq += 1
        reply = f"{self.inbox}.{self.req_seq}"
        self.publish(subject, data, reply=reply, headers=headers)
        deadline = time.monotonic() + timeout
        while True:
            m = self.next_msg(max(0.001, deadline - time.monotonic()), subject_prefix=self.inbox + ".")
            if m.subject == reply:
                return m

    def request_all(self, subject, until, data=b"", headers=None, wait=WAIT):
        """Publishes once and gathers replies until until(replies) is true, or
        wait seconds pass. A window of time instead would miss slow replies on
        a loaded machine; a reply that comes after until() is satisfied (a
        duplicate, say) is missed, which can hide a bug but never fails a
        correct service."""
        self.req_seq += 1
        reply = f"{self.inbox}.{self.req_seq}"
        self.publish(subject, data, reply=reply, headers=headers)
        out = []
        deadline = time.monotonic() + wait
        while not until(out):
            try:
                m = self.next_msg(max(0.001, deadline - time.monotonic()), subject_prefix=reply)
            except (TimeoutError, socket.timeout):
                return out
            out.append(m)
        return out

    def svc(self, service, method, path, query=None, body=b"", headers=None, subject=None, timeout=WAIT):
        """A request the way svc_rpc_call makes it, on svc.<service>.http unless subject is given."""
        h = {"Svc-Method": method, "Svc-Path": path}
        if query:
            h["Svc-Query"] = query
        h.update(headers or {})
        return self.request(subject or f"svc.{service}.http", body, headers=h, timeout=timeout)


def js_publish(nc, subject, data, msg_id=None):
    """Publishes to JetStream (data: bytes, str, or anything json.dumps
    takes) with Nats-Msg-Id msg_id if given; the server's ack, asserted."""
    if not isinstance(data, (bytes, str)):
        data = json.dumps(data)
    m = nc.request(subject, data, headers={"Nats-Msg-Id": msg_id} if msg_id else None)
    ack = json.loads(m.data)
    assert "error" not in ack, ack
    return ack


def metric(svc, name, **labels):
    """The value of one series in the service's /metrics (0 if absent)."""
    status, _, body = svc.request("GET", "/metrics")
    assert status == 200
    total = 0.0
    for line in body.decode().splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total

