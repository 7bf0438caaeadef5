"""The gateway's API explorer over plain HTTP (/docs, services/gateway/explorer.c):
the page and its files, open without a token, under a strict
Content-Security-Policy, cached until the gateway changes (no-cache, one
strong ETag, 304), HEAD like GET. The page at work, in chromium:
test_explorer_browser.py."""
import gzip
import re

import pytest

from test_gateway_support import gateway, nats_server  # noqa: F401  (fixture)

FILES = {"/docs": "text/html; charset=utf-8", "/docs/app.js": "text/javascript; charset=utf-8",
         "/docs/app.css": "text/css; charset=utf-8"}


@pytest.fixture(scope="module")
def gw(nats_server):  # noqa: F811
    """A gateway whose every route checks tokens at the edge (none is running behind it)."""
    with gateway(nats_server, [{"prefix": "/products", "service": "products", "auth": "user"}]) as g:
        yield g


def directives(csp):
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in csp.split(";")) if d}


@pytest.mark.parametrize("path", FILES)
def test_every_file_is_served_without_a_token_under_a_strict_csp(gw, path):
    st, h, body = gw.request("GET", path)
    assert st == 200, body
    assert h["content-type"] == FILES[path]
    csp = directives(h["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]  # nothing inline
    assert csp["connect-src"] == ["'self'"]  # requests go to this gateway only
    assert csp["frame-ancestors"] == ["'none'"] and csp["form-action"] == ["'none'"]
    assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] == "no-referrer"


def test_the_page_loads_only_its_own_files_and_nothing_inline(gw):
    _, _, body = gw.request("GET", "/docs")
    html = body.decode()
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all('src="/docs/' in s for s in scripts), scripts
    assert "<style" not in html and " style=" not in html and not re.search(r"\son\w+=", html)
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert ref.startswith("/docs/"), ref  # nothing from the network
        st, h, _ = gw.request("GET", ref)
        assert st == 200 and h["content-type"] == FILES[ref], ref


def test_files_are_revalidated_against_one_etag(gw):
    tags = {gw.request("GET", p)[1]["etag"] for p in FILES}
    assert len(tags) == 1
    tag = tags.pop()
    assert re.fullmatch(r'"[0-9a-f]{32}"', tag), tag  # strong
    for path in FILES:
        st, h, body = gw.request("GET", path)
        assert h["cache-control"] == "no-cache"
        st, h, body = gw.request("GET", path, headers={"If-None-Match": tag})
        assert (st, body) == (304, b"") and h["etag"] == tag, path
        assert "content-security-policy" in h
    assert gw.request("GET", "/docs", headers={"If-None-Match": '"elsewhere"'})[0] == 200


def test_compressed_files_have_their_own_etag_and_revalidate(gw):
    st, h, body = gw.request("GET", "/docs/app.js", headers={"Accept-Encoding": "gzip"})
    assert st == 200 and h["content-encoding"] == "gzip"
    assert gzip.decompress(body) == gw.request("GET", "/docs/app.js")[2]
    assert h["etag"].endswith('-gzip"')
    st, h2, body = gw.request("GET", "/docs/app.js", headers={"Accept-Encoding": "gzip", "If-None-Match": h["etag"]})
    assert (st, body) == (304, b"")


@pytest.mark.parametrize("path", FILES)
def test_head_answers_the_headers_of_get(gw, path):
    _, got, body = gw.request("GET", path)
    st, h, nothing = gw.request("HEAD", path)
    assert (st, nothing) == (200, b"")
    assert int(h["content-length"]) == len(body)
    for name in ("content-type", "content-security-policy", "cache-control", "etag"):
        assert h[name] == got[name], name


def test_a_file_the_page_does_not_have_is_a_json_404(gw):
    st, h, body = gw.request("GET", "/docs/nope.js")
    assert st == 404 and b'"not_found"' in body
    assert "content-security-policy" in h  # the explorer's answer, not the proxy's


def test_a_trailing_slash_redirects_to_the_page(gw):
    st, h, body = gw.request("GET", "/docs/")
    assert (st, h["location"]) == (301, "/docs"), (st, h, body)


@pytest.mark.parametrize("path", ["/docs/..%2Fdashboard%2Fapp.js", "/docs/%00", "/docs/app.js/x"])
def test_a_hostile_file_name_gets_a_json_error(gw, path):
    st, h, body = gw.request("GET", path)
    assert st in (400, 404) and h["content-type"].startswith("application/json"), (path, st, body)
