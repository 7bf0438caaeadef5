"""`svckit run`, the local supervisor (tools/svckit, docs/cli.md).

Each test writes a small Procfile of sh and python commands (never the real
services) into a temporary directory, starts $SVCKIT_BUILD/bin/svckit on it and
watches its output, its exit status and the processes it started. Nothing here
measures time: each test waits for events (lines of output, pid files,
process states) with a generous bound, and checks what happened, in which
order, how many times. Children that must outlive a test block for an hour
and are stopped by it.
"""
import fcntl
import os
import pty
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import termios
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("SVCKIT_BUILD", "build")
SVCKIT = os.path.join(ROOT, BUILD, "bin", "svckit")
PY = sys.executable
WAIT = 30.0  # upper bound for anything that should take milliseconds: the machine is shared, ASan is slow

pytestmark = pytest.mark.skipif(not os.access(SVCKIT, os.X_OK), reason=f"{SVCKIT} not built")


def alive(pid):
    """True while the process exists, zombies included (nobody reaped it)."""
    return os.path.exists(f"/proc/{pid}")


def wait_until(cond, timeout=WAIT, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def read_pid(path):
    wait_until(lambda: os.path.exists(path) and open(path).read().strip(), what=path)
    return int(open(path).read().split()[0])


def free_ports(n):
    """n consecutive free TCP ports, below the kernel's ephemeral range: the
    outgoing connections of everything else on the machine take ports from
    there, and one of them could take ours before the process under test
    listens."""
    try:
        low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        base = random.randrange(20000, max(low, 20000 + 1000) - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


class Supervisor:
    """A running `svckit run` with its output collected by a thread."""

    def __init__(self, tmp, procfile, args=(), env=None, tty=False):
        self.tmp = tmp
        path = os.path.join(tmp, "Procfile")
        with open(path, "w") as f:
            f.write(procfile)
        full_env = dict(os.environ)
        full_env.pop("NO_COLOR", None)
        full_env.update(env or {})
        self.raw = b""
        self.lock = threading.Lock()
        master = None
        if tty:
            master, slave = pty.openpty()
            out = slave
        else:
            out = subprocess.PIPE
        # Its own session: signals we send reach only the supervisor.
        self.proc = subprocess.Popen([SVCKIT, "run", "-f", path, *args], cwd=tmp, env=full_env,
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        if tty:
            os.close(slave)
            self.fd = master
        else:
            self.fd = self.proc.stdout.fileno()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # a pty reports EIO once the other side is gone
                break
            if not chunk:
                break
            with self.lock:
                self.raw += chunk

    @property
    def text(self):
        with self.lock:
            return self.raw.decode("utf-8", "replace").replace("\r\n", "\n")

    def lines(self):
        return self.text.splitlines()

    def wait_for(self, pattern, timeout=WAIT):
        rx = re.compile(pattern, re.M)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = rx.search(self.text)
            if m:
                return m
            if self.proc.poll() is not None:
                self.reader.join(2)
                m = rx.search(self.text)
                if m:
                    return m
                break
            time.sleep(0.02)
        raise AssertionError(f"no /{pattern}/ in svckit output (rc={self.proc.poll()}):\n{self.text}")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=WAIT):
        rc = self.proc.wait(timeout)
        self.reader.join(2)
        return rc

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        # Anything a failed test left behind, by the pid files the children wrote.
        for name in os.listdir(self.tmp):
            if name.endswith(".pid"):
                try:
                    for pid in open(os.path.join(self.tmp, name)).read().split():
                        os.kill(int(pid), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        if self.proc.stdout:
            self.proc.stdout.close()
        elif self.fd is not None:
            os.close(self.fd)
        self.fd = None


@pytest.fixture
def run(tmp_path):
    started = []

    def start(procfile, *args, env=None, tty=False):
        s = Supervisor(str(tmp_path), procfile, args, env, tty)
        started.append(s)
        return s

    yield start
    for s in started:
        s.cleanup()


def svckit(*args, cwd=None, env=None):
    full_env = dict(os.environ)
    full_env.pop("HOST", None)  # the port check binds HOST when set
    full_env.update(env or {})
    return subprocess.run([SVCKIT, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=WAIT)


# ---- the command line ---------------------------------------------------------


def test_help_and_version():
    r = svckit("--help")
    assert r.returncode == 0 and "run" in r.stdout and "version" in r.stdout
    r = svckit("run", "--help")
    assert r.returncode == 0 and "--scale" in r.stdout and "SHUTDOWN_TIMEOUT" in r.stdout
    r = svckit("version")
    version = open(os.path.join(ROOT, "VERSION")).read().strip()
    assert r.returncode == 0 and r.stdout.startswith(f"svckit {version}")
    r = svckit("frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr
    r = svckit("run", "--bogus")
    assert r.returncode == 2 and "--bogus" in r.stderr


def test_dry_run_expands_and_selects(tmp_path):
    (tmp_path / "Procfile").write_text(
        "# comment\n"
        "\n"
        "web [port=${WEB_PORT:-9100}]: sh -c 'echo $PORT' \"$GREETING world\" ${UNSET:-dflt} # trailing\n"
        "worker: env FOO=bar sleep 1\n"
        "extra [manual]: sleep 2\n")
    r = svckit("run", "--dry-run", cwd=tmp_path, env={"GREETING": "hi there", "WEB_PORT": "9200"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # Single quotes keep $PORT for the child; expansions never split words.
    assert re.match(r"^web\s+9200\s+sh -c 'echo \$PORT' 'hi there world' dflt$", lines[0]), lines
    assert re.match(r"^worker\s+-\s+env FOO=bar sleep 1$", lines[1]), lines
    assert len(lines) == 2, "a [manual] entry runs only when named"
    r = svckit("run", "-n", "extra", "--scale", "web=2", cwd=tmp_path)
    names = [l.split()[0] for l in r.stdout.splitlines()]
    assert r.returncode == 0 and names == ["web", "web.2", "extra"], r.stdout
    assert r.stdout.splitlines()[1].split()[1] == "9101"


@pytest.mark.parametrize("line,message", [
    ("web sleep 1", "line 1: expected ':'"),
    ("web: 'unterminated", "line 1: web: unterminated single quote"),
    ("web [port=70000]: sleep 1", "line 1: port must be a number from 1 to 65535"),
    ("web [colour=red]: sleep 1", "unknown option 'colour'"),
    ("web:", "line 1: web: empty command"),
    ("web: FOO=1", "no program to run"),
    ("a: sleep 1\na: sleep 2", "line 2: 'a' is already defined on line 1"),
    ("we.b: sleep 1", "line 1: expected ':'"),
    ("web: echo ${BAD", "bad ${...}"),
])
def test_procfile_errors_name_the_line(tmp_path, line, message):
    (tmp_path / "Procfile").write_text(line + "\n")
    r = svckit("run", cwd=tmp_path)
    assert r.returncode == 2, r
    assert message in r.stderr, r.stderr


def test_unknown_names_and_missing_programs(tmp_path):
    (tmp_path / "Procfile").write_text("web: sleep 1\nsvc: ./not-built-yet --flag\n")
    r = svckit("run", "nope", cwd=tmp_path)
    assert r.returncode == 2 and "no process 'nope'" in r.stderr and "known: web, svc" in r.stderr
    r = svckit("run", "--scale", "web=x", cwd=tmp_path)
    assert r.returncode == 2 and "--scale" in r.stderr
    r = svckit("run", cwd=tmp_path)
    assert r.returncode == 1 and "./not-built-yet" in r.stderr and "not found" in r.stderr
    r = svckit("run", "--dry-run", "--skip-missing", cwd=tmp_path)
    assert r.returncode == 0 and [l.split()[0] for l in r.stdout.splitlines()] == ["web"]
    assert "skipping svc" in r.stderr
    (tmp_path / "empty").mkdir()
    r = svckit("run", cwd=tmp_path / "empty")
    assert r.returncode == 1 and "cannot open Procfile" in r.stderr and "-f FILE" in r.stderr


# ---- running ---------------------------------------------------------------------


def test_output_is_prefixed_and_never_interleaved(run, tmp_path):
    # Both children write each line in five pieces, at the same time.
    # Each writes once; restarted, it only sleeps, so nothing is cut by the stop.
    writer = ("import os, sys, time\n"
              "if os.path.exists(sys.argv[1] + '.done'):\n"
              "    time.sleep(3600)\n"
              "open(sys.argv[1] + '.done', 'w').close()\n"
              "tag = sys.argv[1].encode()\n"
              "for i in range(200):\n"
              "    for part in range(5):\n"
              "        os.write(1, tag * 40)\n"
              "    os.write(1, b'\\n')\n"
              "os.write(2, b'to stderr\\n')\n"
              "os.write(1, b'no newline at exit')\n")
    (tmp_path / "writer.py").write_text(writer)
    sup = run(f"alpha: {PY} writer.py A\n"
              f"b: {PY} writer.py B\n"
              f"long: {PY} -c \"import os, sys, time; os.path.exists('long.done') and time.sleep(3600); "
              "open('long.done', 'w'); sys.stdout.write('x' + '\\u00e9' * 20000 + '\\\\n')\"\n",
              env={"SHUTDOWN_TIMEOUT": "0"})
    sup.wait_for(r"^svckit \| alpha exited")
    sup.wait_for(r"^svckit \| b exited")
    sup.wait_for(r"^svckit \| long exited")
    sup.signal(signal.SIGTERM)
    sup.wait()
    lines = sup.lines()
    for tag, name in (("A", "alpha"), ("B", "b")):
        mine = [l for l in lines if l.startswith(f"{name:<6} | ")]
        body = [l[9:] for l in mine]
        assert body.count(tag * 200) == 200, f"{name}: {body.count(tag * 200)} whole lines"
        assert all(b in (tag * 200, "to stderr", "no newline at exit") for b in body), \
            [b for b in body if b not in (tag * 200, "to stderr", "no newline at exit")][:3]
        assert "to stderr" in body and "no newline at exit" in body
    # The 40001-byte line comes in pieces of at most 16 KiB, each valid UTF-8.
    pieces = [l for l in sup.raw.split(b"\n") if l.startswith(b"long   | ")]
    assert len(pieces) == 3, len(pieces)
    assert all(len(p) - 9 <= 16384 for p in pieces)
    # The odd 'x' puts byte 16384 inside an 'é': the cut moves back one byte.
    assert [len(p) - 9 for p in pieces] == [16383, 16384, 40001 - 16383 - 16384]
    assert "".join(p[9:].decode("utf-8") for p in pieces) == "x" + "\u00e9" * 20000
    assert "\x1b[" not in sup.text, "no colours when stdout is not a terminal"
    assert all(re.match(r"^[a-z.]+ +\| ", l) for l in lines), [l for l in lines if not re.match(r"^[a-z.]+ +\| ", l)]


def test_colours_on_a_terminal(run):
    sup = run("one: sh -c 'echo hello; exec sleep 3600'\ntwo: sh -c 'echo there; exec sleep 3600'\n", tty=True)
    sup.wait_for("hello")
    sup.wait_for("there")
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0
    one = re.search(r"\x1b\[([0-9;]+)mone +\|\x1b\[0m hello", sup.text)
    two = re.search(r"\x1b\[([0-9;]+)mtwo +\|\x1b\[0m there", sup.text)
    assert one and two, sup.text
    assert one.group(1) != two.group(1), "each process has its own colour"


def test_restarts_with_backoff(run, tmp_path):
    # crash exits 3 times, sig kills itself twice; then both stay up, so the
    # stop at the end is clean.
    sup = run("crash: sh -c 'echo run >> runs.log; [ $(wc -l < runs.log) -gt 3 ] && exec sleep 3600; "
              "echo dying; exit 3'\n"
              "sig: sh -c 'echo $$ >> sig.pid; [ $(wc -l < sig.pid) -gt 2 ] && exec sleep 3600; kill -9 $$'\n"
              "steady: sh -c 'echo $$ > steady.pid; exec sleep 3600'\n")
    runs = tmp_path / "runs.log"
    wait_until(lambda: runs.exists() and len(runs.read_text().split()) >= 4, what="4 runs of crash")
    wait_until(lambda: sup.text.count("started sig (pid") == 3, what="3 starts of sig")
    sup.wait_for(r"^svckit \| crash exited with status 3, restarting in 0\.1s$")
    sup.wait_for(r"^svckit \| crash exited with status 3, restarting in 0\.2s$")
    sup.wait_for(r"^svckit \| crash exited with status 3, restarting in 0\.4s$")
    sup.wait_for(r"^svckit \| sig killed by signal 9 \(SIGKILL\), restarting in 0\.1s$")
    sup.wait_for(r"^svckit \| sig killed by signal 9 \(SIGKILL\), restarting in 0\.2s$")
    assert sup.text.count("crash  | dying") == 3
    assert "restarting in 0.8s" not in sup.text
    steady = read_pid(str(tmp_path / "steady.pid"))
    assert alive(steady), "a healthy process is left alone"
    assert sup.text.count("started steady") == 1
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0
    assert not alive(steady)


def test_sigterm_stops_every_process_and_its_children(run, tmp_path):
    sup = run("a: sh -c 'echo $$ > a.pid; exec sleep 3600'\n"
              f"b: {PY} -c \"import os, time; open('b.pid', 'w').write(str(os.getpid())); time.sleep(3600)\"\n"
              # A helper forked by the child: it must go too (same process group).
              "c: sh -c 'sleep 3600 & echo $! > c-helper.pid; echo $$ > c.pid; wait'\n",
              env={"SHUTDOWN_TIMEOUT": "3600"})
    pids = [read_pid(str(tmp_path / f)) for f in ("a.pid", "b.pid", "c.pid", "c-helper.pid")]
    assert all(alive(p) for p in pids)
    sup.signal(signal.SIGTERM)
    # 0: each stopped of its SIGTERM; the SIGKILL of the timeout (an hour
    # away) would make it 1.
    assert sup.wait() == 0, sup.text
    assert "sending SIGKILL" not in sup.text
    gone = [p for p in pids if alive(p)]
    assert not gone, f"left behind: {gone}"
    sup.wait_for(r"received SIGTERM, stopping 3 processes")
    sup.wait_for(r"^svckit \| all processes stopped$")


def test_sigint_stops_too(run, tmp_path):
    sup = run("a: sh -c 'echo $$ > a.pid; exec sleep 3600'\n")
    pid = read_pid(str(tmp_path / "a.pid"))
    sup.signal(signal.SIGINT)
    assert sup.wait() == 0
    assert not alive(pid)


def test_children_die_with_a_killed_supervisor(run, tmp_path):
    # SIGKILL gives svckit no chance to stop anything: PR_SET_PDEATHSIG does.
    sup = run("a: sh -c 'echo $$ > a.pid; exec sleep 3600'\n")
    pid = read_pid(str(tmp_path / "a.pid"))
    sup.signal(signal.SIGKILL)
    sup.wait()
    # Its new parent may not reap it: a zombie counts as gone.
    wait_until(lambda: state_of(pid) in (None, "Z"), what="the child to get SIGTERM")


def test_ctrl_c_on_a_terminal_reaches_only_svckit(tmp_path):
    """Started by a shell (or make) in the terminal's foreground group, svckit
    takes the foreground for itself: the terminal's Ctrl-C stops it cleanly
    and the shell lives on to report its status. Without that, the shell
    would die of the same SIGINT."""
    (tmp_path / "Procfile").write_text("a: sh -c 'echo $$ > a.pid; exec sleep 3600'\n")
    master, slave = pty.openpty()

    def controlling_terminal():  # in the child, after setsid
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = dict(os.environ, SVCKIT=SVCKIT)
    shell = subprocess.Popen(["sh", "-c", '"$SVCKIT" run; echo "svckit exited $?"; exec sleep 3600'],
                             cwd=tmp_path, env=env, stdin=slave, stdout=slave, stderr=slave,
                             start_new_session=True, preexec_fn=controlling_terminal)
    os.close(slave)
    out = b""

    def read_until(needle):
        nonlocal out
        end = time.monotonic() + WAIT
        while needle not in out and time.monotonic() < end:
            try:
                out += os.read(master, 65536)
            except OSError:
                break
        assert needle in out, out

    try:
        read_until(b"started a")
        pid = read_pid(str(tmp_path / "a.pid"))
        os.write(master, b"\x03")  # Ctrl-C, as typed
        read_until(b"svckit exited 0")
        assert not alive(pid) or state_of(pid) == "Z"
        assert shell.poll() is None, "the shell lives on"
    finally:
        shell.kill()
        shell.wait(WAIT)
        os.close(master)


IGNORES_TERM = (f"{PY} -c \"import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "open('stubborn.pid', 'w').write(str(os.getpid())); print('ready', flush=True); time.sleep(3600)\"")


def test_sigkill_after_the_shutdown_timeout(run, tmp_path):
    sup = run(f"stubborn: {IGNORES_TERM}\npolite: sleep 3600\n", env={"SHUTDOWN_TIMEOUT": "0.2"})
    sup.wait_for(r"^stubborn +\| ready$")
    pid = read_pid(str(tmp_path / "stubborn.pid"))
    sup.signal(signal.SIGTERM)
    rc = sup.wait()
    assert rc == 1, "a process had to be killed: not a clean stop"
    assert not alive(pid)
    # The polite one stops of SIGTERM; the stubborn one is killed at the
    # deadline (0.2 s + 2 s grace), once, and dies of it.
    lines = sup.lines()
    assert any(re.search(r"^svckit +\| polite stopped$", l) for l in lines), sup.text
    events = [i for i, l in enumerate(lines) for pat in (r"stubborn did not stop within 2\.2s, sending SIGKILL$",
                                                        r"stubborn killed by signal 9") if re.search(pat, l)]
    assert len(events) == 2 and events == sorted(events), sup.text
    assert sup.text.count("sending SIGKILL") == 1


def test_second_ctrl_c_kills_at_once(run, tmp_path):
    # The timeout is an hour: only the second Ctrl-C can end this within WAIT.
    sup = run(f"stubborn: {IGNORES_TERM}\n", env={"SHUTDOWN_TIMEOUT": "3600"})
    sup.wait_for(r"^stubborn +\| ready$")
    pid = read_pid(str(tmp_path / "stubborn.pid"))
    sup.signal(signal.SIGINT)
    sup.wait_for(r"received SIGINT, stopping 1 process")
    sup.signal(signal.SIGINT)
    assert sup.wait() == 1
    assert not alive(pid)
    sup.wait_for(r"^svckit +\| received SIGINT again$")
    sup.wait_for(r"^svckit +\| stubborn still running, sending SIGKILL$")


def test_scale_gives_each_instance_its_port(run):
    port = free_ports(3)
    sup = run(f"web [port={port}]: sh -c 'echo \"port=$PORT instance=$SVCKIT_INSTANCE name=$SVCKIT_PROCESS\"; "
              "exec sleep 3600'\n"
              "other: sh -c 'echo \"other port=${PORT:-none}\"; exec sleep 3600'\n",
              "--scale", "web=3")
    sup.wait_for(rf"^web    \| port={port} instance=0 name=web$")
    sup.wait_for(rf"^web\.2  \| port={port + 1} instance=1 name=web\.2$")
    sup.wait_for(rf"^web\.3  \| port={port + 2} instance=2 name=web\.3$")
    sup.wait_for(r"^other  \| other port=none$")
    sup.wait_for(rf"started web\.3 \(pid \d+, PORT={port + 2}\)")
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0


def test_scale_port_gives_extra_instances_a_range_of_their_own(tmp_path):
    """DESIGN.md, "Ports": `--scale products=3` must not take orders' port.
    Without scale_port the extra instances take N+1, N+2 (and collide with
    the next entry, refused before anything starts); with it they take M, M+1."""
    port, extra = free_ports(2), free_ports(3)
    (tmp_path / "Procfile").write_text(f"web [port={port}]: sleep 1\n"
                                       f"next [port={port + 1}]: sleep 1\n")
    r = svckit("run", "--scale", "web=2", cwd=tmp_path)
    assert r.returncode != 0 and f"both want port {port + 1}" in r.stderr, r.stderr
    (tmp_path / "Procfile").write_text(f"web [port={port}, scale_port=${{WEB_SCALE:-1}}]: sleep 1\n"
                                       f"next [port={port + 1}]: sleep 1\n")
    r = svckit("run", "--dry-run", "--scale", "web=3", "--scale", "next=1", cwd=tmp_path,
               env={"WEB_SCALE": str(extra)})
    assert r.returncode == 0, r.stderr
    ports = {line.split()[0]: int(line.split()[1]) for line in r.stdout.splitlines()}
    assert ports == {"web": port, "web.2": extra, "web.3": extra + 1, "next": port + 1}, r.stdout
    (tmp_path / "Procfile").write_text("web [port=80, scale_port=70000]: sleep 1\n")
    r = svckit("run", "--dry-run", cwd=tmp_path)
    assert r.returncode == 2 and "scale_port must be a number from 1 to 65535" in r.stderr, r.stderr


def test_busy_port_fails_fast(tmp_path):
    port = free_ports(2)
    listener = socket.socket()
    listener.bind(("127.0.0.1", port + 1))
    listener.listen(1)
    try:
        (tmp_path / "Procfile").write_text(f"web [port={port}]: sh -c 'touch started; exec sleep 3600'\n")
        # It exits at once (within svckit()'s bound) instead of supervising.
        r = svckit("run", "--scale", "web=2", cwd=tmp_path)
        assert r.returncode == 1
        assert f"port {port + 1} for web.2 is already in use" in r.stderr, r.stderr
        assert not (tmp_path / "started").exists(), "nothing starts when a port is taken"
    finally:
        listener.close()
    # With HOST, the check binds that address: a listener there is found too.
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen(1)
    try:
        r = svckit("run", cwd=tmp_path, env={"HOST": "127.0.0.1"})
        assert r.returncode == 1 and f"port {port} for web is already in use" in r.stderr, r.stderr
    finally:
        listener.close()
    (tmp_path / "Procfile").write_text(f"a [port={port}]: sleep 1\nb [port={port}]: sleep 1\n")
    r = svckit("run", cwd=tmp_path)
    assert r.returncode == 2 and f"a and b both want port {port}" in r.stderr


def ppid_of(pid):
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def state_of(pid):
    """The process state letter (R, S, Z, ...), None when it is gone."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def children_of(pid):
    try:
        return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return None


# Starts a waiter in the background and exits, orphaning it. The waiter ends
# when the test creates the file "release", not after some time.
ORPHAN_SH = """\
sh -c 'while [ ! -e release ]; do sleep 0.02; done' &
echo $! > orphan.pid
"""


def test_orphans_are_reaped(run, tmp_path):
    # svckit adopts the orphan (subreaper) and must reap it when it ends, as
    # PID 1 in a container would.
    (tmp_path / "orphan.sh").write_text(ORPHAN_SH)
    sup = run("o: sh -c 'sh orphan.sh; echo $$ > o.pid; exec sleep 3600'\n")
    orphan = read_pid(str(tmp_path / "orphan.pid"))
    read_pid(str(tmp_path / "o.pid"))  # orphan.sh has exited
    wait_until(lambda: ppid_of(orphan) == sup.proc.pid, what="svckit to adopt the orphan")
    (tmp_path / "release").touch()
    wait_until(lambda: not alive(orphan), what="the orphan to be reaped (not left a zombie)")
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0


def test_works_as_pid_1(tmp_path):
    """In a fresh PID namespace svckit is PID 1: it gets SIGTERM from outside
    (an init with the default action drops signals it has not blocked), reaps
    orphans, and stops."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or not unshare:
        pytest.skip("needs root and unshare(1)")
    probe = subprocess.run([unshare, "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=WAIT)
    if probe.returncode != 0:
        pytest.skip("cannot create a PID namespace here")
    (tmp_path / "orphan.sh").write_text(ORPHAN_SH)
    (tmp_path / "Procfile").write_text("a: sh -c 'echo $$ > a.pid; sh orphan.sh; exec sleep 3600'\n")
    outer = subprocess.Popen([unshare, "--pid", "--fork", "--mount-proc", SVCKIT, "run"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: (tmp_path / "orphan.pid").exists() and (tmp_path / "orphan.pid").read_text().strip(),
                   what="orphan.pid")
        assert open(tmp_path / "a.pid").read().strip() == "2", "svckit is PID 1, its first child PID 2"
        # svckit's pid as seen from here: the child of unshare.
        children = open(f"/proc/{outer.pid}/task/{outer.pid}/children").read().split()
        assert len(children) == 1
        init = int(children[0])
        orphan_ns = int((tmp_path / "orphan.pid").read_text())
        assert orphan_ns > 2
        # Adopted by PID 1 when orphan.sh exits, then reaped when released:
        # in the end svckit has one child left, the sleep of a.
        wait_until(lambda: len(children_of(init) or []) == 2, what="PID 1 to adopt the orphan")
        (tmp_path / "release").touch()
        wait_until(lambda: len(children_of(init) or []) == 1, what="the orphan reaped by PID 1")
        os.kill(init, signal.SIGTERM)
        out, _ = outer.communicate(timeout=WAIT)
        assert outer.returncode == 0, out
        assert b"all processes stopped" in out
    finally:
        if outer.poll() is None:
            outer.kill()
            outer.wait(5)
        if outer.stdout:
            outer.stdout.close()
