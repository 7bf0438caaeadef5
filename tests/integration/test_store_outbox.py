"""The transactional outbox and idempotent consumers end to end
(tests/integration/outboxsvc.c, nats-server -js): every committed event
reaches the stream once and its effect runs once, across a SIGKILL of the
service; forged (no id), replayed (an id already applied) and refused events
change nothing and are counted."""
import http.client
import json
import threading

from conftest import Service, wait_until
from test_msg_support import Nats, NatsServer, js_publish, metric, nats_server  # noqa: F401


def outboxsvc(nats, **kw):
    env = {"NATS_URL": nats.url, "WORKERS": "2"}
    env.update(kw.pop("env", {}))
    return Service("outboxsvc", env=env, **kw)


def state(svc):
    st, doc = svc.json("GET", "/state")
    assert st == 200, doc
    return doc


def stream_messages(nc):
    info = json.loads(nc.request("$JS.API.STREAM.INFO.NOTES").data)
    return info.get("state", {}).get("messages")


def settled(svc, nc):
    """Everything committed was relayed, consumed once, and is in the stream once."""
    s = state(svc)
    return (s["outbox"] == 0 and s["effects"] == s["notes"] and s["max_n"] == 1
            and stream_messages(nc) == s["notes"]) and s


def test_every_event_once_across_a_kill9(nats_server):  # noqa: F811
    nc = Nats(nats_server.port)
    a = outboxsvc(nats_server, check_exit=False)
    b = None
    try:
        wait_until(lambda: stream_messages(nc) is not None, what="stream NOTES")
        for i in range(100):
            st, _ = a.json("POST", "/notes", body=f"note {i}".encode())
            assert st == 201
        # Kill it while a writer keeps posting: some notes are committed and
        # not yet relayed, or relayed and not yet deleted, or consumed and not
        # yet acked. Which of those happens is up to the race; the outcome is
        # the same.
        posted = []

        def post():
            try:
                for i in range(1000):
                    st, _ = a.json("POST", "/notes", body=f"late {i}".encode())
                    posted.append(st)
            except (OSError, http.client.HTTPException):
                pass  # the kill cut this request: it may or may not have committed

        t = threading.Thread(target=post)
        t.start()
        wait_until(lambda: len(posted) >= 20, what="posts under way")
        a.proc.kill()
        a.proc.wait()
        t.join()
        assert all(st == 201 for st in posted)

        b = outboxsvc(nats_server, data_dir=a.data_dir)
        for i in range(50):
            st, _ = b.json("POST", "/notes", body=f"after {i}".encode())
            assert st == 201
        s = wait_until(lambda: settled(b, nc), what="every note relayed and consumed once")
        assert s["notes"] >= 100 + len(posted) + 50
        assert s["inbox"] == s["notes"]
        assert metric(b, "outbox_published_total") >= 50
    finally:
        nc.close()
        if b:
            b.stop()
        a.stop()


def test_forged_replayed_and_refused_events_change_nothing(nats_server):  # noqa: F811
    nc = Nats(nats_server.port)
    # A short duplicate window, so an old id can be stored in the stream again
    # (the replay the inbox has to catch).
    with outboxsvc(nats_server, env={"OUTBOXSVC_DEDUP_MS": "200"}) as svc:
        try:
            wait_until(lambda: stream_messages(nc) is not None, what="stream NOTES")
            js_publish(nc, "notes.external", b"x", "ext-1")
            wait_until(lambda: metric(svc, "db_consumer_events_total", outcome="applied") >= 1,
                       what="ext-1 applied")
            before = state(svc)

            js_publish(nc, "notes.forged", b"no id")
            wait_until(lambda: metric(svc, "db_consumer_events_total", outcome="no_id") >= 1,
                       what="the event without an id dropped")
            wait_until(lambda: "without a usable Nats-Msg-Id" in svc.read_log(), what="its log line")

            # The same id again, once the stream's window no longer drops it.
            wait_until(lambda: not js_publish(nc, "notes.external", b"x", "ext-1").get("duplicate"),
                       what="ext-1 stored a second time")
            wait_until(lambda: metric(svc, "db_consumer_events_total", outcome="duplicate") >= 1,
                       what="the replay seen as a duplicate")

            js_publish(nc, "notes.external", b"refuse", "ref-1")
            wait_until(lambda: metric(svc, "db_consumer_events_total", outcome="refused") >= 1,
                       what="the refused event")

            after = state(svc)
            assert after["effects"] == before["effects"]
            assert after["max_n"] == 1
            # The replayed id is claimed once; the refused one not at all.
            assert after["inbox"] == before["inbox"]
        finally:
            nc.close()


def test_a_backlog_is_applied_in_batches_and_a_refused_event_rolls_back_alone():
    """300 events wait in the stream before the consumer starts: it takes them
    in batches (one transaction each, a savepoint per message), so there are
    far fewer commits than events, and the refused ones (every tenth) and the
    ones without an id leave the others of their batch applied. A server of
    its own: the stream must not exist yet."""
    ns = NatsServer()
    nc = Nats(ns.port)
    try:
        cfg = {"name": "NOTES", "subjects": ["notes.>"], "retention": "limits", "storage": "file",
               "num_replicas": 1, "duplicate_window": 120 * 10**9}
        created = json.loads(nc.request("$JS.API.STREAM.CREATE.NOTES", json.dumps(cfg).encode()).data)
        assert "error" not in created, created
        for i in range(300):
            js_publish(nc, "notes.backlog", b"refuse" if i % 10 == 3 else f"b{i}".encode(), f"b-{i}")
            if i % 30 == 0:
                js_publish(nc, "notes.backlog", b"no id")
        with outboxsvc(ns) as svc:
            wait_until(lambda: metric(svc, "db_consumer_events_total") == 310, what="every event handled")
            assert metric(svc, "db_consumer_events_total", outcome="applied") == 270
            assert metric(svc, "db_consumer_events_total", outcome="refused") == 30
            assert metric(svc, "db_consumer_events_total", outcome="no_id") == 10
            s = state(svc)
            assert s["effects"] == 270 and s["max_n"] == 1 and s["inbox"] == 270
            # Batches: at most SVC_MSG_STREAM_BATCH (64) per commit, and many
            # per commit here (the first message of a backlog goes alone, the
            # rest arrive while it commits).
            commits = metric(svc, "db_write_batches_total")
            assert 270 / 64 <= commits < 270 / 2, commits
    finally:
        nc.close()
        ns.close()
