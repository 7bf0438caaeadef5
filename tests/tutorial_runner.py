"""docs/tutorial.md, run as a reader would: every shell block in order, every
file written, every answer shown compared with the real one.

Used by tests/integration/test_tutorial.py (every step but the container
ones) and tests/images/test_tutorial.py (all of them). Plain Python, no
pytest: both call run_tutorial().

The tutorial's source says how to run a block in an HTML comment right above
it (invisible on a rendered page):

  (none), above a sh block    run it; it must exit 0
  <!-- tutorial: file PATH -->        the block is the whole of PATH (relative
                                      to the shell's current folder): write it
  <!-- tutorial: output -->           the block is what the previous sh block
                                      printed: json blocks compare as JSON
                                      values, text blocks line by line
  <!-- tutorial: background NAME ready=URL -->
                                      start the sh block and leave it running,
                                      as in a terminal of its own; wait until
                                      URL (http://... answering 200, or
                                      tcp:HOST:PORT taking a connection)
  <!-- tutorial: stop NAME ... -->    (no block) Ctrl-C: SIGINT to each NAME's
                                      process group, wait for it to end
  images                              (with any of the above) a container step:
                                      run only when containers are
  retry                               run the block again until its output
                                      matches (what is shown is eventually true)
  wait=URL                            wait for URL before running the block

Any other fenced block is an error: nothing in the tutorial goes unchecked.

Shell state carries from block to block as in one terminal: the current
folder and the shell's variables (exported or not) are saved at the end of a
block and restored at the start of the next. The reader's ports (8080, 8091,
8092, 4222) are replaced everywhere by free ones, since tests bind no fixed
port; HOME is a temporary folder where ~/svckit is a link to this checkout.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TUTORIAL = os.path.join(ROOT, "docs", "tutorial.md")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from ports import free_port  # noqa: E402

READER_PORTS = (8080, 8091, 8092, 4222)
# Long enough for a compiler run or an image build on a loaded machine.
STEP_TIMEOUT = 900
WAIT = 60.0

DIRECTIVE = re.compile(r"^<!--\s*tutorial:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^```(\S*)\s*$")


class TutorialError(Exception):
    pass


class Step:
    """One thing the tutorial asks: kind is run, file, output or stop."""

    def __init__(self, kind, line, lang="", text="", **opts):
        self.kind, self.line, self.lang, self.text = kind, line, lang, text
        self.path = opts.get("path")
        self.name = opts.get("name")          # background: its name
        self.names = opts.get("names", [])    # stop: whom
        self.ready = opts.get("ready")
        self.wait = opts.get("wait")
        self.images = opts.get("images", False)
        self.retry = opts.get("retry", False)

    def __repr__(self):
        return "docs/tutorial.md:%d (%s)" % (self.line, self.kind)


def parse_directive(text, line):
    words = text.split()
    opts = {"images": False, "retry": False}
    kind, args = None, []
    for w in words:
        if w in ("images", "retry"):
            opts[w] = True
        elif w.startswith(("ready=", "wait=")):
            k, v = w.split("=", 1)
            opts[k] = v
        elif kind is None and w in ("file", "output", "background", "stop"):
            kind = w
        else:
            args.append(w)
    if kind == "file" and len(args) == 1:
        opts["path"] = args[0]
    elif kind == "background" and len(args) == 1 and opts.get("ready"):
        opts["name"] = args[0]
    elif kind == "stop" and args:
        opts["names"] = args
    elif args or (kind == "background"):
        raise TutorialError("docs/tutorial.md:%d: cannot read the directive %r" % (line, text))
    return kind, opts


def parse(path=TUTORIAL):
    """The steps of the tutorial, in order."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    steps, pending, i = [], None, 0
    while i < len(lines):
        m = DIRECTIVE.match(lines[i])
        if m:
            if pending:
                raise TutorialError("docs/tutorial.md:%d: a directive with no block under it" % pending[2])
            kind, opts = parse_directive(m.group(1), i + 1)
            if kind == "stop":
                steps.append(Step("stop", i + 1, **opts))
            else:
                pending = (kind, opts, i + 1)
            i += 1
            continue
        f = FENCE.match(lines[i])
        if f and f.group(1):
            start, lang = i + 1, f.group(1)
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            if j == len(lines):
                raise TutorialError("docs/tutorial.md:%d: a block that never ends" % start)
            text = "\n".join(lines[i + 1:j]) + "\n"
            kind, opts = (pending[0], pending[1]) if pending else (None, {})
            pending = None
            if kind is None:
                if lang != "sh":
                    raise TutorialError("docs/tutorial.md:%d: a ```%s block no test runs or checks: give it a "
                                        "<!-- tutorial: ... --> directive" % (start, lang))
                kind = "run"
            elif kind == "background" and lang != "sh":
                raise TutorialError("docs/tutorial.md:%d: background needs a sh block" % start)
            steps.append(Step(kind, start, lang, text, **opts))
            i = j + 1
            continue
        if pending and lines[i].strip():
            raise TutorialError("docs/tutorial.md:%d: a directive with no block under it" % pending[2])
        i += 1
    if pending:
        raise TutorialError("docs/tutorial.md:%d: a directive with no block under it" % pending[2])
    return steps


def is_ready(target):
    """True when an http:// URL answers 200 or tcp:HOST:PORT takes a connection."""
    try:
        if target.startswith("tcp:"):
            host, port = target[4:].rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=2):
                return True
        with urllib.request.urlopen(target, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def same_output(lang, shown, got):
    if lang == "json":
        try:
            return json.loads(got) == json.loads(shown)
        except ValueError:
            return False
    return [ln.rstrip() for ln in got.strip("\n").split("\n")] == \
           [ln.rstrip() for ln in shown.strip("\n").split("\n")]


class Runner:
    def __init__(self, home, images, log=print):
        self.home, self.images, self.log = home, images, log
        self.ports = {p: free_port() for p in READER_PORTS}
        self.work = tempfile.mkdtemp(prefix="svckit-tutorial-state-")
        self.state = os.path.join(self.work, "state")
        self.cwd_file = os.path.join(self.work, "cwd")
        self.base = os.path.join(self.work, "bash-vars")
        self.background = {}   # name -> (Popen, log path)
        self.last_out = None
        os.symlink(ROOT, os.path.join(home, "svckit"))
        with open(self.cwd_file, "w") as f:
            f.write(home)
        # The variables of a bare bash are its own, never saved; but PATH,
        # which it sets too, is the reader's.
        names = subprocess.run(["env", "-i", "bash", "-c", "compgen -v"], capture_output=True, text=True).stdout
        names = [n for n in names.split() if n != "PATH"]
        with open(self.base, "w") as f:
            f.write("\n".join(names + ["OLDPWD", "PIPESTATUS"]) + "\n")
        env = {k: v for k, v in os.environ.items()
               if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "PKG_CONFIG_PATH",
                            "NATS_URL", "DATA_DIR", "JWT_SECRET", "ADMIN_PASSWORD", "GATEWAY_CONFIG",
                            "SVCKIT_BUILD")}
        env.update(HOME=home, HOST="127.0.0.1", PORT=str(self.ports[8080]), LOG_LEVEL="warn", NO_COLOR="1",
                   NATS_URL="nats://127.0.0.1:%d" % self.ports[4222])
        self.env = env
        with open(self.state, "w") as f:
            f.write("")

    def ported(self, text):
        return re.sub(r"(?<!\d)(%s)(?!\d)" % "|".join(map(str, READER_PORTS)),
                      lambda m: str(self.ports[int(m.group(1))]), text)

    def script(self, body):
        return ('set -eo pipefail\n. "%s"\ncd "$(cat "%s")"\n%s\npwd > "%s"\n'
                'declare -p $(compgen -v | grep -vxF -f "%s") > "%s" 2>/dev/null || true\n'
                % (self.state, self.cwd_file, body, self.cwd_file, self.base, self.state))

    def cwd(self):
        with open(self.cwd_file) as f:
            return f.read().strip()

    def run_block(self, step):
        p = subprocess.run(["bash", "-c", self.script(self.ported(step.text))], env=self.env,
                           capture_output=True, text=True, timeout=STEP_TIMEOUT)
        if p.returncode != 0:
            raise TutorialError("%r failed (exit %d):\n%s\n--- stdout\n%s--- stderr\n%s"
                                % (step, p.returncode, step.text, p.stdout[-3000:], p.stderr[-3000:]))
        return p.stdout

    def start(self, step):
        logf = os.path.join(self.work, step.name + ".log")
        out = open(logf, "w")
        body = 'set -eo pipefail\n. "%s"\ncd "$(cat "%s")"\n%s' % (self.state, self.cwd_file, self.ported(step.text))
        proc = subprocess.Popen(["bash", "-c", body], env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        out.close()
        self.background[step.name] = (proc, logf)
        target = self.ported(step.ready)
        deadline = time.monotonic() + STEP_TIMEOUT
        while not is_ready(target):
            if proc.poll() is not None:
                raise TutorialError("%r: %s ended (exit %d) before %s was ready:\n%s"
                                    % (step, step.name, proc.returncode, target, self.tail(logf)))
            if time.monotonic() > deadline:
                raise TutorialError("%r: %s not ready after %d s:\n%s" % (step, target, STEP_TIMEOUT, self.tail(logf)))
            time.sleep(0.1)

    @staticmethod
    def tail(path):
        with open(path, errors="replace") as f:
            return f.read()[-3000:]

    def stop(self, name, step=None):
        proc, logf = self.background.pop(name)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise TutorialError("%r: %s did not end within %d s of Ctrl-C:\n%s"
                                    % (step, name, WAIT, self.tail(logf)))
        elif step is not None:
            raise TutorialError("%r: %s had ended before its stop (exit %d):\n%s"
                                % (step, name, proc.returncode, self.tail(logf)))

    def wait_for(self, target, step):
        deadline = time.monotonic() + WAIT
        while not is_ready(target):
            if time.monotonic() > deadline:
                raise TutorialError("%r: %s not ready after %d s" % (step, target, WAIT))
            time.sleep(0.1)

    def run(self, steps):
        """Runs steps in order; raises TutorialError at the first that fails.
        Returns how many ran."""
        done, skip_output = 0, False
        for n, step in enumerate(steps):
            if step.images and not self.images:
                skip_output = True
                continue
            if step.kind == "output":
                if skip_output:
                    skip_output = False
                    continue
                if self.last_out is None:
                    raise TutorialError("%r: an output with no command before it" % step)
                if not same_output(step.lang, step.text, self.last_out):
                    raise TutorialError("%r: the tutorial shows\n%s\nbut the command printed\n%s"
                                        % (step, step.text, self.last_out))
                done += 1
                continue
            skip_output = False
            if step.kind == "file":
                path = os.path.join(self.cwd(), step.path)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(self.ported(step.text))
            elif step.kind == "background":
                self.start(step)
            elif step.kind == "stop":
                for name in step.names:
                    self.stop(name, step)
            else:
                if step.wait:
                    self.wait_for(self.ported(step.wait), step)
                self.last_out = self.run_block(step)
                nxt = steps[n + 1] if n + 1 < len(steps) else None
                if step.retry and nxt is not None and nxt.kind == "output":
                    deadline = time.monotonic() + WAIT
                    while not same_output(nxt.lang, nxt.text, self.last_out) and time.monotonic() < deadline:
                        time.sleep(0.2)
                        self.last_out = self.run_block(step)
            done += 1
        return done

    def close(self):
        """Stops whatever still runs (a failed run), quietly."""
        for name in list(self.background):
            try:
                self.stop(name)
            except TutorialError:
                pass
        subprocess.run(["rm", "-rf", self.work])


def run_tutorial(home, images, log=print):
    """Parses and runs docs/tutorial.md in home; returns the number of steps
    run. Raises TutorialError with what went wrong."""
    steps = parse()
    r = Runner(home, images, log)
    try:
        return r.run(steps)
    finally:
        r.close()
