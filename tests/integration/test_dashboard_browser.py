"""The dashboard in a real browser (headless chromium, browser_support.py).
It opens /dashboard?token=DASHBOARD_TOKEN (the cookie path a person takes),
waits until the page, fed by the event stream, lists every running service
and instance and, after an order, the saga's event flows as dashed arrows,
checks that nothing from the page broke the Content-Security-Policy, and
saves a screenshot under the artifact directory. Skipped without chromium."""
import os

import pytest

from browser_support import Browser, needs_chromium
from conftest import wait_until
from live_support import DASH_TOKEN, SERVICES, system  # noqa: F401  (fixture)
from test_dashboard_events import place, place_and_settle, stock_up
from test_msg_support import nats_server  # noqa: F401  (fixture)

pytestmark = needs_chromium


PAGE_STATE = """(() => {
  const cells = id => [...document.querySelectorAll('#' + id + ' tbody tr')].map(
      tr => [...tr.children].map(td => td.textContent));
  return {instances: cells('instances'), services: cells('services'), routes: cells('routes'),
          conn: document.getElementById('conn').textContent,
          nodes: [...document.querySelectorAll('#map .node text:first-of-type')].map(t => t.textContent),
          edges: document.querySelectorAll('#map path.edge').length,
          eventEdges: [...document.querySelectorAll('#map path.edge.event')].map(
              p => p.dataset.from + '>' + p.dataset.to + ':' + getComputedStyle(p).strokeDasharray),
          traces: document.getElementById('traces-empty').textContent};
})()"""


@pytest.mark.parametrize("width,height,name", [(1280, 900, "dashboard.png"), (390, 844, "dashboard-phone.png")])
def test_dashboard_in_chromium(system, width, height, name):
    expected = system.instances()
    # An order, so the saga's events are on the map (dashed arrows).
    stock_up(system)
    place_and_settle(system, 1)
    b = Browser(width, height)
    try:
        b.call("Page.navigate", session=True, url=f"http://127.0.0.1:{system.gateway.port}/dashboard?token={DASH_TOKEN}")

        def live():
            system.traffic(2)
            place(system)  # events flowing while the page is read (and shot)
            st = b.eval(PAGE_STATE)
            if not st or st["conn"] != "live":
                return None
            rows = {(r[0], r[1]) for r in st["instances"]}
            rated = [r for r in st["services"] if r[0] == "gateway" and r[2] not in ("-", "0.0")]
            flows = {e.split(":")[0] for e in st["eventEdges"]}
            return rows == expected and rated and {"orders>products", "payments>orders"} <= flows and st
        st = wait_until(live, what="every service and instance on the page, a live gateway rate")
        assert {r[0] for r in st["services"]} == set(SERVICES)
        # The map draws every service of the gateway's table, running or
        # not: the table's recommendations (a Node.js example) is not run here.
        assert set(st["nodes"]) == set(SERVICES) | {"recommendations"}
        assert st["edges"] >= 4  # gateway -> auth, products, orders, payments... as routed
        # Event edges are drawn dashed, unlike the solid RPC ones.
        assert all(e.split(":", 1)[1] not in ("", "none") for e in st["eventEdges"]), st["eventEdges"]
        assert b.eval("document.querySelector('#map path.edge:not(.event)') && "
                      "getComputedStyle(document.querySelector('#map path.edge:not(.event)')).strokeDasharray") == "none"
        assert b.eval("[...document.querySelectorAll('#map text.elabel.event')].some(t => t.textContent.endsWith('ev/s'))")
        assert any(r[0] == "gateway" and r[2] == "/products*" for r in st["routes"])
        # A trace of that traffic is listed (the list reloads every 5 s) and
        # opens as a waterfall of spans from the gateway and products.
        find = ("[...document.querySelectorAll('#traces-recent li')]"
                ".find(li => li.textContent.startsWith('gateway GET /products'))")
        wait_until(lambda: system.traffic(1) or place(system) and b.eval(f"!!{find}"),
                   what="a catalog trace in the recent list")
        b.eval(f"{find}.click()")
        rows = wait_until(lambda: b.eval(
            "document.getElementById('waterfall').hidden ? null : "
            "[...document.querySelectorAll('#waterfall-rows .row .name')].map(n => n.textContent.trim())"),
            what="the waterfall of the trace")
        assert any(r.startswith("gateway") for r in rows) and any(r.startswith("products") for r in rows), rows
        # Nothing the page did was refused by its CSP, and it threw nothing.
        assert not b.problems(), b.problems()
        assert os.path.getsize(b.screenshot(name)) > 1000
    finally:
        b.close()
