"""Events and queue groups over several instances; floods."""
from conftest import WAIT, wait_until
from test_msg_support import Nats, metric, msgsvc, nats_server  # noqa: F401


def counts(s):
    return s.json("GET", "/counts")[1]


def test_queue_groups_over_three_instances(nats_server):  # noqa: F811
    svcs = [msgsvc(nats_server) for _ in range(3)]
    nc = Nats(nats_server.port)
    try:
        ids = [nc.request("svc.msgsvc.GET.whoami").json()["instance"] for _ in range(3)]
        # Requests: 300 over the queue group reach every instance, once each.
        seen = {}
        for i in range(300):
            m = nc.svc("msgsvc", "GET", "/whoami")
            assert m.svc_status == 200
            inst = m.json()["instance"]
            seen[inst] = seen.get(inst, 0) + 1
        assert len(seen) == 3 and all(v > 0 for v in seen.values()), seen
        assert sum(seen.values()) == 300
        # Events in the service's group: each handled exactly once per service.
        for i in range(300):
            nc.publish(f"ev.order.{i}", f"event {i}")
        # Events with "" as group: every instance handles every one.
        for i in range(50):
            nc.publish("bc.config", f"broadcast {i}")
        nc.flush()
        # Then exactly that many: an extra delivery arriving later would be
        # missed (never a false failure).
        wait_until(lambda: sum(counts(s)["events"] for s in svcs) >= 300 and
                   all(counts(s)["broadcast"] >= 50 for s in svcs), what="events handled")
        c = [counts(s) for s in svcs]
        assert sum(x["events"] for x in c) == 300, c
        assert all(x["events"] > 0 for x in c), c
        assert all(x["broadcast"] == 50 for x in c), c
        # The RPC client balances over the group too.
        got = set()
        for _ in range(30):
            st, doc = svcs[0].json("GET", "/call/msgsvc?path=/whoami")
            assert doc["err"] == "ok"
            got.add(doc["instance"])
        assert len(got) >= 2
        # A call pinned to one instance reaches only it.
        for _ in range(5):
            st, doc = svcs[0].json("GET", f"/call/msgsvc?path=/whoami&instance={ids[2]}")
            assert doc["instance"] == ids[2]
    finally:
        nc.close()
        errors = []
        for s in svcs:  # stop them all, even if one reports a problem
            try:
                s.__exit__(None, None, None)
            except AssertionError as e:
                errors.append(e)
        if errors:
            raise errors[0]


def test_event_flood_does_not_stall_requests_or_publisher(nats_server):  # noqa: F811
    with msgsvc(nats_server) as s:
        nc = Nats(nats_server.port)
        pub = Nats(nats_server.port)
        n = 150000
        blob = b"".join(b"PUB flood.x 8\r\nfloodxxx\r\n" for _ in range(n))
        pub.send(blob)
        pub.flush()
        # While the flood is being worked off: requests on both transports
        # and the service's own publishes are served (how fast is bench/'s
        # business).
        for i in range(20):
            assert nc.svc("msgsvc", "GET", f"/hello/n{i}").svc_status == 200
            assert s.request("GET", "/hello/h")[0] == 200
            st, doc = s.json("POST", "/publish?subject=ev.during&n=100", body=b"x")
            assert doc["ok"] == 100
        # Every flood event is either handled or counted as dropped. Some are
        # dropped whatever the machine's speed: the loop reads the socket 64
        # KiB (2,500 events) at a time and handles 64 events between reads,
        # so its queue passes SVC_MSG_MAX_PENDING_PER_SUB (65,536).
        def settled():
            handled = counts(s)["flood"]
            dropped = (metric(s, "nats_messages_dropped_total", reason="overflow") +
                       metric(s, "nats_messages_dropped_total", reason="slow_consumer"))
            return handled + dropped == n and (handled, dropped)
        handled, dropped = wait_until(settled, timeout=4 * WAIT, what="flood settled")
        assert dropped > 0 and handled > 0
        wait_until(lambda: any("queue full" in l.get("msg", "") or "slow consumer" in l.get("msg", "")
                               for l in s.log_lines()), what="the drops logged")
        nc.close()
        pub.close()


def test_offloaded_event_backlog_leaves_the_thread_pool_free(nats_server):  # noqa: F811
    # 1000 events of 5 ms each (a sleep: at least 5 ms) on the thread pool,
    # at most one at a time per worker: 2.5 s of work at the very least. One
    # subscription never holds more than one pool thread per worker, so an
    # offloaded route is answered while that backlog is still there; were
    # the pool's queue clogged with the events, the requests would come
    # back only once the backlog was gone.
    n = 1000
    with msgsvc(nats_server) as s:
        nc = Nats(nats_server.port)
        for i in range(n):
            nc.publish("slowev.x", b"e")
        nc.flush()
        wait_until(lambda: counts(s)["slow"] > 0, what="first slow event")
        for _ in range(5):
            st, doc = s.json("GET", "/slow?ms=1")
            assert st == 200
            assert nc.svc("msgsvc", "GET", "/slow", query="ms=1").svc_status == 200
        assert counts(s)["slow"] < n  # the backlog really was still there
        wait_until(lambda: counts(s)["slow"] == n, what="the backlog worked off")  # before the drain
        nc.close()
