"""Resource exhaustion: a service out of file descriptors backs off instead of
spinning, sheds connections itself before the kernel refuses, and comes back
when the flood is over; a flood of connections or uploads costs bounded
memory, which is returned afterwards."""
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import Service, read_response

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def spinner_ticks(seconds):
    """How much CPU a thread that never sleeps gets on this machine right now:
    a child spinning for `seconds`, measured by its rusage."""
    p = subprocess.Popen([sys.executable, "-c",
                          f"import time\nend = time.monotonic() + {seconds}\n"
                          "while time.monotonic() < end: pass\n"])
    _, _, ru = os.wait4(p.pid, 0)
    p.returncode = 0
    return (ru.ru_utime + ru.ru_stime) * CLK_TCK


def assert_idle(svc, seconds=3.0):
    """The service does no work while nothing happens. Work, not time: the CPU
    it uses over a quiet period is compared with what a spinning process
    gets over the same period (a worker stuck in a loop would get about as
    much, however loaded the machine); an idle one uses next to nothing (the
    100 ms ticks)."""
    before = cpu_ticks(svc.proc.pid)
    ref = spinner_ticks(seconds)
    used = cpu_ticks(svc.proc.pid) - before
    assert used <= max(10, ref / 5), f"{used} ticks while idle (a spinner got {ref:.0f})"


def metric(svc, name, **labels):
    status, _, body = svc.request("GET", "/metrics")
    assert status == 200
    total = 0.0
    for line in body.decode().splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for(cond, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def healthy(svc):
    try:
        return svc.request("GET", "/healthz", timeout=2)[0] == 200
    except OSError:
        return False


@pytest.fixture
def many_fds():
    """This process may open a few thousand sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def flood(port, n, partial=False):
    """Opens n connections at once (the kernel completes the handshakes), some
    with half a request sent, then closes them all."""
    socks = []
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            continue
        socks.append(s)
    if partial:
        for s in socks[::3]:
            try:
                s.send(b"GET /items/1 HTTP/1.1\r\nHost: t\r\n")
            except OSError:
                pass
    for s in socks:
        s.close()


def accept_log_lines(svc):
    return [ln for ln in svc.log_lines() if str(ln.get("msg", "")).startswith("accept failed")]


# ---- file descriptors ------------------------------------------------------------

def test_connection_floods_under_a_small_descriptor_limit(many_fds):
    # What livelocked a service for good: with 256 descriptors, 1,000
    # connections opened and closed at once, again and again. Both workers
    # stayed in libuv's accept loop at full CPU, answering nothing, ignoring
    # SIGTERM, logging a line per failed accept.
    with Service("testsvc", env={"WORKERS": "2"}, argv_prefix=["prlimit", "--nofile=256"]) as svc:
        for i in range(12):
            flood(svc.port, 1000, partial=i % 2 == 1)
            wait_for(lambda: healthy(svc), what=f"/healthz after flood {i}")
        # The cap comes from the descriptor limit, and says so once.
        lowered = [ln for ln in svc.log_lines() if "HTTP_MAX_CONNECTIONS lowered" in str(ln.get("msg"))]
        assert len(lowered) == 1, lowered
        wait_for(lambda: metric(svc, "http_connections_open") <= 1, what="every flood connection closed")
        assert_idle(svc)
        st, _, body = svc.request("GET", "/items/7")
        assert st == 200 and json.loads(body)["id"] == "7"
        # Shed, not refused by the kernel: no accept ever failed.
        assert metric(svc, "http_accept_errors_total") == 0
        assert svc.stop() == 0
        assert len(svc.read_log()) < 64 * 1024


def test_out_of_descriptors_accept_backs_off_and_recovers(many_fds):
    # Every descriptor taken by something else: accept fails with EMFILE.
    # The listener rests (connections wait in the kernel's queue), the failure
    # is counted and logged at most once a second, the worker does nothing
    # meanwhile, and the waiting connections are served once descriptors free.
    with Service("testsvc", env={"WORKERS": "2"}, argv_prefix=["prlimit", "--nofile=512"]) as svc:
        hold_ms = 3000
        st, _, body = svc.request("GET", f"/fds?ms={hold_ms}")
        assert st == 200 and json.loads(body)["held"] > 0
        t0 = time.monotonic()
        waiting = []
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", svc.port), timeout=10)
            s.sendall(b"GET /items/%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
            waiting.append(s)
        # While the descriptors are held, the process does no work.
        before = cpu_ticks(svc.proc.pid)
        ref = spinner_ticks(1.5)
        used = cpu_ticks(svc.proc.pid) - before
        assert used <= max(10, ref / 5), f"{used} ticks while out of descriptors (a spinner got {ref:.0f})"
        for i, s in enumerate(waiting):
            status, _, body = read_response(s, timeout=20)
            assert status == 200 and json.loads(body)["id"] == str(i)
            s.close()
        held_for = time.monotonic() - t0
        failed = metric(svc, "http_accept_errors_total", reason="emfile")
        assert failed >= 1
        # Retried every 100 ms or when a connection closes, not in a loop.
        assert failed <= 2 * (held_for * 10 + 20) + 40, failed
        lines = accept_log_lines(svc)
        assert 1 <= len(lines) <= held_for + 2, lines
        assert healthy(svc)
        assert_idle(svc)
        svc.signal(signal.SIGTERM)
        assert svc.proc.wait(15) == 0
