"""Distributed tracing (docs/observability.md): spans gathered with the
library's NATS query (svckit.trace[.<service>[.<instance>]]) and by an
OTLP/HTTP receiver written here; a collector that fails or never answers;
hostile traceparent / tracestate values and span queries; unsampled
contexts through events and the outbox; a continuation's trace; a shutdown
after a failed export."""
import http.client
import http.server
import json
import os
import re
import threading

import pytest

from conftest import WAIT, wait_until
from shop_support import Shop, token
from test_compose import composesvc
from test_msg_support import Nats, metric, msgsvc, nats_server  # noqa: F401
from test_store_outbox import outboxsvc, stream_messages

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


class Receiver:
    """An OTLP/HTTP collector: POST /v1/traces with JSON, answered `answer`
    (200, 500, or None: read the request and never answer)."""

    def __init__(self, answer=200):
        self.answer = answer
        self.spans = []  # (service, span) decoded from every POST
        self.posts = 0
        self.lock = threading.Lock()
        self.hold = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.posts += 1
                if outer.answer is None:
                    outer.hold.wait(WAIT)  # never answers while the test runs
                    return
                if self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/json":
                    doc = json.loads(body)
                    with outer.lock:
                        for rs in doc["resourceSpans"]:
                            attrs = {a["key"]: a["value"]["stringValue"] for a in rs["resource"]["attributes"]}
                            for ss in rs["scopeSpans"]:
                                for s in ss["spans"]:
                                    outer.spans.append((attrs["service.name"], s))
                self.send_response(outer.answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of_trace(self, trace_id):
        with self.lock:
            return [(svc, s) for svc, s in self.spans if s["traceId"] == trace_id]

    def close(self):
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


def query(nats, subject, q, until):
    """Replies of every instance answering subject, parsed."""
    data = json.dumps(q).encode() if q is not None else b""
    return [m.json() for m in nats.request_all(subject, until=until, data=data)]


def spans_of(nats, trace_id, services):
    """Every span of trace_id that the instances of services hold."""
    out = []
    for name in services:
        replies = query(nats, f"svckit.trace.{name}", {"trace_id": trace_id}, until=lambda r: len(r) >= 1)
        for r in replies:
            assert r["service"] == name
            out += [dict(s, service=name) for s in r["spans"]]
    return out


def roots(spans):
    """The spans whose parent is not among spans: one, when the trace is whole."""
    ids = {s["span_id"] for s in spans}
    return [s for s in spans if s.get("parent_id") not in ids]


def inside(child, parent):
    # Both clocks are the same machine's CLOCK_REALTIME; a child starts after
    # and ends before its parent, up to the microsecond each reading rounds.
    slack = 1000
    return (child["start_ns"] + slack >= parent["start_ns"] and
            child["start_ns"] + child["duration_ns"] <= parent["start_ns"] + parent["duration_ns"] + slack)


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def shop(nats_server, receiver):  # noqa: F811
    s = Shop(nats_server, env={"TRACE_SAMPLE": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url})
    yield s
    s.close()


def test_one_order_is_one_trace_across_services(shop, nats_server, receiver):  # noqa: F811
    shop.set_stock(1, 1000)
    """POST /orders through the gateway with the client's traceparent: the
    gateway, orders, products and payments record spans of that one trace:
    each client span is the parent of the callee's server span and every
    synchronous child lies inside its parent's time; each event's consumer
    span (products, payments, orders) is the child of its publisher's
    producer span, itself under the span that stored the event in the
    outbox. The same spans reach the OTLP receiver."""
    headers = {"Authorization": "Bearer " + token("77"), "Content-Type": "application/json",
               "Idempotency-Key": "trace-1", "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01",
               "tracestate": "vendor=abc"}
    status, _, body = shop.gateway.request("POST", "/orders",
                                           body=json.dumps({"items": [{"product_id": 1, "quantity": 1}]}).encode(),
                                           headers=headers)
    assert status == 201, body
    nats = Nats(nats_server.port)
    try:
        want = ("gateway", "orders", "products", "payments")
        spans = []

        def gathered():
            nonlocal spans
            spans = spans_of(nats, TRACE, want)
            servers = {s["service"] for s in spans if s["kind"] == "server"}
            consumers = {s["service"] for s in spans if s["kind"] == "consumer"}
            # The order is settled: payments consumed orders' event and
            # orders consumed the payment's; and the trace is whole: every
            # span's parent is in it but the one root's.
            return ({"gateway", "orders", "products"} <= servers and {"payments", "orders"} <= consumers
                    and len(roots(spans)) == 1)

        wait_until(gathered, what="the spans of the order in gateway, orders, products and payments")
    finally:
        nats.close()
    by_id = {s["span_id"]: s for s in spans}
    assert all(s["trace_id"] == TRACE for s in spans)
    root = [s for s in spans if s["service"] == "gateway" and s["kind"] == "server"]
    assert len(root) == 1 and root[0]["parent_id"] == "00f067aa0ba902b7"
    assert roots(spans) == root  # the client's span is the only parent outside the trace
    assert len(by_id) == len(spans)  # no span id twice
    assert root[0]["name"] == "POST /orders" or root[0]["route"].startswith("/orders")
    linked = 0
    for s in spans:
        p = by_id.get(s.get("parent_id"))
        if p is None:
            continue
        linked += 1
        if s["kind"] in ("producer", "consumer"):
            # Events are asynchronous: the outbox relay publishes after the
            # request, a consumer runs after the publish; they start later,
            # and may end after their parent.
            assert s["start_ns"] + 1000 >= p["start_ns"], (s, p)
        else:
            assert inside(s, p), (s, p)
        if s["kind"] == "server":  # a callee: its parent is the caller's client span
            assert p["kind"] == "client" and p["peer"] == s["service"], (s, p)
        if s["kind"] == "consumer":  # an event: its parent is the publisher's producer span
            assert p["kind"] == "producer" and p["subject"] == s["subject"], (s, p)
    orders_srv = [s for s in spans if s["service"] == "orders" and s["kind"] == "server"]
    products_srv = [s for s in spans if s["service"] == "products" and s["kind"] == "server"]
    assert by_id[orders_srv[0]["parent_id"]]["service"] == "gateway"
    assert any(by_id.get(s["parent_id"], {}).get("service") == "orders" for s in products_srv)
    assert linked >= 4
    for s in spans:
        if s["kind"] in ("consumer",):
            assert s.get("parent_id") in by_id, s  # every event's publisher is in the trace
    pay = [s for s in spans if s["service"] == "payments" and s["kind"] == "consumer"]
    assert by_id[pay[0]["parent_id"]]["service"] in ("orders", "products")  # the saga's step before it
    back = [s for s in spans if s["service"] == "orders" and s["kind"] == "consumer"]
    assert any(by_id[s["parent_id"]]["service"] == "payments" for s in back)
    # SQL spans carry the statement, never its values (placeholders: ?N on
    # SQLite, $N on PostgreSQL).
    sql = [s for s in spans if "sql" in s]
    assert sql and all(re.search(r"\?|\$[0-9]", s["sql"]) or "'" not in s["sql"] for s in sql)

    def exported():
        got = receiver.of_trace(TRACE)
        return {svc for svc, _ in got} >= set(want) and len(got) >= len(spans)

    wait_until(exported, what="the trace at the OTLP receiver")
    otlp = {s["spanId"]: (svc, s) for svc, s in receiver.of_trace(TRACE)}
    for s in spans:
        svc, o = otlp[s["span_id"]]
        assert svc == s["service"] and o.get("parentSpanId") == s.get("parent_id")
        assert int(o["endTimeUnixNano"]) - int(o["startTimeUnixNano"]) == s["duration_ns"]


def test_span_query_bounds_and_refusals(shop, nats_server):  # noqa: F811
    """limit bounds a reply, slowest gives server spans longest first, and a
    malformed query is refused with a JSON error while the instance goes on."""
    nats = Nats(nats_server.port)
    try:
        inst = query(nats, "svckit.trace.products", {"limit": 2}, until=lambda r: len(r) >= 1)[0]
        assert len(inst["spans"]) <= 2
        slow = query(nats, "svckit.trace.products", {"slowest": True, "limit": 5}, until=lambda r: len(r) >= 1)[0]
        d = [s["duration_ns"] for s in slow["spans"]]
        assert d == sorted(d, reverse=True) and all(s["kind"] == "server" for s in slow["spans"])
        for bad in (b"{", b"[]", b'{"limit": 100000}', b'{"trace_id": "zz"}', b'{"x": 1}', b"{" * 5000):
            m = nats.request("svckit.trace.products", bad)
            # Answered as every refused NATS request is (Svc-Status, ADR-32 headers).
            assert m.svc_status == 400 and m.header("Nats-Service-Error-Code") == "400", bad
            r = m.json()
            assert r["error"]["code"] == "bad_request" and r["error"]["message"], bad
        assert shop.products.request("GET", "/healthz")[0] == 200
    finally:
        nats.close()


BAD_TRACEPARENTS = [
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # uppercase
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # 00 with more
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # short
    "x" * 4000,  # oversized
]


def test_bad_trace_context_is_ignored_and_counted(nats_server):  # noqa: F811
    """A malformed traceparent starts a fresh trace (its ids are not used) and
    is counted; a malformed or oversized tracestate is dropped and counted;
    every request is still answered."""
    with msgsvc(nats_server, env={"TRACE_SAMPLE": "1"}) as svc:
        for tp in BAD_TRACEPARENTS:
            status, _, _ = svc.request("GET", "/hello/x", headers={"traceparent": tp})
            assert status == 200
        assert metric(svc, "trace_context_invalid_total", header="traceparent") == len(BAD_TRACEPARENTS)
        good = f"00-{TRACE[::-1]}-00f067aa0ba902b7-01"
        for ts in ("a=" + "b" * 600, "no equals", "k=v,=x"):
            status, _, _ = svc.request("GET", "/hello/y", headers={"traceparent": good, "tracestate": ts})
            assert status == 200
        assert metric(svc, "trace_context_invalid_total", header="tracestate") == 3
        nats = Nats(nats_server.port)
        try:
            spans = query(nats, "svckit.trace.msgsvc", {"limit": 256}, until=lambda r: len(r) >= 1)[0]["spans"]
        finally:
            nats.close()
        ids = {s["trace_id"] for s in spans}
        assert "0" * 32 not in ids and TRACE not in ids  # the bad ones' ids were not taken
        assert TRACE[::-1] in ids


def test_unsampled_keeps_errors_only(nats_server):  # noqa: F811
    """TRACE_SAMPLE=0: a 200 leaves no span, a 500 keeps its server span; a
    caller's sampled flag is obeyed."""
    with msgsvc(nats_server, env={"TRACE_SAMPLE": "0"}) as svc:
        assert svc.request("GET", "/hello/x")[0] == 200
        assert svc.request("GET", "/status/503")[0] == 503
        sampled = "5" * 32
        assert svc.request("GET", "/hello/z", headers={"traceparent": f"00-{sampled}-00f067aa0ba902b7-01"})[0] == 200
        nats = Nats(nats_server.port)
        try:
            spans = query(nats, "svckit.trace.msgsvc", None, until=lambda r: len(r) >= 1)[0]["spans"]
        finally:
            nats.close()
        routes = sorted(s["route"] for s in spans)
        assert routes == ["/hello/:name", "/status/:code"], routes
        assert {s["trace_id"] for s in spans if s["route"] == "/hello/:name"} == {sampled}


def traceparent_of(nats, prefix):
    """The traceparent header of the next message on a subject under prefix."""
    return nats.next_msg(subject_prefix=prefix).header("traceparent")


def test_unsampled_context_goes_through_events_and_the_outbox(nats_server):  # noqa: F811
    """TRACE_SAMPLE=1, and a caller that says "not sampled": an event
    published by the request, and what its consumer publishes in turn, carry
    the caller's trace, unsampled (parent-based sampling), as does an event
    stored in the outbox and relayed; nothing starts a sampled root of its
    own, so no span is recorded."""
    unsampled = "6" * 32
    tp = {"traceparent": f"00-{unsampled}-00f067aa0ba902b7-00"}
    nats = Nats(nats_server.port)
    try:
        nats.subscribe("relay.>")
        nats.subscribe("relayed.>")
        nats.subscribe("notes.>")
        nats.flush()
        with msgsvc(nats_server, env={"TRACE_SAMPLE": "1"}) as svc:
            st, _, body = svc.request("POST", "/publish?subject=relay.x", body=b"{}", headers=tp)
            assert st == 200, body
            for prefix in ("relay.x", "relayed.x"):  # the request's event, then its consumer's
                got = traceparent_of(nats, prefix)
                assert got and got.startswith(f"00-{unsampled}-") and got.endswith("-00"), (prefix, got)
            spans = query(nats, "svckit.trace.msgsvc", None, until=lambda r: len(r) >= 1)[0]["spans"]
            assert spans == [], spans
        with outboxsvc(nats_server, env={"TRACE_SAMPLE": "1"}) as svc:
            wait_until(lambda: stream_messages(nats) is not None, what="stream NOTES")
            st, _, body = svc.request("POST", "/notes", body=b"unsampled", headers=tp)
            assert st == 201, body
            got = traceparent_of(nats, "notes.created")
            assert got and got.startswith(f"00-{unsampled}-") and got.endswith("-00"), got
            spans = query(nats, "svckit.trace.outboxsvc", None, until=lambda r: len(r) >= 1)[0]["spans"]
            assert spans == [], spans
    finally:
        nats.close()


def test_a_continuation_works_for_the_request_span(nats_server):  # noqa: F811
    """composesvc's /then-publish calls itself, then publishes from its
    continuation (svc_req_then): the event carries the request's trace, and
    the trace is whole: the call's client span and the publish's producer
    span are both children of the request's server span."""
    trace = "7" * 32
    nats = Nats(nats_server.port)
    try:
        nats.subscribe("composed.>")
        nats.flush()
        with composesvc(nats_server, env={"TRACE_SAMPLE": "0"}) as svc:
            st, doc = svc.json("GET", "/then-publish", headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
            assert st == 200 and doc == {"call": 200, "published": True}, doc
            got = traceparent_of(nats, "composed.then")
            assert got and got.startswith(f"00-{trace}-") and got.endswith("-01"), got
            spans = []

            def whole():
                nonlocal spans
                spans = spans_of(nats, trace, ["composesvc"])
                return len(spans) >= 4 and len(roots(spans)) == 1
            wait_until(whole, what="the spans of /then-publish")
        by_id = {s["span_id"]: s for s in spans}
        server = [s for s in spans if s["kind"] == "server" and s["route"] == "/then-publish"]
        assert roots(spans) == server and server[0]["parent_id"] == "00f067aa0ba902b7"
        producer = [s for s in spans if s["kind"] == "producer"]
        assert len(producer) == 1 and producer[0]["subject"] == "composed.then"
        assert producer[0]["parent_id"] == server[0]["span_id"]
        assert got.split("-")[2] == producer[0]["span_id"]
        client = [s for s in spans if s["kind"] == "client"]
        assert len(client) == 1 and client[0]["parent_id"] == server[0]["span_id"]
        callee = [s for s in spans if s["kind"] == "server" and s["route"] == "/peer/echo"]
        assert len(callee) == 1 and by_id[callee[0]["parent_id"]] is client[0]
    finally:
        nats.close()


def test_shutdown_after_a_failed_post_does_not_post_again():
    """A collector that takes the POST and never answers: the POST fails at
    its timeout. A SIGTERM meanwhile, with spans left to send, stops the
    service without one last POST to the collector that is gone (it would
    hold the exit for another timeout); the spans left are counted."""
    r = Receiver(answer=None)
    try:
        svc = msgsvc(None, env={"TRACE_SAMPLE": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": r.url})
        try:
            assert svc.request("GET", "/hello/x")[0] == 200
            wait_until(lambda: r.posts >= 1, what="a POST to the collector")
            for _ in range(3):  # spans for a last batch
                assert svc.request("GET", "/hello/y")[0] == 200
        finally:
            assert svc.stop() == 0
        assert r.posts == 1
    finally:
        r.close()


@pytest.mark.parametrize("answer", [500, None], ids=["collector-500", "collector-silent"])
def test_a_failing_collector_costs_nothing_but_spans(answer):
    """A collector that answers 500 or never answers: every request is still
    served, failed batches are counted, and memory stays flat."""
    r = Receiver(answer=answer)
    try:
        with msgsvc(None, env={"TRACE_SAMPLE": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": r.url}) as svc:
            conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=WAIT)
            try:
                def burst(n):
                    for _ in range(n):
                        conn.request("GET", "/hello/x")
                        resp = conn.getresponse()
                        resp.read()
                        assert resp.status == 200
                burst(5000)  # warm: pools and arenas at their size, the ring full
                rss = metric(svc, "process_resident_memory_bytes")
                wait_until(lambda: r.posts >= 1, what="a POST to the collector")
                burst(10000)  # more spans than the ring holds
            finally:
                conn.close()
            if answer == 500:
                wait_until(lambda: metric(svc, "trace_spans_dropped_total", reason="export_failed") > 0,
                           what="a failed batch counted")
            else:
                wait_until(lambda: metric(svc, "trace_spans_dropped_total", reason="export_behind") +
                           metric(svc, "trace_spans_dropped_total", reason="export_failed") > 0,
                           what="spans dropped behind a silent collector")
            assert metric(svc, "trace_spans_exported_total") == 0
            # Flat: the ring and one batch are allocated once; 10000 more
            # requests add nothing that stays (8 MB is far above what arenas
            # wobble). Not under ASan, whose quarantine keeps what is freed.
            if "san" not in os.environ.get("SVCKIT_BUILD", ""):
                assert metric(svc, "process_resident_memory_bytes") <= rss + 8 * 1024 * 1024
    finally:
        r.close()
