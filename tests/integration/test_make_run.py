"""`make run` as a person sees it, in a terminal (tmux).

Starts `make run` (SAN=1 against build/san) in a detached tmux session on
free ports, with its state in a temporary directory, and reads the screen:
the build in a few summary lines, the processes started in dependency order,
colour on, not one warning; then Ctrl-C stops everything and make exits 0.
Every wait is for something to appear (on the screen, or an HTTP 200), with
bounds generous enough for a build on a busy machine.
"""
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid

import pytest

from conftest import BUILD, ROOT, free_port

TMUX = shutil.which("tmux")
NATS = "/usr/sbin/nats-server"
SERVICES = ("auth", "gateway", "products", "orders", "payments")
BUILD_WAIT = 900.0  # the build phase, should make find something to compile
WAIT = 60.0         # everything else

pytestmark = [
    pytest.mark.skipif(not TMUX, reason="no tmux"),
    pytest.mark.skipif(not os.access(NATS, os.X_OK), reason="no nats-server"),
    pytest.mark.skipif(not shutil.which("make"), reason="no make"),
    pytest.mark.skipif(not all(os.access(os.path.join(BUILD, "bin", s), os.X_OK) for s in SERVICES + ("svckit",)),
                       reason=f"services not built in {BUILD}"),
]


class Tmux:
    """One detached session on a server of its own."""

    def __init__(self, command, env, cwd):
        self.socket = f"svckit-test-{uuid.uuid4().hex[:12]}"
        self.env = env
        self.tmux("new-session", "-d", "-s", "run", "-x", "200", "-y", "50", "-c", cwd, command)
        self.path = self.tmux("display-message", "-p", "-t", "run", "#{socket_path}").strip()

    def tmux(self, *args):
        return subprocess.run([TMUX, "-L", self.socket, "-f", "/dev/null", *args], env=self.env,
                              capture_output=True, text=True, timeout=30, check=True).stdout

    def screen(self, colours=False):
        """Everything the pane has shown, scrollback included."""
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", *(["-e"] if colours else []), "-t", "run")

    def wait_for(self, pattern, timeout=WAIT):
        rx = re.compile(pattern, re.M)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = self.screen()
            if rx.search(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"no /{pattern}/ on the screen after {timeout}s:\n{self.screen()}")

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "run", *keys)

    def kill(self):
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], env=self.env, capture_output=True, timeout=30)
        if self.path.startswith("/"):
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path)
        return c.getresponse().status
    finally:
        c.close()


def wait_http_200(port, path, timeout=WAIT):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = get(port, path)
            if last == 200:
                return
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"GET {path} on {port}: {last}")


def call(port, method, path, body=None, headers=None):
    """(status, JSON body) of one request."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json", **(headers or {})})
        r = c.getresponse()
        data = r.read()
        return r.status, json.loads(data) if data else None
    finally:
        c.close()


def order_confirmed_through_the_gateway(port):
    """The admin logs in, orders one product and sees the saga confirm it:
    every service's NATS user did its part under the permissions."""
    st, doc = call(port, "POST", "/auth/login", {"username": "admin", "password": "correct-horse-9"})
    assert st == 200, doc
    bearer = {"Authorization": "Bearer " + doc["access_token"]}
    st, doc = call(port, "POST", "/orders", {"items": [{"product_id": 3, "quantity": 1}]},
                   {**bearer, "Idempotency-Key": uuid.uuid4().hex})
    assert st == 201, doc
    end = time.monotonic() + WAIT
    while doc["status"] == "pending" and time.monotonic() < end:
        time.sleep(0.1)
        st, doc = call(port, "GET", f"/orders/{doc['id']}", headers=bearer)
        assert st == 200, doc
    assert doc["status"] == "confirmed", doc


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return False
    except ConnectionRefusedError:
        return True


def test_make_run_in_a_terminal(tmp_path):
    ports = {}
    for name in ("NATS_PORT", "AUTH_PORT", "GATEWAY_PORT", "PRODUCTS_PORT", "ORDERS_PORT", "PAYMENTS_PORT",
                 "RECOMMENDATIONS_PORT", "DEMO_PORT"):
        while True:
            p = free_port()
            if p not in ports.values():
                ports[name] = p
                break
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "NO_COLOR", "LOG_FORMAT", "LOG_COLOR", "HOST",
                        "NATS_URL", "AUTH_JWKS_URL", "SVCKIT_BUILD", "TMUX")}
    env.update({k: str(v) for k, v in ports.items()})
    env.update({"TERM": "xterm-256color", "DATA_DIR": str(tmp_path / "var"), "ADMIN_PASSWORD": "correct-horse-9"})
    san = os.path.relpath(BUILD, ROOT) == os.path.join("build", "san")
    rc_file = tmp_path / "rc"
    # A trap keeps the shell alive to report make's status, whatever the
    # Ctrl-C reaches.
    command = (f"bash -c 'trap : INT; make run{' SAN=1' if san else ''}; echo \"exit=$?\" > {rc_file}; "
               "exec sleep 3600'")
    t = Tmux(command, env, ROOT)
    try:
        t.wait_for(r"^svckit: build +(up to date|\d+ files compiled)", timeout=BUILD_WAIT)
        t.wait_for(r"^svckit +\| started products \(pid")
        t.wait_for(r"^svckit +\| started gateway \(pid")
        t.wait_for(r"^svckit +\| started orders \(pid")
        t.wait_for(r"^svckit +\| started payments \(pid")
        for name in ("AUTH_PORT", "PRODUCTS_PORT", "GATEWAY_PORT", "ORDERS_PORT", "PAYMENTS_PORT"):
            wait_http_200(ports[name], "/readyz")
        # The gateway and products fetch auth's keys as they start: auth
        # answered both (a failed first fetch would be a WARN, below).
        jwks = re.compile(r"^auth +\| .* GET +/\.well-known/jwks\.json +200 ", re.M)
        end = time.monotonic() + WAIT
        while time.monotonic() < end and len(jwks.findall(t.screen())) < 2:
            time.sleep(0.2)
        text = t.screen()
        assert len(jwks.findall(text)) >= 2, text
        lines = text.splitlines()

        # The URLs, the gateway's pages among them.
        assert re.search(r"^  API explorer: http://127\.0\.0\.1:%d/docs " % ports["GATEWAY_PORT"], text, re.M), text
        # The build: its summary, no compiler command lines.
        assert re.search(r"^svckit: deps +ok$", text, re.M), text
        assert not any(" -c " in l or l.startswith(("cc ", "gcc ")) for l in lines), text
        # Nothing went wrong while starting: no warnings, no errors, no
        # refused connections, from svckit or any process; nats-server's
        # "Plaintext passwords detected" warning among them (its users are
        # NKEYs: docs/messaging.md, "Permissions").
        bad = [l for l in lines if re.search(r"\bWARN\b|\bERROR\b|warning|\[WRN\]|\[ERR\]|refused|i/o error", l)]
        assert not bad, "\n".join(bad)
        assert re.search(r"^nats +\| .*\[INF\] Server is ready$", text, re.M), text
        assert "Plaintext passwords" not in text, text

        # NATS: one NKEY seed per user, made into var/nkeys (0700) as
        # <name>.nk (0600), never shown; every service signed in with its
        # own (all ready above) and was refused nothing (no WARN above).
        keys = tmp_path / "var" / "nkeys"
        assert keys.stat().st_mode & 0o777 == 0o700
        users = ("gateway", "auth", "products", "orders", "payments", "recommendations", "ops")
        assert sorted(p.name for p in keys.iterdir()) == sorted(f"{u}.nk" for u in users)
        for u in users:
            seed = (keys / f"{u}.nk").read_text().strip()
            assert (keys / f"{u}.nk").stat().st_mode & 0o777 == 0o600
            assert seed.startswith("SU") and seed not in text, text

        # The order: nats ready, then auth; auth ready, then gateway and products.
        def at(pattern):
            for i, l in enumerate(lines):
                if re.search(pattern, l):
                    return i
            raise AssertionError(f"no /{pattern}/:\n{text}")
        assert at(r"^svckit +\| nats ready$") < at(r"^svckit +\| started auth ") < at(r"^svckit +\| auth ready$")
        assert at(r"^svckit +\| auth ready$") < at(r"^svckit +\| started gateway ")
        assert at(r"^svckit +\| auth ready$") < at(r"^svckit +\| started products ")

        # Colour: svckit's prefixes and the services' levels; text lines
        # without the service name, which svckit's prefix gives.
        coloured = t.screen(colours=True)
        assert re.search(r"\x1b\[[0-9;]*mauth +\|", coloured), coloured[:2000]
        assert re.search(r"\x1b\[32mINFO", coloured), coloured[:2000]
        assert re.search(r"^auth +\| \d\d:\d\d:\d\d\.\d\d\d INFO  listening on http://127\.0\.0\.1:%d "
                         % ports["AUTH_PORT"], text, re.M), text

        order_confirmed_through_the_gateway(ports["GATEWAY_PORT"])
        # The Node.js example too (scripts/run.sh installed its packages),
        # once orders is ready: its durable consumer is on orders' stream.
        t.wait_for(r"^svckit +\| started recommendations \(pid")
        wait_http_200(ports["RECOMMENDATIONS_PORT"], "/readyz")
        lines = t.screen().splitlines()
        assert at(r"^svckit +\| orders ready$") < at(r"^svckit +\| started recommendations ")

        # `svckit status` as make run's banner says: the ops user's seed.
        m = re.search(r"svckit status: (NATS_URL=\S+) (NATS_NKEY_SEED_FILE=\S+)", text)
        assert m, text
        status_env = dict(env, **dict(kv.split("=", 1) for kv in m.groups()))
        r = subprocess.run([os.path.join(BUILD, "bin", "svckit"), "status", "--json", "--no-ready", "--wait", "2000"],
                           env=status_env, cwd=ROOT, capture_output=True, text=True, timeout=WAIT)
        assert r.returncode == 0, r.stderr
        assert {"gateway", "auth", "products", "orders", "payments", "recommendations"} <= \
            {d["name"] for d in json.loads(r.stdout)}

        # A request through the gateway shows as one aligned access line per hop.
        assert get(ports["GATEWAY_PORT"], "/products/categories") in (200, 401)
        t.wait_for(r"^gateway +\| \d\d:\d\d:\d\d\.\d\d\d INFO  GET +/products/categories +\d{3} +\d+\.\d\dms  "
                   r"trace=[0-9a-f]{32}")

        t.keys("C-c")
        t.wait_for(r"^svckit +\| all processes stopped$")
        end = time.monotonic() + WAIT
        while time.monotonic() < end and not rc_file.exists():
            time.sleep(0.2)
        assert rc_file.exists() and rc_file.read_text().strip() == "exit=0", t.screen()
        assert "Interrupt" not in t.screen(), "make saw the Ctrl-C"
        for name in ("NATS_PORT", "AUTH_PORT", "PRODUCTS_PORT", "GATEWAY_PORT", "ORDERS_PORT", "PAYMENTS_PORT",
                     "RECOMMENDATIONS_PORT"):
            assert refused(ports[name]), f"{name} still open"
    finally:
        t.kill()
