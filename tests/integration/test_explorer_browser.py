"""The API explorer (/docs) in a real browser (headless chromium,
browser_support.py), against the whole shop: the page lists every operation
of the merged /openapi.json under its service, and a person registers, logs
in and takes the token from the login answer, reads a product (200), sends an
order with an invalid body (400 with details), and is refused once the token
is forgotten (401), all through the page; nothing breaks its
Content-Security-Policy. A screenshot goes to the artifact directory.
Skipped without chromium."""
import json
import os

import pytest

from browser_support import Browser, needs_chromium
from conftest import wait_until
from shop_support import Shop
from test_gateway_support import FakeInstance, gateway, wait_instances
from test_msg_support import nats_server  # noqa: F401  (fixture)

pytestmark = needs_chromium

LISTED = """[...document.querySelectorAll('#endpoints .group')].flatMap(g => [...g.querySelectorAll('.endpoint')].map(
    b => [g.querySelector('h2').textContent, b.querySelector('.method').textContent,
          b.querySelector('.path').textContent, (b.querySelector('.summary') || {}).textContent || '']))"""

ANSWER = """(() => document.getElementById('response').hidden ? null : {
  status: document.getElementById('res-status').textContent,
  request: document.getElementById('res-request').textContent,
  headers: Object.fromEntries([...document.querySelectorAll('#res-headers tr')].map(
      tr => [tr.children[0].textContent, tr.children[1].textContent])),
  body: document.getElementById('res-body').textContent})()"""


@pytest.fixture(scope="module")
def shop(nats_server):  # noqa: F811
    s = Shop(nats_server)
    try:
        yield s
    finally:
        s.close()


def merged(gw):
    """The gateway's document once every service answered it, but the
    table's recommendations (a Node.js example this shop does not run:
    test_recommendations.py has it)."""
    def complete():
        st, doc = gw.json("GET", "/openapi.json")
        return st == 200 and doc["x-svckit-unavailable"] == ["recommendations"] and doc
    return wait_until(complete, what="every service in the merged /openapi.json")


class Explorer:
    """What a person does on the page."""

    def __init__(self, b):
        self.b = b

    def pick(self, method, path):
        assert self.b.eval(f"""(() => {{
            const b = [...document.querySelectorAll('#endpoints .endpoint')].find(
                b => b.dataset.method === {json.dumps(method)} && b.dataset.path === {json.dumps(path)});
            if (b) b.click();
            return !!b; }})()"""), (method, path)

    def body(self):
        return json.loads(self.b.eval("document.getElementById('body').value"))

    def fill(self, params=None, body=None):
        for name, value in (params or {}).items():
            assert self.b.eval(f"""(() => {{
                const i = [...document.querySelectorAll('#params [data-name]')].find(
                    i => i.dataset.name === {json.dumps(name)});
                if (i) i.value = {json.dumps(value)};
                return !!i; }})()"""), name
        if body is not None:
            self.b.eval(f"document.getElementById('body').value = {json.dumps(json.dumps(body))}")

    def send(self):
        # The previous answer hidden first, so that the one read is this send's.
        self.b.eval("document.getElementById('response').hidden = true; document.getElementById('send').click()")
        return wait_until(lambda: self.b.eval(ANSWER), what="the answer on the page")

    def open(self, gw, want):
        """Navigates to gw's /docs; the rows listed once they are want."""
        self.b.call("Page.navigate", session=True, url=f"http://127.0.0.1:{gw.port}/docs")
        return wait_until(lambda: {tuple(r) for r in self.b.eval(LISTED) or []} == want and self.b.eval(LISTED),
                          what="every operation of the merged document listed under its service")


@pytest.mark.parametrize("width,height,name", [(1280, 900, "explorer.png"), (390, 844, "explorer-phone.png")])
def test_explorer_in_chromium(shop, width, height, name):
    doc = merged(shop.gateway)
    want = {(op["tags"][0], m.upper(), p, op.get("summary", ""))
            for p, item in doc["paths"].items() for m, op in item.items()}
    user = {"username": f"explorer-{width}", "password": "explorer-pass-0123"}
    b = Browser(width, height)
    try:
        e = Explorer(b)
        listed = e.open(shop.gateway, want)
        assert len(listed) == len(want)  # each once
        assert {r[0] for r in listed} == {"auth", "products", "orders", "payments"}

        # Register and log in through the page; take the token from the answer.
        e.pick("POST", "/auth/register")
        assert set(e.body()) == {"username", "password"}  # prefilled from the schema
        e.fill(body=user)
        assert e.send()["status"].startswith("201")
        e.pick("POST", "/auth/login")
        e.fill(body=user)
        assert e.send()["status"].startswith("200")
        assert b.eval("!document.getElementById('use-token-box').hidden")
        b.eval("document.getElementById('use-token').click()")
        token = b.eval("document.getElementById('token').value")
        assert token.count(".") == 2 and b.eval("sessionStorage.getItem('svckit.docs.token')") == token

        # A product, with the token.
        e.pick("GET", "/products/{id}")
        e.fill(params={"id": "1"})
        a = e.send()
        assert a["status"].startswith("200") and a["request"] == "GET /products/1", a
        assert json.loads(a["body"])["id"] == 1
        assert a["headers"]["content-type"].startswith("application/json") and a["headers"]["x-request-id"]

        # An order whose body breaks the schema: 400, every problem shown.
        e.pick("POST", "/orders")
        assert e.body() == {"items": [{"product_id": 1, "quantity": 1}]}  # within the schema's minimums
        e.fill(body={"items": [{"product_id": 1, "quantity": 0}]})
        a = e.send()  # without the declared Idempotency-Key header: the page sends none
        assert a["status"].startswith("400"), a
        details = json.loads(a["body"])["error"]["details"]
        assert {"in": "header", "path": "/Idempotency-Key", "problem": "is required"} in details, details
        e.fill(params={"Idempotency-Key": "explorer-1"})  # its own field, from the document
        a = e.send()
        assert a["status"].startswith("400"), a
        details = json.loads(a["body"])["error"]["details"]
        assert any(d["path"] == "/items/0/quantity" for d in details), details
        assert not any(d["in"] == "header" for d in details), details
        assert os.path.getsize(b.screenshot(name)) > 1000

        # Forgotten, the token goes with nothing: the gateway refuses.
        b.eval("document.getElementById('forget').click()")
        e.pick("GET", "/products/{id}")
        e.fill(params={"id": "1"})
        assert e.send()["status"].startswith("401")
        assert b.eval("sessionStorage.getItem('svckit.docs.token')") is None

        assert not b.problems(), b.problems()
    finally:
        b.close()


MARKUP = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def hostile(inst, m):
    """A service whose document and answers are full of markup and wrong types."""
    if m.headers.get("Svc-Path") == "/openapi.json":
        return 200, {"Content-Type": "application/json"}, {"openapi": "3.1.0", "paths": {
            "/evil": {"get": {"summary": MARKUP, "parameters": [
                {"name": MARKUP, "in": "query", "description": MARKUP, "schema": {"type": "string"}},
                {"name": "n", "in": "query", "schema": {"enum": [MARKUP, 7]}},
                "not a parameter", {"in": "header"}]},
                "post": {"summary": 7, "parameters": "none", "requestBody": {"content": {"application/json": {
                    "schema": {"type": "object", "properties": {MARKUP: {"type": "string", "maxLength": 3}},
                               "required": "all"}}}}},
                "trace": {"summary": "not a method the page sends"},
                "x-evil": MARKUP},
            "/evil/{id}": "not an operation"}}
    return 200, {"Content-Type": "application/json"}, {"echo": MARKUP}


def test_a_hostile_document_is_shown_as_text(nats_server):  # noqa: F811
    with FakeInstance(nats_server, "evil", hostile), gateway(nats_server, {"/evil": "evil", "/gone": "gone"}) as gw:
        wait_instances(gw, "evil", 1)
        b = Browser()
        try:
            e = Explorer(b)
            e.open(gw, {("evil", "GET", "/evil", MARKUP), ("evil", "POST", "/evil", "")})
            # A service that did not answer the merge is named.
            assert b.eval("document.getElementById('summary').textContent").endswith("not listed: gone")
            e.pick("GET", "/evil")
            assert b.eval("document.getElementById('op-summary').textContent") == MARKUP
            e.fill(params={MARKUP: MARKUP})
            a = e.send()
            assert a["status"].startswith("200")
            assert json.loads(a["body"]) == {"echo": MARKUP}
            e.pick("POST", "/evil")
            assert e.body() == {MARKUP: "str"}  # "required" that is not a list: every property
            assert e.send()["status"].startswith("200")
            # Nothing of it became markup, and nothing ran.
            assert b.eval("document.querySelectorAll('img, #endpoints script, #operation script').length") == 0
            assert b.eval("window.__pwned") is None
            assert not b.problems(), b.problems()
        finally:
            b.close()
