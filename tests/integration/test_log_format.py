"""Log formats for people and machines (README, "What every service does").

A service writes JSON lines when its stdout is not a terminal and coloured
text when it is; LOG_FORMAT (json|text) and LOG_COLOR (auto|always|never)
override, NO_COLOR=1 and TERM=dumb turn colour off. `svckit run`, whose
children write into pipes, tells them when the lines end on a terminal.
Every line logged while a request is handled carries its trace id.

A terminal is a pty (Python's pty module); every wait is for a line to
appear, with a generous bound.
"""
import http.client
import json
import os
import pty
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import Service, binary, free_port, terminate, wait_until
from test_msg_support import nats_server  # noqa: F401
from test_supervisor import SVCKIT, Supervisor

WAIT = 30.0
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
ESC = "\x1b"


class PtyService:
    """testsvc with its stdout and stderr on a terminal (a pty)."""

    def __init__(self, env=None):
        self.port = free_port()
        e = dict(os.environ)
        for var in ("LOG_FORMAT", "LOG_COLOR", "NO_COLOR", "SVCKIT_PROCESS"):
            e.pop(var, None)
        e.update({"PORT": str(self.port), "HOST": "127.0.0.1", "WORKERS": "1", "NATS_URL": "none",
                  "DRAIN_DELAY": "0", "TERM": "xterm-256color"})
        e.update(env or {})
        master, slave = pty.openpty()
        self.proc = subprocess.Popen([binary("testsvc")], env=e, stdin=subprocess.DEVNULL, stdout=slave,
                                     stderr=slave, start_new_session=True)
        os.close(slave)
        self.fd = master
        self.raw = b""
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO once the other side is gone
                break
            if not chunk:
                break
            with self.lock:
                self.raw += chunk

    @property
    def text(self):
        with self.lock:
            return self.raw.decode("utf-8", "replace").replace("\r\n", "\n")

    def wait_for(self, needle, timeout=WAIT):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if needle in self.text:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no {needle!r} in the output (rc={self.proc.poll()}):\n{self.text!r}")

    def get(self, path, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", path, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def stop(self):
        terminate(self.proc)
        self.reader.join(5)
        os.close(self.fd)
        return self.proc.returncode


@pytest.fixture
def on_pty():
    started = []

    def start(env=None):
        s = PtyService(env)
        started.append(s)
        s.wait_for("listening on")
        return s

    yield start
    for s in started:
        assert s.stop() == 0, s.text


def json_lines(text):
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}")
    return out


# ---- the choice of format ------------------------------------------------------------


def test_a_terminal_gets_coloured_text(on_pty):
    svc = on_pty()
    assert svc.get("/items/7", {"traceparent": TRACEPARENT})[0] == 200
    # The access line: method, path, status, duration, trace id; level and
    # status in colour, the time dimmed.
    svc.wait_for(f"trace={TRACE}")
    line = next(l for l in svc.text.splitlines() if "/items/7" in l)
    assert re.match(r"^\x1b\[90m\d\d:\d\d:\d\d\.\d\d\d\x1b\[0m \x1b\[32mINFO \x1b\[0m testsvc GET     /items/7 +"
                    r"\x1b\[32m200\x1b\[0m +\d+\.\d\dms  \x1b\[90mtrace=" + TRACE + r"\x1b\[0m$", line), repr(line)
    assert not svc.text.lstrip().startswith("{")


def test_a_pipe_gets_json():
    with Service("testsvc", env={"LOG_FORMAT": "", "TERM": "xterm"}) as svc:
        assert svc.request("GET", "/items/7", headers={"traceparent": TRACEPARENT})[0] == 200
        wait_for_log(svc, lambda lines: any(l.get("path") == "/items/7" for l in lines))
        lines = json_lines(svc.read_log())
        access = next(l for l in lines if l.get("path") == "/items/7")
        assert access["trace_id"] == TRACE and access["route"] == "/items/:id" and access["status"] == 200
        assert all(l["service"] == "testsvc" for l in lines)
        assert ESC not in svc.read_log()


def wait_for_log(svc, cond, timeout=WAIT):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if cond(svc.log_lines()):
                return
        except ValueError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"condition not met in the log:\n{svc.read_log()}")


@pytest.mark.parametrize("env", [{"LOG_FORMAT": "json"}, {"LOG_FORMAT": "json", "LOG_COLOR": "always"}],
                         ids=["json", "json-always"])
def test_log_format_json_wins_on_a_terminal(on_pty, env):
    svc = on_pty(env)
    assert svc.get("/items/7")[0] == 200
    svc.wait_for('"path":"/items/7"')
    assert ESC not in svc.text
    json_lines(svc.text)


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"NO_COLOR": "1", "LOG_COLOR": "always"},
                                 {"LOG_COLOR": "never"}, {"TERM": "dumb"}],
                         ids=["NO_COLOR", "NO_COLOR-beats-always", "never", "TERM=dumb"])
def test_colour_turned_off_on_a_terminal(on_pty, env):
    svc = on_pty(env)
    assert svc.get("/items/7")[0] == 200
    svc.wait_for(" 200 ")
    assert ESC not in svc.text, repr(svc.text)
    assert re.search(r"^\d\d:\d\d:\d\d\.\d\d\d INFO  testsvc GET     /items/7 +200 ", svc.text, re.M), svc.text


def test_text_and_colour_on_a_pipe_when_asked():
    with Service("testsvc", env={"LOG_FORMAT": "text"}) as svc:
        assert svc.request("GET", "/items/7")[0] == 200
        wait_for_text(svc, " 200 ")
        assert ESC not in svc.read_log(), "auto: a pipe is not a terminal"
    with Service("testsvc", env={"LOG_FORMAT": "text", "LOG_COLOR": "always"}) as svc:
        assert svc.request("GET", "/items/7")[0] == 200
        wait_for_text(svc, "\x1b[32m200\x1b[0m")


def wait_for_text(svc, needle, timeout=WAIT):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if needle in svc.read_log():
            return
        time.sleep(0.02)
    raise AssertionError(f"no {needle!r} in the log:\n{svc.read_log()!r}")


@pytest.mark.parametrize("value", ["xml", "JSON", "text ", "auto"])
def test_a_bad_log_format_stops_the_service(value):
    e = dict(os.environ, PORT="0", HOST="127.0.0.1", NATS_URL="none", LOG_FORMAT=value)
    r = subprocess.run([binary("testsvc")], env=e, capture_output=True, timeout=WAIT)
    assert r.returncode == 2 and r.stdout == b""
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "LOG_FORMAT" in lines[0] and "expected json or text" in lines[0], lines


def test_a_bad_log_color_stops_the_service():
    e = dict(os.environ, PORT="0", HOST="127.0.0.1", LOG_COLOR="rainbow")
    r = subprocess.run([binary("testsvc")], env=e, capture_output=True, timeout=WAIT)
    assert r.returncode == 2
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "LOG_COLOR" in lines[0] and "auto, always or never" in lines[0], lines
    r = subprocess.run([binary("testsvc"), "--help"], capture_output=True, timeout=WAIT)
    assert b"LOG_COLOR" in r.stdout and b"NO_COLOR" in r.stdout


# ---- the trace id of the request at hand ---------------------------------------------


@pytest.mark.parametrize("path,line", [
    ("/log?msg=hello", "handler says: hello"),                       # in a handler, on the loop
    ("/log-offload?msg=hello", "handler says: hello"),               # on the thread pool
    ("/forgot", "GET /forgot: handler returned SVC_DONE without a response"),  # finishing the response
])
def test_lines_logged_for_a_request_carry_its_trace_id(path, line):
    with Service("testsvc") as svc:
        assert svc.request("GET", path, headers={"traceparent": TRACEPARENT})[0] in (200, 500)
        # The one without: a line logged outside any request.
        wait_for_log(svc, lambda lines: any(l.get("msg") == line for l in lines)
                     and any(l.get("msg") == "request" for l in lines))
        lines = svc.log_lines()
        mine = [l for l in lines if l.get("msg") == line]
        assert len(mine) == 1 and mine[0]["trace_id"] == TRACE, mine
        assert all("trace_id" not in l for l in lines if l.get("msg", "").startswith("listening on")), lines
        # A request without traceparent gets a trace id of its own, on its lines too.
        status, _, body = svc.request("GET", "/log?msg=again")
        own = json.loads(body)["trace_id"]
        assert re.fullmatch(r"[0-9a-f]{32}", own) and own != TRACE
        wait_for_log(svc, lambda lines: any(l.get("msg") == "handler says: again" for l in lines))
        again = [l for l in svc.log_lines() if l.get("msg") == "handler says: again"]
        assert again[0]["trace_id"] == own


@pytest.mark.parametrize("traceparent", [TRACEPARENT, None], ids=["given", "own"])
def test_every_line_of_a_composed_request_carries_the_trace_id_of_its_request_line(nats_server, traceparent):  # noqa: F811
    """GET /chain of composesvc: a call over NATS (to itself), work on the
    thread pool, then a continuation that answers. The step lines (logged
    in the work and in the continuation, which runs from the reply's
    callback) and the access line of the request share one trace id; so does
    the access line of the call it made."""
    with Service("composesvc", env={"NATS_URL": nats_server.url, "WORKERS": "2"}) as svc:
        wait_until(lambda: svc.request("GET", "/parallel")[0] == 200, what="composesvc answers itself over NATS")
        status, _, _ = svc.request("GET", "/chain", headers={"traceparent": traceparent} if traceparent else {})
        assert status == 200
        steps = ("step: work of /chain", "step: answer_calls of /chain")

        def mine(lines):
            access = [l for l in lines if l.get("path") == "/chain"]
            step = [l for l in lines if l.get("msg") in steps]
            # Access lines carry no query: the /peer/echo line of /chain's
            # call is told from /parallel's by its trace id. The callee may
            # log it after /chain answered (another worker), so it is waited
            # for; a call that lost the trace never shows one.
            trace = access[0].get("trace_id") if access else None
            call = [l for l in lines if l.get("path") == "/peer/echo" and l.get("trace_id") == trace]
            return access, step, call
        wait_for_log(svc, lambda lines: all(mine(lines)) and len(mine(lines)[1]) == 2)
        access, step, call = mine(svc.log_lines())
        assert len(access) == 1, access
        trace = access[0]["trace_id"]
        assert re.fullmatch(r"[0-9a-f]{32}", trace)
        if traceparent:
            assert trace == TRACE
        assert [l.get("trace_id") for l in step] == [trace, trace], step
        assert len(call) == 1, call


def test_text_lines_of_a_request_end_with_the_trace_and_hide_control_characters(on_pty):
    svc = on_pty({"LOG_COLOR": "never"})
    # ESC [ 31 m, DEL, and U+009B (a CSI to some terminals) in the message and the path.
    assert svc.get("/log?msg=%1b%5b31mred%7f%c2%9bx", {"traceparent": TRACEPARENT})[0] == 200
    svc.wait_for(f"handler says: ?[31mred??x  trace={TRACE}\n")
    assert ESC not in svc.text and "\x7f" not in svc.text and "\u009b" not in svc.text


# ---- under svckit run ------------------------------------------------------------------


SHOW_ENV = "sh -c 'echo \"format=${LOG_FORMAT:-unset} color=${LOG_COLOR:-unset}\"; exec sleep 3600'"


@pytest.fixture
def run(tmp_path):
    started = []

    def start(procfile, env=None, tty=False):
        s = Supervisor(str(tmp_path), procfile, (), env, tty)
        started.append(s)
        return s

    yield start
    for s in started:
        s.cleanup()


@pytest.mark.parametrize("tty,env,want", [
    (True, {}, "format=text color=always"),
    (True, {"NO_COLOR": "1"}, "format=text color=unset"),
    (True, {"TERM": "dumb"}, "format=text color=unset"),
    (True, {"LOG_FORMAT": "json", "LOG_COLOR": "never"}, "format=json color=never"),
    (False, {}, "format=unset color=unset"),
    (False, {"LOG_FORMAT": "text"}, "format=text color=unset"),
], ids=["terminal", "NO_COLOR", "dumb", "user-choice", "pipe", "pipe-user-choice"])
def test_svckit_run_tells_its_children_where_lines_end(run, tty, env, want):
    env = dict(env)
    env.setdefault("TERM", "xterm")
    for var in ("LOG_FORMAT", "LOG_COLOR"):
        env.setdefault(var, "")  # "" reads as unset, in the shell and in services
    sup = run(f"one: {SHOW_ENV}\n", env=env, tty=tty)
    sup.wait_for(rf"one +\|(\x1b\[0m)? {re.escape(want)}$")
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0


def test_a_service_under_svckit_run_on_a_terminal(run, tmp_path):
    port = free_port()
    env = {"TERM": "xterm", "LOG_FORMAT": "", "LOG_COLOR": "", "NATS_URL": "none", "HOST": "127.0.0.1",
           "WORKERS": "1", "DRAIN_DELAY": "0"}
    sup = run(f"svc [port={port}, ready=/readyz]: {binary('testsvc')}\n"
              "next [after=svc]: sh -c 'echo go; exec sleep 3600'\n", env=env, tty=True)
    sup.wait_for(r"next +\|\x1b\[0m go$")
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/items/7", headers={"traceparent": TRACEPARENT})
    assert c.getresponse().status == 200
    c.close()
    # svckit's prefix names the process, so the line does not; the child's
    # colours pass through whole, and the line ends reset.
    m = sup.wait_for(r"^\x1b\[[0-9;]+msvc +\|\x1b\[0m (\x1b\[90m\d\d:\d\d:\d\d\.\d\d\d\x1b\[0m \x1b\[32mINFO \x1b\[0m "
                     r"GET     /items/7 .*trace=" + TRACE + r"\x1b\[0m)\x1b\[0m$")
    assert "testsvc" not in m.group(1)
    assert "warning" not in sup.text
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0, sup.text


def test_child_colours_pass_through_and_end_with_the_line(run):
    sup = run("red: printf '\\033[31mred, never reset\\nplain\\n'\n", env={"TERM": "xterm"}, tty=True)
    sup.wait_for(r"red +\|\x1b\[0m plain$")
    assert re.search(r"red +\|\x1b\[0m \x1b\[31mred, never reset\x1b\[0m$", sup.text, re.M), repr(sup.text)
    sup.signal(signal.SIGTERM)
    sup.wait()
    # On a pipe nothing is coloured or added: the bytes go as they came.
    sup = run("red: printf '\\033[31mred, never reset\\nplain\\n'\n")
    sup.wait_for(r"red +\| plain$")
    assert re.search(r"^red +\| \x1b\[31mred, never reset$", sup.text, re.M), repr(sup.text)
    sup.signal(signal.SIGTERM)
    sup.wait()
