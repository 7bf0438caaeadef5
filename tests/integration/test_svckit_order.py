"""`svckit run`: start order with readiness, [after=NAME] and [ready=PROBE]
(docs/cli.md, "Start order").

Parser cases go through --dry-run (accepted: exit 0; refused: exit 2 naming
the line). The runtime cases use a small python server whose readiness the
test controls with files, so every check is an event in svckit's output
(who is ready, who started, in which order), never a duration.
test_supervisor.py covers the rest of `svckit run`.
"""
import os
import re
import signal
import sys

import pytest

from test_supervisor import SVCKIT, WAIT, Supervisor, free_ports, read_pid, svckit, wait_until

PY = sys.executable

pytestmark = pytest.mark.skipif(not os.access(SVCKIT, os.X_OK), reason=f"{SVCKIT} not built")

# Listens on $PORT once the file "release-<name>" exists (at once without
# --gated), answers GET /readyz with 200 once "healthy-<name>" exists, else
# 503, and says what it did on each step.
SERVER = """\
import http.server, os, socket, sys, time
name = os.environ["SVCKIT_PROCESS"]
with open(name + ".pid", "w") as f:
    f.write(str(os.getpid()))
if "--gated" in sys.argv:
    print("waiting for release", flush=True)
    while not os.path.exists("release-" + name):
        time.sleep(0.02)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if os.path.exists("healthy-" + name) else 503
        print(f"probe {code}", flush=True)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
print("listening", flush=True)
s.serve_forever()
"""

# Tries once to connect to 127.0.0.1:$1 and says whether it could, then stays.
CHECKER = """\
import os, socket, sys, time
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
    print("peer was up", flush=True)
except OSError as e:
    print(f"peer was down: {e}", flush=True)
time.sleep(3600)
"""


@pytest.fixture
def run(tmp_path):
    (tmp_path / "server.py").write_text(SERVER)
    (tmp_path / "checker.py").write_text(CHECKER)
    started = []

    def start(procfile, *args, env=None, tty=False):
        full = {"NO_COLOR": "1"}
        full.update(env or {})
        s = Supervisor(str(tmp_path), procfile, args, full, tty)
        started.append(s)
        return s

    yield start
    for s in started:
        s.cleanup()


def position(lines, pattern):
    """Index of the first line matching pattern; fails when there is none."""
    rx = re.compile(pattern)
    for i, line in enumerate(lines):
        if rx.search(line):
            return i
    raise AssertionError(f"no /{pattern}/ in:\n" + "\n".join(lines))


# ---- the Procfile options ----------------------------------------------------------


@pytest.mark.parametrize("procfile", [
    "a [port=9400]: sleep 1\nb [after=a]: sleep 1\n",
    # Forward references, repetition, and every probe form.
    "b [after=a, after=c]: sleep 1\na [port=9400, ready=/readyz]: sleep 1\nc [port=9401, ready=tcp]: sleep 1\n",
    "a [port=9400 ready=${PROBE:-/health?full=1}]: sleep 1\nb [after=a manual]: sleep 1\n",
    "a: sleep 1\nb [after=a]: sleep 1\nc [after=a, after=b]: sleep 1\n",
])
def test_after_and_ready_accepted(tmp_path, procfile):
    (tmp_path / "Procfile").write_text(procfile)
    r = svckit("run", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("procfile,message", [
    ("a: sleep 1\nb [after=nope]: sleep 1\n", "line 2: after=nope: no such process (known: a, b)"),
    ("a [after=b]: sleep 1\nb [after=a]: sleep 1\n", "line 1: after= makes a cycle: a -> b -> a"),
    ("a [after=a]: sleep 1\n", "line 1: after= makes a cycle: a -> a"),
    ("x: sleep 1\na [after=c]: sleep 1\nb [after=a]: sleep 1\nc [after=b, after=x]: sleep 1\n",
     "after= makes a cycle: a -> c -> b -> a"),
    ("a: sleep 1\nb [after=]: sleep 1\n", "line 2: after needs a process name: [after=nats]"),
    ("a: sleep 1\nb [after]: sleep 1\n", "line 2: after needs a process name"),
    ("a: sleep 1\nb [after=${A}]: sleep 1\n", "line 2: after needs a process name"),
    ("a: sleep 1\nb [after=a.2]: sleep 1\n", "line 2: after needs a process name"),
    ("b [" + ", ".join(["after=a"] * 9) + "]: sleep 1\na: sleep 1\n", "line 1: more than 8 after= options"),
    ("a [port=9400, ready=http]: sleep 1\n", "line 1: ready must be tcp or an HTTP path such as /readyz, got 'http'"),
    ("a [port=9400, ready]: sleep 1\n", "line 1: ready needs a probe"),
    ("a [port=9400, ready=/caf\u00e9]: sleep 1\n", "ready must be tcp or an HTTP path"),
    ("a [ready=tcp]: sleep 1\n", "line 1: ready= probes the process's port: give it port=N too"),
    ("a [ready=/readyz]: sleep 1\n", "give it port=N too"),
    ("a [port=9400, ready=/${BAD]: sleep 1\n", "line 1: ready: bad ${...} expression"),
])
def test_after_and_ready_refused_with_the_line(tmp_path, procfile, message):
    (tmp_path / "Procfile").write_text(procfile)
    r = svckit("run", "--dry-run", cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    assert message in r.stderr, r.stderr
    # Nothing runs either.
    r = svckit("run", cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_bad_ready_timeout_is_refused(tmp_path):
    (tmp_path / "Procfile").write_text("a: sleep 1\n")
    r = svckit("run", cwd=tmp_path, env={"SVCKIT_READY_TIMEOUT": "soon"})
    assert r.returncode == 2 and "SVCKIT_READY_TIMEOUT must be a number of seconds" in r.stderr, r.stderr


def test_help_names_the_options():
    r = svckit("run", "--help")
    assert r.returncode == 0
    for word in ("after=NAME", "ready=tcp", "ready=/path", "SVCKIT_READY_TIMEOUT"):
        assert word in r.stdout, word


# ---- the order at run time ---------------------------------------------------------


def test_waits_for_a_tcp_connect(run, tmp_path):
    port = free_ports(1)
    # No ready=: an entry with a port is ready when it takes a connection.
    sup = run(f"a [port={port}]: {PY} server.py --gated\n"
              f"b [after=a]: {PY} checker.py {port}\n")
    sup.wait_for(r"^a +\| waiting for release$")
    # b would have been started with a, before a's first line.
    assert "started b" not in sup.text
    (tmp_path / "release-a").touch()
    # b found a's port open: it started after a listened.
    sup.wait_for(r"^b +\| peer was up$")
    lines = sup.lines()
    assert position(lines, r"^svckit +\| a ready$") < position(lines, r"^svckit +\| started b \(pid")
    assert sup.text.count("started b") == 1
    assert "warning" not in sup.text
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0, sup.text


def test_waits_for_a_2xx_answer(run, tmp_path):
    port = free_ports(1)
    sup = run(f"a [port={port}, ready=/readyz]: {PY} server.py\n"
              "b [after=a]: sh -c 'echo b is up; exec sleep 3600'\n")
    # Two 503s: the first did not count as ready, or there would be no second.
    wait_until(lambda: sup.text.count("a      | probe 503") >= 2, what="two probes answered 503")
    assert "started b" not in sup.text and "a ready" not in sup.text
    (tmp_path / "healthy-a").touch()
    sup.wait_for(r"^b +\| b is up$")
    lines = sup.lines()
    assert position(lines, r"^a +\| probe 200$") < position(lines, r"^svckit +\| a ready$") \
        < position(lines, r"^svckit +\| started b \(pid")
    # Once b has started, nobody waits for a: probing stops.
    probes = sup.text.count("| probe ")
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0, sup.text
    assert sup.text.count("| probe ") == probes


def test_every_instance_of_a_scaled_entry_and_a_chain(run, tmp_path):
    port = free_ports(2)
    # b waits for a and a.2; c waits for b, which has no port: ready once started.
    sup = run(f"a [port={port}]: {PY} server.py --gated\n"
              "b [after=a]: sh -c 'echo b is up; exec sleep 3600'\n"
              "c [after=b]: sh -c 'echo c is up; exec sleep 3600'\n",
              "--scale", "a=2")
    sup.wait_for(r"^a +\| waiting for release$")
    sup.wait_for(r"^a\.2 +\| waiting for release$")
    (tmp_path / "release-a").touch()
    sup.wait_for(r"^svckit +\| a ready$")
    sup.wait_for(r"^a\.2 +\| waiting for release$")
    assert "started b" not in sup.text, "a.2 is not ready yet"
    (tmp_path / "release-a.2").touch()
    sup.wait_for(r"^c +\| c is up$")
    lines = sup.lines()
    assert position(lines, r"^svckit +\| a\.2 ready$") < position(lines, r"^svckit +\| started b ") \
        < position(lines, r"^svckit +\| started c ")
    assert "warning" not in sup.text
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0, sup.text


def test_a_bounded_wait_then_one_warning(run, tmp_path):
    port = free_ports(1)
    # a never listens; b and c wait for it, d waits for b.
    sup = run(f"a [port={port}]: sleep 3600\n"
              "b [after=a]: sh -c 'echo b is up; exec sleep 3600'\n"
              "c [after=a]: sh -c 'echo c is up; exec sleep 3600'\n"
              "d [after=b]: sh -c 'echo d is up; exec sleep 3600'\n",
              env={"SVCKIT_READY_TIMEOUT": "0.5"})
    sup.wait_for(r"^b +\| b is up$")
    sup.wait_for(r"^c +\| c is up$")
    sup.wait_for(r"^d +\| d is up$")
    text = sup.text
    for who in ("b", "c"):
        # Why: what the last probe saw (on a stalled machine, maybe none yet).
        warning = (rf"^svckit +\| warning: a not ready after 0\.5s \((connect to 127\.0\.0\.1:{port}: "
                   rf"Connection refused|no answer yet)\); starting {who} anyway$")
        assert len(re.findall(warning, text, re.M)) == 1, text
        lines = sup.lines()
        assert position(lines, warning) < position(lines, rf"^svckit +\| started {who} \(pid")
    assert text.count("warning") == 2, "d waited for b, which was ready at once"
    assert "a ready" not in text
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0, sup.text


def test_names_outside_the_run_are_not_waited_for(run, tmp_path):
    port = free_ports(1)
    sup = run(f"a [port={port}]: sleep 3600\n"
              "b [after=a]: sh -c 'echo b is up; exec sleep 3600'\n",
              "b")
    sup.wait_for(r"^b +\| b is up$")
    assert "started a" not in sup.text and "warning" not in sup.text
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0, sup.text


def test_restarts_do_not_wait(run, tmp_path):
    port = free_ports(1)
    # b exits on its first run; a is killed once it is up. Each restarts
    # with the usual backoff, whatever the other does.
    sup = run(f"a [port={port}]: {PY} server.py\n"
              "b [after=a]: sh -c 'echo run >> b.runs; [ $(wc -l < b.runs) -gt 1 ] && exec sleep 3600; exit 1'\n")
    sup.wait_for(r"^svckit +\| b exited with status 1, restarting in 0\.1s$")
    wait_until(lambda: sup.text.count("started b ") == 2, what="b restarted")
    a = read_pid(str(tmp_path / "a.pid"))
    os.remove(tmp_path / "a.pid")
    os.kill(a, signal.SIGKILL)
    sup.wait_for(r"^svckit +\| a killed by signal 9 \(SIGKILL\), restarting in 0\.1s$")
    wait_until(lambda: sup.text.count("started a ") == 2, what="a restarted")
    read_pid(str(tmp_path / "a.pid"))
    assert sup.text.count("started b ") == 2 and sup.text.count("a ready") == 1
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0, sup.text


def test_a_stop_while_waiting(run, tmp_path):
    port = free_ports(1)
    sup = run(f"a [port={port}]: {PY} server.py --gated\n"
              "b [after=a]: sh -c 'echo b is up; exec sleep 3600'\n")
    sup.wait_for(r"^a +\| waiting for release$")
    sup.signal(signal.SIGINT)
    assert sup.wait() == 0, sup.text
    assert "received SIGINT, stopping 1 process " in sup.text
    assert "started b" not in sup.text
