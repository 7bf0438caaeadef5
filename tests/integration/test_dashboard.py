"""The gateway's dashboard (/dashboard): access, the snapshots (JSON and
server-sent events) listing every running service and instance, the bound
on streams, and hostile answers on NATS.

Properties only: a stream is read until it delivers a snapshot with what is
expected (every instance comes within a round or two; WAIT bounds it)."""
import http.client
import json
import socket

import pytest

from conftest import WAIT, Service, wait_until
from live_support import DASH_TOKEN, SERVICES, Forger, system  # noqa: F401  (fixture)
from services_fixtures import sign_hs256, claims
from shop_support import SECRET, admin, token
from test_msg_support import metric, nats_server  # noqa: F401  (fixture)

MAX_STREAMS = 16  # GW_DASH_MAX_STREAMS
MAX_TRACE_GATHERS = 8  # GW_TRACE_MAX_GATHERS
STALL_S = 60  # GW_DASH_STALL_MS


def get(gw, path, headers=None):
    return gw.request("GET", path, headers=headers or {})


class Stream:
    """An open /dashboard/events stream: yields the snapshots it carries."""

    def __init__(self, gw, headers):
        self.c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=WAIT)
        self.c.request("GET", "/dashboard/events", headers=headers)
        self.r = self.c.getresponse()
        self.status = self.r.status
        self.headers = {k.lower(): v for k, v in self.r.getheaders()}

    def snapshots(self):
        event = None
        while True:
            line = self.r.fp.readline()
            if not line:
                return
            line = line.decode().rstrip("\r\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "snapshot":
                yield json.loads(line[6:])
            elif line == "":
                event = None

    def close(self):
        self.c.close()


def listed(snap):
    return {(i["name"], i["id"]) for i in snap["instances"]}


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer not-a-token"},
    {"Authorization": "Bearer " + DASH_TOKEN + "x"},
    {"Cookie": "svckit_dashboard=" + DASH_TOKEN[:-1]},
    {"Authorization": "Bearer " + sign_hs256(b"another-secret-0123456789abcdef-0123456", claims(role="admin"))},
])
@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/app.js", "/dashboard/snapshot", "/dashboard/events",
                                  "/dashboard/traces"])
def test_refused_without_or_with_a_forged_token(system, path, headers):
    st, h, body = get(system.gateway, path, headers)
    assert st == 401, body
    assert json.loads(body)["error"]["code"] == "unauthorized"
    assert "content-security-policy" in h


def test_a_users_token_is_forbidden(system):
    st, _, body = get(system.gateway, "/dashboard/snapshot", {"Authorization": "Bearer " + token("someone")})
    assert st == 403 and json.loads(body)["error"]["code"] == "forbidden"


def test_refusals_are_counted(system):
    before = metric(system.gateway, "gateway_dashboard_refused_total") or 0
    get(system.gateway, "/dashboard")
    assert metric(system.gateway, "gateway_dashboard_refused_total") == before + 1


def test_page_with_admin_token_and_its_headers(system):
    st, h, body = get(system.gateway, "/dashboard", admin())
    assert st == 200 and h["content-type"].startswith("text/html")
    csp = h["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
    assert h["x-content-type-options"] == "nosniff"
    assert b'<script src="/dashboard/app.js"' in body and b"<script>" not in body
    st, h, js = get(system.gateway, "/dashboard/app.js", admin())
    assert st == 200 and h["content-type"].startswith("text/javascript")
    assert b"innerHTML" not in js and b"eval(" not in js
    st, h, _ = get(system.gateway, "/dashboard/app.css", admin())
    assert st == 200 and h["content-type"].startswith("text/css")


def test_dashboard_token_sets_a_cookie(system):
    st, h, _ = get(system.gateway, "/dashboard?token=" + DASH_TOKEN)
    assert st == 303 and h["location"] == "/dashboard"
    cookie = h["set-cookie"]
    assert cookie.startswith("svckit_dashboard=" + DASH_TOKEN + ";") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    st, _, _ = get(system.gateway, "/dashboard/snapshot", {"Cookie": "svckit_dashboard=" + DASH_TOKEN})
    assert st == 200
    st, _, _ = get(system.gateway, "/dashboard/snapshot", {"Authorization": "Bearer " + DASH_TOKEN})
    assert st == 200
    st, _, _ = get(system.gateway, "/dashboard?token=wrong-" + DASH_TOKEN)
    assert st == 401


def test_events_list_every_service_and_instance(system):
    expected = system.instances()
    assert {s for s, _ in expected} == set(SERVICES)
    s = Stream(system.gateway, admin())
    try:
        assert s.status == 200 and s.headers["content-type"] == "text/event-stream"
        assert "content-security-policy" in s.headers
        got = None
        for snap in s.snapshots():
            system.traffic(2)
            if listed(snap) == expected:
                got = snap
                break
        assert got, "the stream ended"
        gw = [i for i in got["instances"] if i["name"] == "gateway"][0]
        assert gw["ready"] is True and gw["version"] and gw["rss_bytes"] > 0 and "cpu_seconds" in gw
        assert {"prefix": "/products", "label": "/products*", "service": "products", "auth": "user"} in \
            got["routes"]["table"]
        assert got["dropped"] == 0 and got["interval_ms"] == 1000
        # A later snapshot shows the gateway's forwarded requests counted.
        for snap in s.snapshots():
            system.traffic(2)
            gwr = [r for i in snap["instances"] if i["name"] == "gateway" for r in i["routes"]
                   if r["route"] == "/products*"]
            if gwr and gwr[0]["requests"] > 0:
                break
    finally:
        s.close()


def test_snapshot_json(system):
    expected = system.instances()

    def complete():
        st, _, body = get(system.gateway, "/dashboard/snapshot", admin())
        assert st == 200
        snap = json.loads(body)
        return listed(snap) == expected and snap
    snap = wait_until(complete, what="a snapshot with every instance")
    assert snap["seq"] > 0
    # Each instance says the machine it runs on, and where its HTTP listens.
    assert all(i["hostname"] == socket.gethostname() and i["http_port"] for i in snap["instances"]), snap


def test_traces_are_gathered_from_every_instance(system):
    """A request with a known trace id, through the gateway to products: its
    trace appears in the recent list and opens as spans of both services,
    each span's parent among them or the caller's."""
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    caller = "00f067aa0ba902b7"
    h = {"Authorization": "Bearer " + token("trace-user"), "traceparent": f"00-{trace_id}-{caller}-01"}
    st, _, body = system.gateway.request("GET", "/products?limit=1", headers=h)
    assert st == 200, body

    def spans():
        st, _, body = get(system.gateway, "/dashboard/traces/" + trace_id, admin())
        if st != 200:
            return None
        doc = json.loads(body)
        services = {x["service"] for x in doc["spans"]}
        return {"gateway", "products"} <= services and doc
    doc = wait_until(spans, what="the trace's spans from gateway and products")
    assert doc["trace_id"] == trace_id
    ids = {x["span_id"] for x in doc["spans"]}
    for x in doc["spans"]:
        assert x.get("parent_id") in ids | {caller}, x
        assert x["start_us"] >= 0 and x["duration_us"] >= 0
    starts = [x["start_us"] for x in doc["spans"]]
    assert starts == sorted(starts) and starts[0] == 0
    server = [x for x in doc["spans"] if x["service"] == "products" and x["kind"] == "server"]
    assert server and server[0]["parent_id"] in ids  # a gateway span called it

    def listed():
        st, _, body = get(system.gateway, "/dashboard/traces", admin())
        t = json.loads(body)
        return st == 200 and t["enabled"] and [x for x in t["recent"] if x["trace_id"] == trace_id]
    entry = wait_until(listed, what="the trace in the recent list")[0]
    assert entry["service"] == "gateway" and entry["spans"] >= 2 and entry["error"] is False


def test_trace_ids_are_checked(system):
    st, _, body = get(system.gateway, "/dashboard/traces/" + "A" * 32, admin())
    assert st == 400 and json.loads(body)["error"]["code"] == "bad_request"
    st, _, body = get(system.gateway, "/dashboard/traces/" + "a" * 31, admin())
    assert st == 400
    st, _, body = get(system.gateway, "/dashboard/traces/" + "0123456789abcdef" * 2, admin())
    assert st == 404 and json.loads(body)["error"]["code"] == "not_found"


def test_trace_gathers_are_bounded(system):
    """At most GW_TRACE_MAX_GATHERS trace gathers at once: requests past it
    are answered 503 (JSON, Retry-After) and counted. Many requests are sent
    at once, again until one finds the gathers full."""
    before = metric(system.gateway, "gateway_dashboard_traces_rejected_total") or 0

    def burst():
        conns = [http.client.HTTPConnection("127.0.0.1", system.gateway.port, timeout=WAIT)
                 for _ in range(3 * MAX_TRACE_GATHERS)]
        try:
            for c in conns:
                c.request("GET", "/dashboard/traces", headers=admin())
            got = []
            for c in conns:
                r = c.getresponse()
                got.append((r.status, r.getheader("Retry-After"), r.read()))
            return got
        finally:
            for c in conns:
                c.close()

    def refused():
        got = burst()
        assert all(st in (200, 503) for st, _, _ in got), got
        return [g for g in got if g[0] == 503]
    shed = wait_until(refused, what="a traces request past GW_TRACE_MAX_GATHERS refused")
    for _, retry, body in shed:
        assert retry and json.loads(body)["error"]["code"] == "unavailable"
    assert metric(system.gateway, "gateway_dashboard_traces_rejected_total") >= before + len(shed)
    st, _, _ = get(system.gateway, "/dashboard/traces", admin())
    assert st == 200  # every gather ended: the slots are free again


def test_streams_are_bounded(system):
    """GW_DASH_MAX_STREAMS streams at once; the next is answered 503 and
    counted; once one closes, a new one is taken."""
    # Streams of earlier tests are released at their next write.
    wait_until(lambda: metric(system.gateway, "gateway_dashboard_streams") == 0, what="no stream open")
    before = metric(system.gateway, "gateway_dashboard_streams_rejected_total") or 0
    streams = []
    try:
        for _ in range(MAX_STREAMS):
            s = Stream(system.gateway, admin())
            streams.append(s)
            assert s.status == 200
        extra = Stream(system.gateway, admin())
        assert extra.status == 503 and extra.headers.get("retry-after")
        assert json.loads(extra.r.read())["error"]["code"] == "unavailable"
        extra.close()
        assert metric(system.gateway, "gateway_dashboard_streams_rejected_total") == before + 1
        assert metric(system.gateway, "gateway_dashboard_streams") == MAX_STREAMS
        streams.pop().close()
        # The gateway notices the closed stream at its next write.
        wait_until(lambda: metric(system.gateway, "gateway_dashboard_streams") == MAX_STREAMS - 1,
                   what="the closed stream released")
        s = Stream(system.gateway, admin())
        streams.append(s)
        assert s.status == 200
    finally:
        for s in streams:
            s.close()
    wait_until(lambda: metric(system.gateway, "gateway_dashboard_streams") == 0, what="every stream released")


def test_a_stalled_stream_is_ended(system):
    """A reader that stops taking the stream: once the gateway holds what the
    transport allows unsent (writes refused), the stream is ended after
    GW_DASH_STALL_MS and counted. Fat forged answers make each snapshot
    large, so the buffers fill within seconds."""
    fat = [{"type": "io.svckit.v1.live_response", "name": "fat", "id": f"fat{i}", "now_ms": 1,
            "routes": [{"route": "/" + "r" * 120 + str(k), "method": "GET", "requests": 1,
                        "duration_buckets": [123456789] * 17} for k in range(128)]} for i in range(20)]
    before = metric(system.gateway, "gateway_dashboard_streams_stalled_total") or 0
    with Forger(system.nats, ["$SRV.LIVE"], lambda m: fat):
        sock = socket.socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", system.gateway.port))
            auth = admin()["Authorization"]
            sock.sendall(f"GET /dashboard/events HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n".encode())
            # Never read: the stream stalls.
            wait_until(lambda: metric(system.gateway, "gateway_dashboard_streams_stalled_total") == before + 1,
                       timeout=STALL_S + 3 * WAIT, what="the stalled stream ended")
        finally:
            sock.close()
    st, _, _ = get(system.gateway, "/dashboard/snapshot", admin())
    assert st == 200


def test_forged_answers_are_cleaned_and_capped(system):
    """Anyone on NATS may answer $SRV.LIVE: a malformed answer is dropped and
    counted; a forged one is kept only as typed, cut fields."""
    forged = {"type": "io.svckit.v1.live_response", "name": "<img src=x onerror=alert(1)>" + "n" * 500,
              "id": "forged", "version": {"x": 1}, "now_ms": -5, "rss_bytes": "lots",
              "metadata": {"host": "<b>h</b>"}, "routes": [{"route": "/x", "method": "GET", "requests": -1,
                                                             "duration_buckets": [1, "2"]}] * 300,
              "extra": "dropped"}
    before = metric(system.gateway, "gateway_dashboard_answers_dropped_total") or 0
    with Forger(system.nats, ["$SRV.LIVE"], lambda m: [forged, b"{not json"]):
        def forged_listed():
            st, _, body = get(system.gateway, "/dashboard/snapshot", admin())
            snap = json.loads(body)
            f = [i for i in snap["instances"] if i["id"] == "forged"]
            return f and f[0]
        f = wait_until(forged_listed, what="the forged instance in a snapshot")
    assert len(f["name"]) == 128 and f["name"].startswith("<img")  # text for the page, cut
    assert "version" not in f and "now_ms" not in f and "rss_bytes" not in f and "extra" not in f
    assert len(f["routes"]) == 128 and all("requests" not in r and "duration_buckets" not in r
                                           for r in f["routes"])
    assert metric(system.gateway, "gateway_dashboard_answers_dropped_total") > before


def test_nothing_without_auth_configured(nats_server):  # noqa: F811
    """A gateway whose routes verify no token and without DASHBOARD_TOKEN
    shows the dashboard to nobody."""
    import os
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        conf = os.path.join(d, "gw.json")
        with open(conf, "w") as f:
            json.dump({"routes": [{"prefix": "/x", "service": "x"}]}, f)
        with Service("gateway", env={"NATS_URL": nats_server.url, "GATEWAY_CONFIG": conf}) as gw:
            st, _, body = get(gw, "/dashboard", admin())
            assert st == 401 and json.loads(body)["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("bad", ["short", "x" * 257, "has space-0123456789", "semi;colon-0123456789"])
def test_bad_dashboard_token_stops_the_gateway(nats_server, bad):  # noqa: F811
    gw = Service("gateway", env={"NATS_URL": nats_server.url, "DASHBOARD_TOKEN": bad, "JWT_SECRET": SECRET},
                 wait_ready=False, check_exit=False)
    try:
        assert gw.proc.wait(WAIT) == 2
        assert "DASHBOARD_TOKEN" in gw.read_log()
    finally:
        gw.stop()
