"""Headless chromium for the gateway's pages (test_dashboard_browser.py,
test_explorer_browser.py): Debian's chromium, driven over the DevTools
protocol on a pipe (--remote-debugging-pipe: fd 3 in, fd 4 out, NUL-separated
JSON). Browser.problems() is what a page did wrong: exceptions, and anything
its Content-Security-Policy refused; Browser.screenshot() saves the page under
the artifact directory (SVCKIT_TEST_ARTIFACTS, default
$SVCKIT_BUILD/test-artifacts).

chromium comes from scripts/deps.sh (make test installs it); tests that need
it carry `needs_chromium`, which skips them without it, saying so."""
import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import BUILD, WAIT

CHROMIUM = shutil.which("chromium")
ARTIFACTS = os.environ.get("SVCKIT_TEST_ARTIFACTS", os.path.join(BUILD, "test-artifacts"))

needs_chromium = pytest.mark.skipif(not CHROMIUM, reason="chromium not installed (scripts/deps.sh installs it)")

# Runs in every document before its own scripts: keeps what the CSP refused.
WATCH_CSP = """window.__cspViolations = [];
document.addEventListener('securitypolicyviolation',
    e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"""


class Browser:
    """Headless chromium and one page, over the DevTools pipe."""

    def __init__(self, width=1280, height=900):
        self.profile = tempfile.mkdtemp(prefix="svckit-chromium-")
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()

        def fds():
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)
        self.log = open(os.path.join(self.profile, "chromium.log"), "wb")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
             f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"],
            preexec_fn=fds, close_fds=False, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        os.close(to_child_r)
        os.close(from_child_w)
        self.buf = b""
        self.seq = 0
        self.events = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Runtime.enable", session=True)
        self.call("Page.enable", session=True)
        self.call("Log.enable", session=True)
        self.call("Page.addScriptToEvaluateOnNewDocument", session=True, source=WATCH_CSP)
        # The page's viewport is width x height even below the smallest window
        # chromium makes (500 px wide): a phone's 390 px are 390 px.
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=width < 500)

    def _read(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            r, _, _ = select.select([self.from_child], [], [], left)
            if r:
                chunk = os.read(self.from_child, 1 << 20)
                if not chunk:
                    raise ConnectionError("chromium closed the pipe")
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, session=False, **params):
        self.seq += 1
        msg = {"id": self.seq, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self.to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + WAIT
        while True:
            m = self._read(deadline)
            if m.get("id") == self.seq:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def eval(self, expr):
        r = self.call("Runtime.evaluate", session=True, expression=expr, returnByValue=True)
        return r.get("result", {}).get("value")

    def problems(self):
        """Exceptions thrown, and what the Content-Security-Policy refused
        (logged, or seen by the page) since the browser started."""
        logged = [e for e in self.events if e.get("method") == "Runtime.exceptionThrown"
                  or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
                      and "Content Security Policy" in e["params"]["entry"].get("text", ""))]
        return logged + (self.eval("window.__cspViolations") or [])

    def screenshot(self, name):
        """The whole page as ARTIFACTS/name (PNG); returns the path."""
        os.makedirs(ARTIFACTS, exist_ok=True)
        shot = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)
        path = os.path.join(ARTIFACTS, name)
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        return path

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.to_child, self.from_child):
            os.close(fd)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)
