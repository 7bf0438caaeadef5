"""`svckit run`: the per-entry stop signal, [stop=SIG] (docs/cli.md).

Parser cases go through --dry-run (accepted: exit 0; refused: exit 2 with the
line named). The runtime cases run a small python program that records which
signal it got and exits 0 only on the one it was told to expect, 1 on any
other: the stand-in for nats-server, which exits 1 on SIGTERM and 0 on SIGINT.
test_supervisor.py covers the rest of `svckit run`.
"""
import os
import re
import signal
import subprocess
import sys

import pytest

from test_supervisor import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("SVCKIT_BUILD", "build")
SVCKIT = os.path.join(ROOT, BUILD, "bin", "svckit")
PY = sys.executable
WAIT = 30.0  # upper bound for anything that should take milliseconds: the machine is shared, ASan is slow

pytestmark = pytest.mark.skipif(not os.access(SVCKIT, os.X_OK), reason=f"{SVCKIT} not built")

# Exits 0 on SIG<argv[1]>, 1 on any other of the six; writes what it got to
# <name>.got (and says it), its pid to <name>.pid.
PROGRAM = """\
import os, signal, sys
want = "SIG" + sys.argv[1]
name = os.environ["SVCKIT_PROCESS"]
def on(sig, frame):
    got = signal.Signals(sig).name
    with open(name + ".got", "w") as f:
        f.write(got)
    print("got " + got, flush=True)
    os._exit(0 if got == want else 1)
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(s, on)
with open(name + ".pid", "w") as f:
    f.write(str(os.getpid()))
print("ready", flush=True)
while True:
    signal.pause()
"""


def svckit(*args, cwd=None, env=None):
    full_env = dict(os.environ)
    full_env.pop("HOST", None)  # the port check binds HOST when set
    full_env.update(env or {})
    return subprocess.run([SVCKIT, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=WAIT)


def alive(pid):
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Run:
    """A `svckit run` on a Procfile in tmp, its output in a file."""

    def __init__(self, tmp, procfile, env=None, ignore=()):
        self.tmp = tmp
        (tmp / "prog.py").write_text(PROGRAM)
        (tmp / "Procfile").write_text(procfile)
        self.out_path = tmp / "svckit.out"
        full_env = dict(os.environ)
        full_env.pop("HOST", None)
        # The stop timeout is not what these tests check: generous, so that a
        # child slow to handle its signal on a loaded machine is not killed
        # first (below WAIT, which bounds the wait for svckit itself).
        full_env.update({"NO_COLOR": "1", "SHUTDOWN_TIMEOUT": str(int(WAIT * 2 / 3))})
        full_env.update(env or {})
        with open(self.out_path, "wb") as out:
            # Its own session: only what we send reaches svckit.
            # ignore: signals svckit starts with ignored, as under nohup.
            self.proc = subprocess.Popen([SVCKIT, "run", "-f", str(tmp / "Procfile")], cwd=tmp, env=full_env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True,
                                         preexec_fn=(lambda: [signal.signal(s, signal.SIG_IGN) for s in ignore])
                                         if ignore else None)

    @property
    def text(self):
        return self.out_path.read_text(errors="replace")

    def wait_for(self, pattern):
        rx = re.compile(pattern, re.M)
        wait_until(lambda: rx.search(self.text) or self.proc.poll() is not None, what=f"/{pattern}/")
        assert rx.search(self.text), f"no /{pattern}/ in svckit output (rc={self.proc.poll()}):\n{self.text}"

    def pid(self, name):
        path = self.tmp / f"{name}.pid"
        wait_until(lambda: path.exists() and path.read_text().strip(), what=str(path))
        return int(path.read_text())

    def got(self, name):
        path = self.tmp / f"{name}.got"
        return path.read_text() if path.exists() else None

    def stop(self, sig):
        self.proc.send_signal(sig)
        return self.proc.wait(WAIT)

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for p in self.tmp.glob("*.pid"):
            try:
                os.kill(int(p.read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass


@pytest.fixture
def run(tmp_path):
    started = []

    def start(procfile, env=None, ignore=()):
        r = Run(tmp_path, procfile, env, ignore)
        started.append(r)
        return r

    yield start
    for r in started:
        r.cleanup()


# ---- the Procfile option ---------------------------------------------------------


@pytest.mark.parametrize("options", [
    "stop=INT", "stop=SIGINT", "stop=int", "stop=SigInt", "stop=TERM", "stop=SIGTERM", "stop=QUIT",
    "stop=SIGHUP", "stop=USR1", "stop=SIGUSR2", "port=9311, stop=INT, manual", "stop=QUIT port=9312",
    "stop=${STOP_SIG:-HUP}", "stop=${UNSET_SIG:-SIGUSR1}",
])
def test_stop_option_accepted(tmp_path, options):
    (tmp_path / "Procfile").write_text(f"web [{options}]: sleep 1\n")
    r = svckit("run", "--dry-run", "web", cwd=tmp_path, env={"STOP_SIG": "int"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "web", r.stdout


@pytest.mark.parametrize("options,message", [
    ("stop=KILL", "stop must be one of TERM, INT, QUIT, HUP, USR1 or USR2 (SIG prefix optional), got 'KILL'"),
    ("stop=SIGKILL", "got 'SIGKILL'"),
    ("stop=STOP", "got 'STOP'"),
    ("stop=CHLD", "got 'CHLD'"),
    ("stop=2", "got '2'"),
    ("stop=15", "got '15'"),
    ("stop=SIG", "got 'SIG'"),
    ("stop=SIGSIGINT", "got 'SIGSIGINT'"),
    ("stop=INTX", "got 'INTX'"),
    ("stop=-INT", "got '-INT'"),
    ("stop=", "got ''"),
    ("stop=${EMPTY_SIG}", "got '${EMPTY_SIG}'"),
    ("stop=${TWO_SIGS}", "stop must be one of"),
    ("stop", "stop needs a signal name: [stop=INT]"),
    ("stop=INT TERM", "unknown option 'TERM' (known: port=N, scale_port=N, stop=SIG, after=NAME, ready=PROBE, manual)"),
    ("stop=${BAD", "stop: bad ${...} expression"),
])
def test_stop_option_refused_with_the_line(tmp_path, options, message):
    (tmp_path / "Procfile").write_text("# a comment\n"
                                       "ok [stop=INT]: sleep 1\n"
                                       f"web [{options}]: sleep 1\n")
    r = svckit("run", "--dry-run", cwd=tmp_path, env={"EMPTY_SIG": "", "TWO_SIGS": "INT TERM"})
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    assert "Procfile: line 3: " in r.stderr, r.stderr
    assert message in r.stderr, r.stderr


def test_help_names_the_option():
    r = svckit("run", "--help")
    assert r.returncode == 0 and "stop=SIG" in r.stdout


@pytest.mark.skipif(not os.access("/usr/sbin/nats-server", os.X_OK), reason="no nats-server")
def test_the_repository_procfile_stops_nats_with_sigint():
    """The reference Procfile parses, and its nats line carries stop=INT."""
    r = svckit("run", "--dry-run", "--skip-missing", "nats", cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = [l for l in open(os.path.join(ROOT, "Procfile")) if re.match(r"^nats\s", l)]
    assert len(lines) == 1 and re.search(r"\[[^]]*\bstop=INT\b[^]]*\]", lines[0]), lines


# ---- shutdown ---------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_int_makes_the_stop_clean(run, sig):
    r = run(f"natsish [stop=INT]: {PY} prog.py INT\n"
            "plain: sleep 3600\n")
    r.wait_for(r"^natsish +\| ready$")
    pid = r.pid("natsish")
    assert r.stop(sig) == 0, r.text
    assert r.got("natsish") == "SIGINT"
    assert not alive(pid)
    text = r.text
    assert re.search(r"^natsish +\| got SIGINT$", text, re.M), text
    assert re.search(rf"^svckit +\| received {sig.name}, stopping 2 processes", text, re.M), text
    assert re.search(r"^svckit +\| natsish stopped$", text, re.M), text
    assert re.search(r"^svckit +\| plain stopped$", text, re.M), text
    assert re.search(r"^svckit +\| all processes stopped$", text, re.M), text
    assert "not all cleanly" not in text


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_without_stop_int_the_same_program_is_not_clean(run, sig):
    """The control: SIGTERM by default, the program exits 1, the stop fails."""
    r = run(f"natsish: {PY} prog.py INT\n"
            "plain: sleep 3600\n")
    r.wait_for(r"^natsish +\| ready$")
    pid = r.pid("natsish")
    assert r.stop(sig) == 1, r.text
    assert r.got("natsish") == "SIGTERM"
    assert not alive(pid)
    text = r.text
    assert re.search(r"^svckit +\| natsish exited with status 1$", text, re.M), text
    assert re.search(r"^svckit +\| plain stopped$", text, re.M), text
    assert re.search(r"^svckit +\| stopped, not all cleanly$", text, re.M), text
    assert "all processes stopped" not in text


@pytest.mark.parametrize("option,expected", [
    ("", "TERM"), ("[stop=TERM]", "TERM"), ("[stop=SIGINT]", "INT"), ("[stop=quit]", "QUIT"),
    ("[stop=HUP]", "HUP"), ("[stop=USR1]", "USR1"), ("[stop=SigUsr2]", "USR2"),
])
def test_each_name_sends_its_signal(run, option, expected):
    r = run(f"one {option}: {PY} prog.py {expected}\n")
    r.wait_for(r"^one +\| ready$")
    assert r.stop(signal.SIGINT) == 0, r.text
    assert r.got("one") == "SIG" + expected
    r.wait_for(r"^svckit +\| all processes stopped$")


def test_each_entry_gets_its_own_signal_and_its_helpers_too(run, tmp_path):
    # A helper forked by the child is in its process group: it gets the same signal.
    r = run(f"a [stop=USR1]: sh -c '{PY} prog.py USR1 & wait'\n"
            f"b: {PY} prog.py TERM\n")
    # sh passes SVCKIT_PROCESS on: the helper of a writes a.pid and a.got.
    r.wait_for(r"^a +\| ready$")
    r.wait_for(r"^b +\| ready$")
    helper = r.pid("a")
    assert r.stop(signal.SIGTERM) == 0, r.text
    assert (r.got("a"), r.got("b")) == ("SIGUSR1", "SIGTERM"), r.text
    assert not alive(helper), r.text


# A helper that records every signal it gets and never exits of one (SIGKILL
# ends it): all catchable signals blocked, taken with sigwait.
RECORDER = """\
import os, signal
sigs = set(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP}
signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
with open("helper.pid", "w") as f:
    f.write(str(os.getpid()))
while True:
    got = signal.sigwait(sigs)
    with open("helper.got", "a") as f:
        f.write(signal.Signals(got).name + "\\n")
"""


def test_an_adopted_helper_gets_its_entrys_signal_only(run, tmp_path):
    """A helper whose parent exited stays in its entry's process group but
    becomes svckit's child (the subreaper). At a stop it gets the entry's
    stop signal with its group and nothing else: svckit sent adopted
    children SIGTERM as well, so a helper could see SIGTERM before or inside
    its handler of SIGUSR1 and stop as if told the wrong thing (the cause of
    the occasional failure of the test above under load)."""
    (tmp_path / "recorder.py").write_text(RECORDER)
    # The subshell starts the recorder and exits at once: the recorder is
    # orphaned in a's group while a's main program runs.
    r = run(f"a [stop=USR1]: sh -c '({PY} recorder.py &); exec {PY} prog.py USR1'\n",
            env={"SHUTDOWN_TIMEOUT": "1"})
    r.wait_for(r"^a +\| ready$")
    pidfile = tmp_path / "helper.pid"
    wait_until(lambda: pidfile.exists() and pidfile.read_text(), what="the recorder's pid")
    helper = int(pidfile.read_text())

    def ppid(pid):
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    wait_until(lambda: ppid(helper) == r.proc.pid, what="svckit to adopt the recorder")
    # It ignores its signal, so svckit kills it at the deadline: exit 1.
    assert r.stop(signal.SIGTERM) == 1, r.text
    assert r.got("a") == "SIGUSR1", r.text
    assert (tmp_path / "helper.got").read_text().split() == ["SIGUSR1"], r.text
    assert not alive(helper)


# Under nohup svckit starts with SIGHUP ignored: its children start with every
# signal at its default all the same, or stop=HUP could never stop them.
@pytest.mark.parametrize("ignore", [(), (signal.SIGHUP,)], ids=["plain", "nohup"])
def test_dying_of_the_stop_signal_is_clean(run, ignore):
    # sleep has no handler: SIGHUP kills it, which is what stop=HUP asked for.
    r = run("hup [stop=HUP]: sleep 3600\n", ignore=ignore)
    r.wait_for(r"started hup")
    assert r.stop(signal.SIGINT) == 0, r.text
    r.wait_for(r"^svckit +\| hup stopped$")


@pytest.mark.parametrize("ignore", [(), (signal.SIGHUP,)], ids=["plain", "nohup"])
def test_dying_of_another_signal_is_not_clean(run, ignore):
    """The control for the above: the default SIGTERM, but the program dies of
    SIGHUP, which it was not sent."""
    r = run("hup: sh -c 'trap \"kill -HUP $$\" TERM; echo ready; while :; do sleep 0.05; done'\n",
            ignore=ignore)
    r.wait_for(r"^hup +\| ready$")
    assert r.stop(signal.SIGINT) == 1, r.text
    r.wait_for(r"^svckit +\| hup killed by signal 1 \(SIGHUP\)$")


def test_a_killed_supervisor_sends_the_stop_signal(run):
    """PR_SET_PDEATHSIG carries the entry's stop signal."""
    r = run(f"natsish [stop=INT]: {PY} prog.py INT\n"
            f"plain: {PY} prog.py TERM\n")
    r.wait_for(r"^natsish +\| ready$")
    r.wait_for(r"^plain +\| ready$")
    r.proc.kill()
    r.proc.wait(WAIT)
    try:
        wait_until(lambda: r.got("natsish") and r.got("plain"), what="both children to get their signal")
    finally:
        print(r.text)  # shown if the test fails: what the children said before and after
    assert (r.got("natsish"), r.got("plain")) == ("SIGINT", "SIGTERM"), r.text
