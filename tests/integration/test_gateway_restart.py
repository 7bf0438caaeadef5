"""Instances that come and go cleanly cost no client request (the security
review's finding: SIGTERM auth, start it again, wait for its /readyz, and the
next POST /auth/login through a quiet gateway got 503 "auth has no live
instance", 5 of 5 tries).

Both sides are tested on their own: a draining instance publishes a leave
notice that takes it out of the gateway's rotation at once; and a request no
instance received (no responders, or a reply saying the instance drains) is
sent elsewhere whatever its method, without spending the retry budget."""
import json
import threading

import pytest

from conftest import Service, wait_until
from services_fixtures import ADMIN_PASS, ADMIN_USER, jwks_url, start_auth
from test_gateway_support import (FakeInstance, echo, gateway, instances, metric, nats_server,  # noqa: F401
                                  wait_instances)
from test_msg_support import Nats, msgsvc

LOGIN = {"username": ADMIN_USER, "password": ADMIN_PASS}


@pytest.mark.parametrize("drain_delay", ["1", "0"])
def test_graceful_restart_fails_no_request(nats_server, tmp_path, drain_delay):  # noqa: F811
    """Exactly the finding's scenario, several times in a row, with the
    built-in route table and settings (discovery every second, the retry
    budget 20% of recent requests: a quiet gateway has none)."""
    env = {"NATS_URL": nats_server.url, "WORKERS": "2", "DRAIN_DELAY": drain_delay}
    auth = start_auth(env, data_dir=str(tmp_path))
    try:
        with Service("gateway", env={"NATS_URL": nats_server.url, "WORKERS": "2",
                                     "AUTH_JWKS_URL": jwks_url(auth)}) as gw:
            wait_instances(gw, "auth", 1, timeout=10)
            assert gw.request("POST", "/auth/login", LOGIN)[0] == 200
            codes = []
            for _ in range(5):
                auth.stop()
                auth = start_auth(env, data_dir=str(tmp_path), port=auth.port)
                st, _, body = gw.request("POST", "/auth/login", LOGIN)
                codes.append((st, body[:100]))
            assert [st for st, _ in codes] == [200] * 5, codes
            assert metric(gw, "gateway_retry_budget_exhausted_total") == 0
            assert metric(gw, "http_requests_total", route="/auth/*", method="POST", code="503") == 0
    finally:
        auth.stop()


def test_leave_notice_takes_an_instance_out_at_once(nats_server):  # noqa: F811
    """No discovery round for a minute: only the leave notice can tell the
    gateway, and it does before the instance unsubscribes, so no request is
    ever sent to it afterwards."""
    a, b = msgsvc(nats_server), msgsvc(nats_server)
    try:
        with gateway(nats_server, {"/whoami": "msgsvc"}, discovery={"interval_ms": 60000}) as gw:
            wait_instances(gw, "msgsvc", 2)
            watcher = Nats(nats_server.port)
            watcher.subscribe("$SRV.LEAVE.>")
            watcher.flush()
            a.stop()
            notice = watcher.next_msg(timeout=10, subject_prefix="$SRV.LEAVE.")
            watcher.close()
            assert notice.subject.startswith("$SRV.LEAVE.msgsvc.") and notice.reply is None
            doc = notice.json()
            assert doc["type"] == "io.svckit.v1.leave_notice" and doc["name"] == "msgsvc"
            assert notice.subject == f"$SRV.LEAVE.msgsvc.{doc['id']}"
            wait_instances(gw, "msgsvc", 1)
            for _ in range(20):
                st, _, body = gw.request("GET", "/whoami")
                assert st == 200, body
            assert metric(gw, "gateway_upstream_requests_total", outcome="no_responders") == 0
            assert metric(gw, "gateway_resends_total") == 0
    finally:
        a.stop()
        b.stop()


def test_a_replacement_is_discovered_at_once(nats_server):  # noqa: F811
    """Discovery rounds a minute apart: the instance that replaces one that
    left is still found within a round of its first request (the queue
    subject reaches it, and the gateway looks at once)."""
    a = msgsvc(nats_server)
    try:
        with gateway(nats_server, {"/whoami": "msgsvc"}, discovery={"interval_ms": 60000}) as gw:
            wait_instances(gw, "msgsvc", 1)
            first = gw.json("GET", "/whoami")[1]["instance"]
            a.stop()
            wait_instances(gw, "msgsvc", 0)
            a = msgsvc(nats_server)
            st, doc = gw.json("GET", "/whoami")
            assert st == 200 and doc["instance"] != first
            wait_instances(gw, "msgsvc", 1)
            for _ in range(10):
                assert gw.json("GET", "/whoami")[1]["instance"] == doc["instance"]
            assert metric(gw, "gateway_upstream_requests_total", outcome="ok") == 12
    finally:
        a.stop()


def test_a_call_on_an_instance_that_dies_moves_with_no_other_request(nats_server):  # noqa: F811
    """An instance dies (no leave notice) holding a GET, and no other request
    comes to tell the gateway: once discovery stops seeing it, the GET moves
    to another instance rather than wait for its timeout (none is counted).
    The abandoned attempt still runs out its timeout: the gateway's drain
    waits for it, hence SHUTDOWN_TIMEOUT above the route's timeout."""
    hang = {"now": False}

    def maybe_hang(inst, m):
        return None if hang["now"] else echo(inst, m)

    routes = [{"prefix": "/mv", "service": "mover", "timeout_ms": 8000}]
    with FakeInstance(nats_server, "mover") as good, \
            gateway(nats_server, routes, env={"WORKERS": "1", "SHUTDOWN_TIMEOUT": "15"}) as gw:
        bad = FakeInstance(nats_server, "mover", maybe_hang)
        try:
            wait_instances(gw, "mover", 2)
            for _ in range(20):  # traffic first: the retry budget is a share of it
                assert gw.request("GET", "/mv")[0] == 200
            hang["now"] = True
            before = bad.count()
            results = []

            def client():
                for _ in range(4):  # round robin: one of the first two is held
                    n = bad.count()
                    st, _, body = gw.request("GET", "/mv", timeout=30)
                    held = bad.count() > n
                    results.append((st, json.loads(body)["instance"], held))
                    if held:
                        return

            t = threading.Thread(target=client)
            t.start()
            wait_until(lambda: bad.count() > before, what="a GET held by the dying instance")
        finally:
            bad.close()
        t.join(40)
        assert not t.is_alive()
        # The held one was answered by the live instance.
        assert results[-1] == (200, good.id, True), results
        assert metric(gw, "gateway_moved_total") == 1
        assert metric(gw, "gateway_upstream_requests_total", outcome="timeout") == 0


@pytest.mark.parametrize("retry", [True, False])
def test_request_nobody_received_is_resent_without_budget(nats_server, retry):  # noqa: F811
    """Ghosts: instances announced by discovery that listen on nothing (died
    between two rounds). A quiet gateway (no budget), a POST: still served,
    each exactly once, whether the route allows retries or not."""
    with FakeInstance(nats_server, "ghosted", echo) as inst:
        for _ in range(3):
            inst.add_ghost()
        with gateway(nats_server, [{"prefix": "/g", "service": "ghosted", "retry": retry}]) as gw:
            wait_instances(gw, "ghosted", 4)
            codes = [gw.request("POST", "/g", body=b"{}")[0] for _ in range(12)]
            assert codes == [200] * 12
            assert inst.count() == 12  # each reached the live instance exactly once
            resends = metric(gw, "gateway_resends_total")
            assert resends >= 1
            assert metric(gw, "gateway_upstream_requests_total", outcome="no_responders") == resends
            assert metric(gw, "gateway_retry_budget_exhausted_total") == 0


def draining(inst, m):
    return 503, {"Content-Type": "application/json", "Svc-Draining": "1"}, {
        "error": {"code": "unavailable", "message": "service is shutting down"}}


def test_draining_reply_is_resent_for_any_method(nats_server):  # noqa: F811
    with FakeInstance(nats_server, "dr", draining) as leaving, FakeInstance(nats_server, "dr", echo) as live, \
            gateway(nats_server, {"/dr": "dr"}) as gw:
        wait_instances(gw, "dr", 2)
        n = 0
        while leaving.count() == 0 and n < 40:  # round robin: a few requests reach it
            st, _, body = gw.request("POST", "/dr", body=b"{}")
            assert st == 200, body
            n += 1
        assert leaving.count() >= 1
        # It said it drains: out of rotation, though it still answers PINGs.
        wait_instances(gw, "dr", 1)
        assert live.count() == n  # every POST ran exactly once, on the live one
        assert metric(gw, "gateway_resends_total") == leaving.count()
        assert metric(gw, "gateway_upstream_requests_total", outcome="draining") == leaving.count()
        assert metric(gw, "gateway_retry_budget_exhausted_total") == 0


def test_resends_are_bounded_and_end_on_the_queue_subject(nats_server):  # noqa: F811
    """Every instance drains: a request is resent at most GW_MAX_RESENDS (3)
    times, then the service's own answer (its 503) goes back."""
    with FakeInstance(nats_server, "gone", draining) as inst, gateway(nats_server, {"/gone": "gone"}) as gw:
        wait_instances(gw, "gone", 1)
        st, hdrs, body = gw.request("POST", "/gone", body=b"{}")
        assert st == 503 and b"shutting down" in body
        assert inst.count() == 4
        assert metric(gw, "gateway_resends_total") == 3
        assert instances(gw, "gone") == 0
