"""Scatter-gather (svc_msg_request_all), through gathersvc's /gather: every
reply within the window, then exactly one end; no responder is an empty
gather that still waits for its window; a lost connection ends it early
with "closed"; it can be started from on_start (svc_msg_run_on_loop too)."""
import json
import threading
import time

import pytest

from test_msg_support import Nats, NatsServer, msgsvc, nats_server  # noqa: F401
from conftest import WAIT, Service, wait_until


def gathersvc(nats, env=None):
    e = {"NATS_URL": nats.url, "WORKERS": "2"}
    e.update(env or {})
    return Service("gathersvc", env=e)


# A window every responder of these tests answers within, however loaded the
# machine: a gather always waits for its whole window, so this is the price
# of each gather that expects replies.
WINDOW_MS = 3000
# The end of a window is timed from the loop's clock, which libuv reads after
# the request arrived, so it never comes before the client's own clock says
# the window has passed; 1 ms for the clock's resolution.
SLACK_MS = 1


def gather(svc, subject, ms, data=None):
    """(the handler's report, ms the client waited, timed from before it sent
    the request)."""
    q = f"/gather?subject={subject.replace('$', '%24')}&ms={ms}"
    if data is not None:
        q += f"&data={data}"
    t0 = time.monotonic()
    status, _, body = svc.request("GET", q, timeout=max(ms, 0) / 1000 + WAIT)
    elapsed = (time.monotonic() - t0) * 1000
    assert status == 200, body
    return json.loads(body), elapsed


@pytest.fixture(scope="module")
def gsvc(nats_server):  # noqa: F811
    with gathersvc(nats_server) as s:
        yield s


def test_three_instances_then_the_end(nats_server, gsvc):  # noqa: F811
    svcs = [msgsvc(nats_server) for _ in range(3)]
    try:
        # Each instance's id, as it answers a PING on its own.
        nc = Nats(nats_server.port)
        ids = {m.json()["id"] for m in nc.request_all("$SRV.PING.msgsvc", until=lambda rs: len(rs) >= 3)}
        nc.close()
        assert len(ids) == 3
        r, elapsed = gather(gsvc, "$SRV.PING.msgsvc", WINDOW_MS)
        assert r["rc"] == 0
        docs = [json.loads(x["data"]) for x in r["replies"]]
        assert {d["id"] for d in docs} == ids
        assert all(d["name"] == "msgsvc" and d["type"] == "io.nats.micro.v1.ping_response" for d in docs)
        assert len(docs) == 3
        assert r["end"]["err"] == "ok"
        # The end comes once the window is over, after every reply.
        assert all(x["at_ms"] < r["end"]["at_ms"] for x in r["replies"])
        assert elapsed >= WINDOW_MS - SLACK_MS
        assert r["inside_call"] is False
        assert r["same_thread"] is True
    finally:
        for s in svcs:
            s.stop()


def test_no_instance_just_the_end_after_the_window(gsvc):
    r, elapsed = gather(gsvc, "$SRV.PING.nobody-here", 250)
    assert r["rc"] == 0
    assert r["replies"] == []
    assert r["end"]["err"] == "ok"
    # No-responders from the server is not the end: the window is.
    assert elapsed >= 250 - SLACK_MS
    assert r["inside_call"] is False


def test_data_and_headers_reach_the_callback(nats_server, gsvc):  # noqa: F811
    """Two responders that are not svckit: data out, data and headers back."""
    stop = threading.Event()
    ready = threading.Barrier(3)

    def responder(tag):
        nc = Nats(nats_server.port)
        nc.subscribe("scatter.q")
        nc.flush()
        ready.wait()
        try:
            while not stop.is_set():
                try:
                    m = nc.next_msg(timeout=0.2, subject_prefix="scatter.q")
                except (TimeoutError, OSError, AssertionError):
                    continue
                if m is None or not m.reply:
                    continue
                nc.publish(m.reply, tag.encode() + b":" + m.data, headers={"Svc-Instance": tag})
                nc.flush()
        finally:
            nc.close()

    threads = [threading.Thread(target=responder, args=(t,), daemon=True) for t in ("a", "b")]
    for t in threads:
        t.start()
    ready.wait()
    try:
        r, _ = gather(gsvc, "scatter.q", WINDOW_MS, data="hello")
        assert r["rc"] == 0 and r["end"]["err"] == "ok"
        got = sorted((x["data"], x["header"]) for x in r["replies"])
        assert got == [("a:hello", "a"), ("b:hello", "b")]
    finally:
        stop.set()
        for t in threads:
            t.join(5)


@pytest.mark.parametrize("subject,ms", [
    ("$SRV.PING.msgsvc", 0),          # no window
    ("$SRV.PING.msgsvc", -1),
    ("$SRV.PING.msgsvc", 60001),      # over SVC_MSG_GATHER_MAX_MS
    ("$SRV.PING.*", 100),             # wildcards cannot be published to
    ("a..b", 100),
    ("", 100),
])
def test_refused_at_once_without_a_callback(gsvc, subject, ms):
    r, elapsed = gather(gsvc, subject, ms)
    assert r["rc"] != 0
    assert "end" not in r and r["replies"] == []
    assert r["inside_call"] is False


def test_lost_connection_ends_with_closed():
    """NATS goes away during a long window: the end says "closed" before the
    window is over, not "ok" after it (the list would be incomplete)."""
    long_ms = 60000
    ns = NatsServer()
    try:
        with gathersvc(ns) as g:
            out = {}
            # A listener that never answers: it sees the gather's request go
            # out, so the connection is lost while the gather runs.
            watcher = Nats(ns.port)
            watcher.subscribe("$SRV.PING.watched")
            watcher.flush()

            def run():
                out["r"], out["elapsed"] = gather(g, "$SRV.PING.watched", long_ms)

            t = threading.Thread(target=run)
            t.start()
            watcher.next_msg(subject_prefix="$SRV.PING.watched")
            watcher.close()
            ns.stop()
            t.join(long_ms / 1000 + WAIT)
            r = out["r"]
            assert r["rc"] == 0
            assert r["end"]["err"] == "closed"
            assert r["end"]["at_ms"] < long_ms
            # Not connected: refused through the callback, with no window.
            r, elapsed = gather(g, "$SRV.PING.nobody", long_ms)
            assert r["rc"] == 0 and r["end"]["err"] == "closed" and r["end"]["at_ms"] < long_ms
            ns.start()
            g.wait_ready()
            r, _ = gather(g, "$SRV.PING.gathersvc", WINDOW_MS)
            assert r["end"]["err"] == "ok" and len(r["replies"]) == 1
    finally:
        ns.close()


def test_from_on_start(nats_server):  # noqa: F811
    """svc_msg_run_on_loop and a gather from on_start: both reach the first
    worker's loop once it runs. The gather starts before the connection is
    up, so it ends at once with "closed" (as svc_rpc_call would)."""
    with gathersvc(nats_server) as g:
        st = wait_until(lambda: (lambda d: d if d["end"] != "pending" else None)(g.json("GET", "/startup")[1]),
                        what="the on_start gather's end")
        assert st["ran_on_loop"] is True
        assert st["end"] == "closed"
        assert st["replies"] == 0
