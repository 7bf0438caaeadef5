"""Support for the gateway tests: start a gateway with a route table, and fake
service instances over NATS that the tests control completely (what they
answer, how fast, whether at all) and that report exactly what reached them.

No tests here; test_gateway*.py import what they need.
"""
import json
import os
import random
import string
import tempfile
import threading
import time
import heapq

from conftest import WAIT, Service, wait_until
from test_msg_support import Nats, NatsServer, metric, nats_server  # noqa: F401

JWT_SECRET = "gateway-test-secret-0123456789abcdef-0123"


def gateway(nats, routes, env=None, **sections):
    """A gateway on a free port routing `routes` ({prefix: service} or a list of
    route objects); keyword sections (cors, limits, retry_budget, breaker,
    discovery) go into the configuration as given."""
    if isinstance(routes, dict):
        routes = [{"prefix": p, "service": s} for p, s in routes.items()]
    doc = {"routes": routes}
    doc.setdefault("limits", {"rate_per_client_per_s": 0, "max_concurrency": 0})
    doc["discovery"] = {"interval_ms": 200}
    doc.update(sections)
    fd, path = tempfile.mkstemp(prefix="svckit-gateway-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    e = {"NATS_URL": nats.url, "GATEWAY_CONFIG": path, "WORKERS": "2", "JWT_SECRET": JWT_SECRET}
    e.update(env or {})
    g = Service("gateway", env=e)
    g.config_path = path
    return g


def instances(gw, service):
    return metric(gw, "gateway_instances", service=service)


def wait_instances(gw, service, n, timeout=WAIT):
    wait_until(lambda: instances(gw, service) == n, timeout=timeout, what=f"{n} instance(s) of {service}")


def new_id():
    return "".join(random.choice(string.ascii_letters + string.digits) for _ in range(22))


class FakeInstance:
    """One instance of a service, answering svckit's NATS protocol from a thread:
    the queue subject svc.<name>.http, its own svc.<name>.<id>.http, and
    $SRV.PING. behaviour(msg) returns (status, headers, body) or None to stay
    silent; delay_s postpones the answer without blocking the others; while
    .hold is set, answers wait until it is cleared (for as long as a test
    needs requests in flight, whatever the machine's speed).
    Every request received is kept in .received (subject, headers, body)."""

    def __init__(self, nats, name, behaviour=None, delay_s=0.0, answer_ping=True, identities=1):
        self.name, self.id = name, new_id()
        # More than one identity: the same thread poses as that many instances.
        self.ids = [self.id] + [new_id() for _ in range(identities - 1)]
        # Ghosts are announced in discovery but listen on nothing (a process
        # that died between two discovery rounds).
        self.ghosts = []
        self.behaviour = behaviour or echo
        self.delay_s = delay_s
        self.answer_ping = answer_ping
        self.received = []
        self.lock = threading.Lock()
        self.nc = Nats(nats.port)
        self.nc.subscribe(f"svc.{name}.http", queue=name)
        for i in self.ids:
            self.nc.subscribe(f"svc.{name}.{i}.http")
        self.nc.subscribe("$SRV.PING")
        self.nc.subscribe(f"$SRV.PING.{name}")
        self.nc.flush()
        self.stop_ev = threading.Event()
        self.later = []  # heap of (when, seq, subject, headers, body)
        self.seq = 0
        self.hold = threading.Event()
        self.held = []  # (subject, headers, body) answered once hold clears
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def add_ghost(self):
        self.ghosts.append(new_id())
        return self.ghosts[-1]

    def count(self):
        with self.lock:
            return len(self.received)

    def _reply(self, subject, headers, body):
        if self.hold.is_set():
            self.held.append((subject, headers, body))
        else:
            self.nc.publish(subject, body, headers=headers)

    def _run(self):
        while not self.stop_ev.is_set():
            now = time.monotonic()
            while self.held and not self.hold.is_set():
                self._reply(*self.held.pop(0))
            while self.later and self.later[0][0] <= now:
                _, _, subj, h, b = heapq.heappop(self.later)
                self._reply(subj, h, b)
            wait = 0.02
            if self.later:
                wait = max(0.001, min(wait, self.later[0][0] - now))
            try:
                m = self.nc.next_msg(timeout=wait)
            except (TimeoutError, OSError):
                continue
            if m.subject.startswith("$SRV.PING"):
                if self.answer_ping and m.reply:
                    for i in self.ids + self.ghosts:
                        doc = {"type": "io.nats.micro.v1.ping_response", "name": self.name, "id": i,
                               "version": "0.0.0", "metadata": {}}
                        self.nc.publish(m.reply, json.dumps(doc))
                continue
            with self.lock:
                self.received.append(m)
            out = self.behaviour(self, m)
            if out is None or not m.reply:
                continue
            status, headers, body = out
            h = {"Svc-Status": str(status), "Svc-Instance": self.id}
            h.update(headers)
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            if self.delay_s:
                self.seq += 1
                heapq.heappush(self.later, (time.monotonic() + self.delay_s, self.seq, m.reply, h, body))
            else:
                self._reply(m.reply, h, body)

    def close(self):
        self.stop_ev.set()
        self.thread.join(5)
        self.nc.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def echo(inst, m):
    """200 with what arrived: subject, headers, body."""
    return 200, {"Content-Type": "application/json"}, {
        "instance": inst.id, "subject": m.subject, "headers": m.headers,
        "body": m.data.decode(errors="replace")}


def fail(status):
    return lambda inst, m: (status, {"Content-Type": "application/json"},
                            {"error": {"code": "unavailable", "message": f"fake {status}"}})


def silent(inst, m):
    return None


class Load:
    """Closed-loop load: `clients` threads, each with a keep-alive connection,
    sending GET path until stopped; every outcome is recorded with its time."""

    def __init__(self, port, path, headers=None, clients=4, timeout=10.0):
        self.port, self.path, self.headers, self.timeout = port, path, headers or {}, timeout
        self.results = []  # (monotonic time, status or exception name, seconds taken)
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def _run(self):
        import http.client
        conn = None
        while not self.stop_ev.is_set():
            t = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                conn.request("GET", self.path, headers=self.headers)
                r = conn.getresponse()
                r.read()
                out = r.status
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every failure is a result
                out = type(e).__name__
                if conn:
                    conn.close()
                conn = None
            with self.lock:
                self.results.append((t, out, time.monotonic() - t))
        if conn:
            conn.close()

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(self.timeout + 5)
        return self.results

    def statuses(self, since=0.0, until=float("inf"), finished_before=float("inf")):
        """Outcomes of the requests started in [since, until) and done by finished_before."""
        with self.lock:
            return [s for t, s, d in self.results if since <= t < until and t + d < finished_before]
