"""`svckit top`: the live picture from $SRV.LIVE, in a terminal (a detached
tmux session of a fixed size) and as --once/--json for scripts.

Nothing here depends on timing: the screen is read until it shows what is
expected (every service and instance, a nonzero rate while traffic flows);
a rate needs two snapshots of an instance with requests between them, which
the traffic sent on every poll guarantees sooner or later."""
import json
import os
import shutil
import subprocess
import tempfile
import threading

import pytest

from conftest import BIN, WAIT, free_port, wait_until
from live_support import SERVICES, LiveSystem
from test_msg_support import Nats, NatsServer, nats_server  # noqa: F401  (fixture)

SVCKIT = os.path.join(BIN, "svckit")
COLS, ROWS = 200, 50


@pytest.fixture(scope="module")
def system(nats_server):  # noqa: F811
    s = LiveSystem(nats_server)
    try:
        yield s
    finally:
        s.close()


def top(*args, timeout=WAIT):
    p = subprocess.run([SVCKIT, "top", *args], capture_output=True, timeout=timeout,
                       env={k: v for k, v in os.environ.items() if k != "NATS_URL"})
    return p.returncode, p.stdout.decode(), p.stderr.decode()


class Tmux:
    """A private tmux server (its own socket) with one session running cmd in
    a COLS x ROWS terminal, under a shell that then prints "exit=<status>"
    and stays (cat), so the terminal cmd left behind is readable: a dead
    pane would report its cursor hidden whatever the program did."""

    def __init__(self, cmd):
        self.dir = tempfile.mkdtemp(prefix="svckit-tmux-")
        self.sock = os.path.join(self.dir, "sock")
        conf = os.path.join(self.dir, "tmux.conf")
        with open(conf, "w") as f:
            f.write("set -g status off\n")
        self.run("-f", conf, "new-session", "-d", "-s", "top", "-x", str(COLS), "-y", str(ROWS),
                 f"sh -c '{cmd}; echo exit=$?; exec cat'")

    def program_pid(self):
        """The pid of cmd: the shell's child."""
        sh = int(self.fmt("#{pane_pid}"))
        with open(f"/proc/{sh}/task/{sh}/children") as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None

    def exited(self):
        """cmd's exit status once the shell printed it, else None."""
        for line in self.screen().splitlines():
            if line.startswith("exit="):
                return int(line[5:])
        return None

    def run(self, *args):
        return subprocess.run(["tmux", "-S", self.sock, *args], capture_output=True, timeout=WAIT,
                              check=True).stdout.decode()

    def screen(self):
        return self.run("capture-pane", "-p", "-t", "top")

    def fmt(self, f):
        return self.run("display-message", "-p", "-t", "top", f).strip()

    def close(self):
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], capture_output=True, timeout=WAIT)
        shutil.rmtree(self.dir, ignore_errors=True)


def rate_of(screen, ident):
    """REQ/S of the row that starts with ident (after its indent)."""
    for line in screen.splitlines():
        cols = line.split()
        if cols and cols[0] == ident:
            # ID VERSION HOST UPTIME READY REQ/S ...; a service row has no
            # version, host or uptime: SERVICE READY REQ/S ...
            i = 5 if line.startswith("  ") else 2
            try:
                return float(cols[i])
            except (IndexError, ValueError):
                return None
    return None


def test_tmux_live_screen_and_q(system):
    instances = system.instances()
    assert {s for s, _ in instances} == set(SERVICES) and len(instances) == len(SERVICES) + 1
    t = Tmux(f"{SVCKIT} top --nats {system.nats.url} --interval 0.5")
    try:
        def complete():
            system.traffic(3)
            s = t.screen()
            listed = all(s.count(f"\n{name} ") == 1 or s.startswith(f"{name} ") for name in SERVICES) and \
                all(f"  {i} " in s for _, i in instances)
            rate = rate_of(s, "gateway")
            return listed and rate is not None and rate > 0 and s
        screen = wait_until(complete, what="every service and instance on the screen, a nonzero rate")
        assert "SERVICE / INSTANCE" in screen and "REQ/S" in screen and "P99" in screen
        assert f"{len(SERVICES)} services, {len(instances)} instances" in screen
        assert t.fmt("#{alternate_on}") == "1" and t.fmt("#{cursor_flag}") == "0"
        products = [line for line in screen.splitlines() if line.startswith("products ")]
        assert products and "2/2" in products[0], screen

        t.run("send-keys", "-t", "top", "q")
        assert wait_until(lambda: t.exited() is not None, what="svckit top to exit on q") is not None
        assert t.exited() == 0
        # The terminal as it was: the normal screen, the cursor shown, and
        # none of top's table left on it.
        assert t.fmt("#{alternate_on}") == "0" and t.fmt("#{cursor_flag}") == "1"
        assert "SERVICE / INSTANCE" not in t.screen()
    finally:
        t.close()


def test_tmux_signal_restores_terminal(system):
    t = Tmux(f"{SVCKIT} top --nats {system.nats.url}")
    try:
        wait_until(lambda: "SERVICE / INSTANCE" in t.screen(), what="the table on the screen")
        os.kill(t.program_pid(), 15)
        wait_until(lambda: t.exited() is not None, what="svckit top to exit on SIGTERM")
        assert t.exited() == 0
        assert t.fmt("#{alternate_on}") == "0" and t.fmt("#{cursor_flag}") == "1"
        assert "SERVICE / INSTANCE" not in t.screen()
    finally:
        t.close()


def test_json_lists_every_service_and_instance(system):
    instances = system.instances()
    stop = threading.Event()

    def load():
        while not stop.is_set():
            system.traffic(1)
    th = threading.Thread(target=load, daemon=True)
    th.start()
    try:
        def answered():
            rc, out, err = top("--nats", system.nats.url, "--json", "--interval", "1")
            assert rc == 0, err
            doc = json.loads(out)
            gw = [s for s in doc["services"] if s["name"] == "gateway"]
            return gw and gw[0]["rps"] and gw[0]["rps"] > 0 and doc
        doc = wait_until(answered, what="a gateway rate in --json")
    finally:
        stop.set()
        th.join(WAIT)
    got = {(s["name"], i["id"]) for s in doc["services"] for i in s["instance_list"]}
    assert got == instances
    for s in doc["services"]:
        assert s["instances"] == len(s["instance_list"]) and s["ready"] == s["instances"]
        for i in s["instance_list"]:
            assert i["version"] and i["host"].endswith(tuple("0123456789")) and i["rss_bytes"] > 0
    gw = next(s for s in doc["services"] if s["name"] == "gateway")
    assert gw["error_ratio"] == 0 and gw["p50_s"] > 0 and gw["p99_s"] >= gw["p50_s"]


def test_once_escapes_a_forged_instance(nats_server):  # noqa: F811
    """Anyone on NATS may answer $SRV.LIVE: a name with an escape sequence
    reaches the terminal as '?', never as ESC."""
    c = Nats(nats_server.port)
    try:
        sid = c.subscribe("$SRV.LIVE")
        c.flush()
        forged = {"type": "io.svckit.v1.live_response", "name": "\x1b[2Jevil\x07", "id": "x\x1b]0;t\x07",
                  "version": "\x1b[31m1", "metadata": {"host": "h\r\n", "http_port": "1"}, "now_ms": 1,
                  "buckets": [1e308, -1], "routes": [{"route": "/x", "requests": -5}] * 3}
        done = threading.Event()

        def answer():
            while not done.is_set():
                try:
                    m = c.next_msg(timeout=0.2)
                except Exception:
                    continue
                if m.reply:
                    c.publish(m.reply, json.dumps(forged).encode())
        th = threading.Thread(target=answer, daemon=True)
        th.start()
        try:
            rc, out, err = top("--nats", nats_server.url, "--once", "--interval", "0.5")
        finally:
            done.set()
            th.join(WAIT)
        assert sid
        assert "\x1b" not in out and "\x07" not in out and "\r" not in out
        assert "?[2Jevil?" in out, out
    finally:
        c.close()


def test_no_instances_exit_1():
    s = NatsServer()
    try:
        rc, out, err = top("--nats", s.url, "--once", "--interval", "0.2")
        assert rc == 1 and f"no svckit instances on {s.url}" in err
    finally:
        s.close()


def test_unreachable_exit_2():
    url = f"nats://127.0.0.1:{free_port()}"
    rc, out, err = top("--nats", url, "--once")
    assert rc == 2 and out == "" and url in err


@pytest.mark.parametrize("args", [["--interval", "0"], ["--interval", "x"], ["--interval", "61"],
                                  ["--nats", "http://x"], ["--bogus"], ["--nats"]])
def test_bad_arguments_exit_2(args):
    rc, _, err = top(*args)
    assert rc == 2 and err
