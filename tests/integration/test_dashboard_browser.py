"""The dashboard in a real browser: Debian's chromium, headless, driven over
the DevTools protocol on a pipe (--remote-debugging-pipe: fd 3 in, fd 4 out,
NUL-separated JSON). It opens /dashboard?token=DASHBOARD_TOKEN (the cookie
path a person takes), waits until the page, fed by the event stream, lists
every running service and instance, checks that nothing from the page broke
the Content-Security-Policy, and saves a screenshot under the artifact
directory (SVCKIT_TEST_ARTIFACTS, default $SVCKIT_BUILD/test-artifacts).

chromium comes from scripts/deps.sh (make test installs it); without it the
test is skipped, saying so."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import BUILD, WAIT, wait_until
from live_support import DASH_TOKEN, SERVICES, system  # noqa: F401  (fixture)
from test_msg_support import nats_server  # noqa: F401  (fixture)

CHROMIUM = shutil.which("chromium")
ARTIFACTS = os.environ.get("SVCKIT_TEST_ARTIFACTS", os.path.join(BUILD, "test-artifacts"))

pytestmark = pytest.mark.skipif(not CHROMIUM, reason="chromium not installed (scripts/deps.sh installs it)")


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

    def _read(self, deadline):
        while b"\0" not in self.buf:
            import select
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


PAGE_STATE = """(() => {
  const cells = id => [...document.querySelectorAll('#' + id + ' tbody tr')].map(
      tr => [...tr.children].map(td => td.textContent));
  return {instances: cells('instances'), services: cells('services'), routes: cells('routes'),
          conn: document.getElementById('conn').textContent,
          nodes: [...document.querySelectorAll('#map .node text:first-of-type')].map(t => t.textContent),
          edges: document.querySelectorAll('#map path.edge').length,
          traces: document.getElementById('traces-empty').textContent};
})()"""


@pytest.mark.parametrize("width,height,name", [(1280, 900, "dashboard.png"), (390, 844, "dashboard-phone.png")])
def test_dashboard_in_chromium(system, width, height, name):
    expected = system.instances()
    b = Browser(width, height)
    try:
        b.call("Page.navigate", session=True, url=f"http://127.0.0.1:{system.gateway.port}/dashboard?token={DASH_TOKEN}")

        def live():
            system.traffic(2)
            st = b.eval(PAGE_STATE)
            if not st or st["conn"] != "live":
                return None
            rows = {(r[0], r[1]) for r in st["instances"]}
            rated = [r for r in st["services"] if r[0] == "gateway" and r[2] not in ("-", "0.0")]
            return rows == expected and rated and st
        st = wait_until(live, what="every service and instance on the page, a live gateway rate")
        assert {r[0] for r in st["services"]} == set(SERVICES)
        assert set(st["nodes"]) == set(SERVICES)
        assert st["edges"] >= 4  # gateway -> auth, products, orders, payments... as routed
        assert any(r[0] == "gateway" and r[2] == "/products*" for r in st["routes"])
        # A trace of that traffic is listed (the list reloads every 5 s) and
        # opens as a waterfall of spans from the gateway and products.
        find = ("[...document.querySelectorAll('#traces-recent li')]"
                ".find(li => li.textContent.startsWith('gateway GET /products'))")
        wait_until(lambda: system.traffic(1) or b.eval(f"!!{find}"), what="a catalog trace in the recent list")
        b.eval(f"{find}.click()")
        rows = wait_until(lambda: b.eval(
            "document.getElementById('waterfall').hidden ? null : "
            "[...document.querySelectorAll('#waterfall-rows .row .name')].map(n => n.textContent.trim())"),
            what="the waterfall of the trace")
        assert any(r.startswith("gateway") for r in rows) and any(r.startswith("products") for r in rows), rows
        # Nothing the page did was refused by its CSP, and it threw nothing.
        problems = [e for e in b.events if e.get("method") in ("Runtime.exceptionThrown",)
                    or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
                        and "Content Security Policy" in e["params"]["entry"].get("text", ""))]
        assert not problems, problems
        os.makedirs(ARTIFACTS, exist_ok=True)
        shot = b.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)
        path = os.path.join(ARTIFACTS, name)
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        assert os.path.getsize(path) > 1000
    finally:
        b.close()
