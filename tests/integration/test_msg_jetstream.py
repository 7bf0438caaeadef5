"""JetStream: de-duplication by message id, durable consumers with explicit
acks, and no event lost when the consumer is killed mid-stream."""
import base64
import json
import os

from conftest import wait_until
from test_msg_support import Nats, StatusDroppingProxy, js_publish, metric, msgsvc, nats_server  # noqa: F401

N = 200


def processed(path):
    """{msg_id: [delivery counts]} from the consumer's log."""
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                out.setdefault(parts[0], []).append(int(parts[1]))
    return out


def test_dedup_durable_consumer_survives_kill9(nats_server):  # noqa: F811
    env = {"MSGSVC_JS": "1", "MSGSVC_ACK_WAIT_MS": "1500", "MSGSVC_STREAM_SLEEP_MS": "15"}
    a = msgsvc(nats_server, env=env, check_exit=False)
    b = None
    nc = Nats(nats_server.port)
    try:
        log = os.path.join(a.data_dir, "processed.log")
        # The stream exists once the service is up (declared in on_start).
        wait_until(lambda: json.loads(nc.request("$JS.API.STREAM.INFO.ORDERS").data).get("config"),
                   what="stream ORDERS")
        dups = 0
        for i in range(N):
            ack = js_publish(nc, "orders.new", f"order {i}", f"o-{i}")
            assert ack["stream"] == "ORDERS" and not ack.get("duplicate")
            if i % 4 == 0:  # a retry of the same event: stored once
                ack = js_publish(nc, "orders.new", f"order {i}", f"o-{i}")
                assert ack.get("duplicate") is True
                dups += 1
        # svc_js_publish de-duplicates the same way.
        for i in range(3):
            st, doc = a.json("POST", "/jspublish?subject=orders.api&id=api-1", body=b"x")
            assert st == 200 and doc["rc"] == "ok"
        st, doc = a.json("POST", "/jspublish?subject=nostream.x&id=z", body=b"x")
        assert st == 503 and doc["rc"] != "ok"
        info = json.loads(nc.request("$JS.API.STREAM.INFO.ORDERS").data)
        assert info["state"]["messages"] == N + 1, info["state"]

        # Kill the consumer mid-stream: each message takes at least 15 ms (a
        # sleep), one at a time, so what is left takes seconds.
        wait_until(lambda: len(processed(log)) >= N // 10, what="a tenth processed")
        a.proc.kill()
        a.proc.wait()
        before = processed(log)
        assert len(before) < N + 1, "too fast to kill mid-stream"

        b = msgsvc(nats_server, env=env, data_dir=a.data_dir)
        wait_until(lambda: len(processed(log)) == N + 1, what="every event processed")
        done = processed(log)
        assert set(done) == {f"o-{i}" for i in range(N)} | {"api-1"}
        # Redelivered only what was unacked at the kill: at most one
        # consumer's in-flight window, each with a delivery count above 1.
        again = {k: v for k, v in done.items() if len(v) > 1}
        assert len(again) <= 256
        assert all(max(v) > 1 for v in again.values())
        # Everything acked: the server has nothing left to redeliver.
        n_lines = sum(len(v) for v in done.values())
        wait_until(lambda: (lambda c: c["num_ack_pending"] == 0 and c["num_pending"] == 0)(
            json.loads(nc.request("$JS.API.CONSUMER.INFO.ORDERS.msgsvc").data)), what="every message acked")
        assert sum(len(v) for v in processed(log).values()) == n_lines
    finally:
        nc.close()
        if b:
            b.stop()
        a.__exit__(None, None, None)


def test_consumer_lag_metric_is_the_servers_pending_count(nats_server, tmp_path):  # noqa: F811
    """jetstream_consumer_pending_messages{service,stream,durable} (what the
    Prometheus alert SvckitJetStreamConsumerLag watches) is the consumer's
    num_pending as the server reports it, also while the consumer is stuck:
    every handler holds a message, so the consumer asks the server for
    nothing more, and what is published then reaches the gauge only through
    the CONSUMER.INFO poll (every SVC_MSG_JS_LAG_MS), never through a
    delivery's reply subject. Once they let go and everything is consumed, it
    is 0."""
    gate = tmp_path / "gate"
    gate.write_text("")
    env = {"MSGSVC_JS": "1", "MSGSVC_ACK_WAIT_MS": "60000", "MSGSVC_STREAM_GATE": str(gate)}
    svc = msgsvc(nats_server, env=env)
    nc = Nats(nats_server.port)
    labels = {"service": "msgsvc", "stream": "ORDERS", "durable": "msgsvc"}
    try:
        log = os.path.join(svc.data_dir, "processed.log")
        wait_until(lambda: json.loads(nc.request("$JS.API.STREAM.INFO.ORDERS").data).get("config"),
                   what="stream ORDERS")

        def info():
            return json.loads(nc.request("$JS.API.CONSUMER.INFO.ORDERS.msgsvc").data)

        wait_until(lambda: "num_pending" in info(), what="consumer msgsvc")
        assert "jetstream_consumer_pending_messages{" in svc.request("GET", "/metrics")[2].decode()
        for i in range(N):
            js_publish(nc, "orders.lag", f"order {i}", f"lag-{i}")
        # The handlers took what they could and hold it; with every one busy
        # the consumer asks for nothing more (no pull waiting at the server),
        # so no delivery comes from here on.
        held = wait_until(lambda: (lambda c: c["num_waiting"] == 0 and c["num_ack_pending"] > 0
                                   and c["num_pending"] + c["num_ack_pending"] == N and c)(info()),
                          what="the consumer stuck on what it holds")
        stuck = N // 4
        for i in range(N, N + stuck):
            js_publish(nc, "orders.lag", f"order {i}", f"lag-{i}")
        # Only the poll can tell the gauge about these.
        want = held["num_pending"] + stuck
        wait_until(lambda: info()["num_pending"] == want
                   and metric(svc, "jetstream_consumer_pending_messages", **labels) == want,
                   what="the gauge equal to the server's num_pending of a stuck consumer")
        gate.unlink()
        wait_until(lambda: len(processed(log)) == N + stuck, what="every message consumed")
        wait_until(lambda: info()["num_pending"] == 0
                   and metric(svc, "jetstream_consumer_pending_messages", **labels) == 0,
                   what="the gauge back to 0")
    finally:
        if gate.exists():
            gate.unlink()
        nc.close()
        svc.stop()


def test_consumer_does_not_wait_for_the_408_of_an_expired_pull(nats_server):  # noqa: F811
    """nats-server may end a pull that expires as messages arrive without
    its 408 (seen with 2.9: the consumer got nothing until a watchdog fired
    1.5 s later, bench/README "Orders end to end"). A consumer replaces a
    pull before it expires, so behind a proxy that drops every 408 it still
    gets each event, and every pull has a reply subject of its own (a late
    status of a replaced pull is told apart and ignored)."""
    proxy = StatusDroppingProxy(nats_server.port)
    a = msgsvc(nats_server, env={"MSGSVC_JS": "1", "NATS_URL": proxy.url})
    nc = Nats(nats_server.port)
    try:
        log = os.path.join(a.data_dir, "processed.log")
        wait_until(lambda: json.loads(nc.request("$JS.API.STREAM.INFO.ORDERS").data).get("config"),
                   what="stream ORDERS")
        for i in range(4):
            # Idle until a pull has expired on the server (its 408 dropped),
            # then an event: the consumer must be asking again by itself.
            wait_until(lambda: proxy.dropped > i, what=f"an expired pull ({i + 1})")
            js_publish(nc, "orders.new", f"order {i}", f"late-{i}")
            wait_until(lambda: f"late-{i}" in processed(log), what=f"event late-{i} handled")
        assert len(set(proxy.pulls)) == len(proxy.pulls) > 4, proxy.pulls
    finally:
        nc.close()
        a.stop()
        proxy.close()


def test_a_declared_stream_keeps_what_the_environment_bounds(nats_server):  # noqa: F811
    """Every stream a service declares is bounded: NATS_JS_MAX_AGE seconds
    and NATS_JS_MAX_BYTES per copy (default a week and 1 GiB), the oldest
    events dropped first, so a stream never fills its server's store (the
    saga would stop at "insufficient resources" for good). Beyond its bytes
    the stream drops from the front and keeps taking the newest; a
    duplicate window over SVC_JS_MAX_DUPLICATE_WINDOW_MS is refused."""
    nc = Nats(nats_server.port)

    def config():
        return json.loads(nc.request("$JS.API.STREAM.INFO.ORDERS").data).get("config")

    try:
        with msgsvc(nats_server, env={"MSGSVC_JS": "1"}) as svc:
            cfg = wait_until(config, what="stream ORDERS")
            assert (cfg["max_age"], cfg["max_bytes"], cfg["discard"]) == (7 * 24 * 3600 * 10**9, 2**30, "old"), cfg
            st, doc = svc.json("GET", "/jsstream/refused")
            EINVAL = -3  # svckit/core.h
            assert st == 200 and doc == {"negative": EINVAL, "too_long": EINVAL}, doc
        env = {"MSGSVC_JS": "1", "NATS_JS_MAX_AGE": "7200", "NATS_JS_MAX_BYTES": str(1 << 20)}
        with msgsvc(nats_server, env=env):
            # The service updates the stream it finds with other bounds.
            cfg = wait_until(lambda: (lambda c: c and c["max_bytes"] == 1 << 20 and c)(config()),
                             what="stream ORDERS updated")
            assert (cfg["max_age"], cfg["discard"]) == (7200 * 10**9, "old"), cfg
            chunk = b"x" * (64 << 10)
            for i in range(40):  # 2.5 MiB into a 1 MiB stream
                js_publish(nc, "orders.big", chunk, f"big-{i}")
            state = json.loads(nc.request("$JS.API.STREAM.INFO.ORDERS").data)["state"]
            assert state["bytes"] <= 1 << 20, state
            assert state["last_seq"] - state["first_seq"] + 1 == state["messages"] < 40, state
            # The newest is kept: the last one published.
            last = json.loads(nc.request("$JS.API.STREAM.MSG.GET.ORDERS",
                                         json.dumps({"seq": state["last_seq"]}).encode()).data)["message"]
            assert b"Nats-Msg-Id: big-39\r\n" in base64.b64decode(last["hdrs"]), last
    finally:
        nc.close()
