"""`svckit top`: the live picture from $SRV.LIVE, in a terminal (a detached
tmux session of a fixed size) and as --once/--json for scripts.

Nothing here depends on timing: the screen is read until it shows what is
expected (every service and instance, a nonzero rate while traffic flows);
a rate needs two snapshots of an instance with requests between them, which
the traffic sent on every poll guarantees sooner or later."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading

import pytest

from conftest import BIN, WAIT, free_port, wait_until
from live_support import SERVICES, Forger, system  # noqa: F401  (fixture)
from test_msg_support import NatsServer, nats_server  # noqa: F401  (fixture)

SVCKIT = os.path.join(BIN, "svckit")
COLS, ROWS = 200, 50
FIELD_MAX = 48  # SVC__GATHER_FIELD_MAX
SANITIZED = "san" in os.environ.get("SVCKIT_BUILD", "")


def top(*args, timeout=WAIT):
    p = subprocess.run([SVCKIT, "top", *args], capture_output=True, timeout=timeout,
                       env={k: v for k, v in os.environ.items() if k != "NATS_URL"})
    return p.returncode, p.stdout.decode(), p.stderr.decode()


@pytest.fixture
def lone_nats():
    """A NATS server of its own: the forger is the only one answering."""
    s = NatsServer()
    try:
        yield s
    finally:
        s.close()


def top_rusage(*args):
    """Runs svckit top to its end: (exit status, stdout, its own rusage)."""
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen([SVCKIT, "top", *args], stdout=out, stderr=subprocess.DEVNULL,
                             env={k: v for k, v in os.environ.items() if k != "NATS_URL"})
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return p.returncode, out.read().decode(), ru


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
            # HOST: the machine's name and the HTTP port.
            assert i["version"] and i["rss_bytes"] > 0
            assert re.fullmatch(re.escape(socket.gethostname()) + r":\d+", i["host"]), i
    gw = next(s for s in doc["services"] if s["name"] == "gateway")
    assert gw["error_ratio"] == 0 and gw["p50_s"] > 0 and gw["p99_s"] >= gw["p50_s"]


def test_once_escapes_a_forged_instance(nats_server):  # noqa: F811
    """Anyone on NATS may answer $SRV.LIVE: a name with an escape sequence
    reaches the terminal as '?', never as ESC, and a huge one is cut."""
    forged = {"type": "io.svckit.v1.live_response", "name": "\x1b[2Jevil\x07", "id": "x\x1b]0;t\x07",
              "version": "\x1b[31m1" + "v" * 100000, "metadata": {"host": "h\r\n", "http_port": "1"}, "now_ms": 1,
              "buckets": [1e308, -1], "routes": [{"route": "/x", "requests": -5}] * 3}
    with Forger(nats_server, ["$SRV.LIVE"], lambda m: [forged]):
        rc, out, err = top("--nats", nats_server.url, "--once", "--interval", "0.5")
    assert rc == 0, err
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "?[2Jevil?" in out, out
    row = next(line for line in out.splitlines() if "x?]0;t?" in line)
    assert "?[31m1" + "v" * (FIELD_MAX - 6) + " " in row and "v" * (FIELD_MAX - 5) not in row, row


def test_forged_counters_saturate(lone_nats):
    """Counters whose sum passes 2^64 stay at the top (a sum that wrapped
    would be a small number, and a signed one undefined behaviour, which
    the sanitizer build stops at): no rate comes of them."""
    big = 2 ** 63 - 1
    rounds = []

    def answer(m):
        rounds.append(m)
        return [{"type": "io.svckit.v1.live_response", "name": "forged", "id": "f1", "now_ms": 1000 * len(rounds),
                 "buckets": [0.1], "routes": [{"route": "/x", "requests": big, "errors_5xx": big,
                                               "duration_buckets": [big, big]}] * 2 +
                 [{"route": "/y", "requests": len(rounds), "errors_5xx": len(rounds),
                   "duration_buckets": [len(rounds), 0]}]}]
    with Forger(lone_nats, ["$SRV.LIVE"], answer):
        rc, out, err = top("--nats", lone_nats.url, "--json", "--interval", "0.5")
    assert rc == 0, err
    svc = json.loads(out)["services"][0]
    inst = svc["instance_list"][0]
    assert svc["name"] == "forged" and inst["rps"] == 0 and svc["rps"] == 0, out
    assert inst["error_ratio"] is None and inst["p50_s"] is None, out


def test_answers_past_the_byte_cap_are_dropped(lone_nats):
    """16 forged answers of 600 KB each round: past SVC__GATHER_MAX_BYTES,
    dropped and counted, never parsed (before the cap, top grew to 732 MB)."""
    filler = {"type": "io.svckit.v1.live_response", "name": "big", "now_ms": 1,
              "routes": [{"route": "/r", "requests": 1}] * 20000}
    docs = [json.dumps(dict(filler, id=f"big{i}")).encode() for i in range(16)]
    assert all(len(d) > 600000 for d in docs)
    with Forger(lone_nats, ["$SRV.LIVE"], lambda m: docs) as f:
        rc, out, ru = top_rusage("--nats", lone_nats.url, "--json", "--interval", "1")
        asked = f.asked
    assert rc == 1  # no instance kept
    doc = json.loads(out)
    assert doc["services"] == [] and doc["dropped"] >= 16 * (asked - 1), (doc, asked)
    if not SANITIZED:  # ASan's quarantine keeps what is freed
        assert ru.ru_maxrss < 256 * 1024, f"{ru.ru_maxrss} KiB"


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
