"""The gateway when things fail: balancing over instances, an instance killed
under load, NATS restarted under load, the circuit breaker, the retry budget,
and a service that starts after the gateway."""
import collections
import json
import threading
import signal
import time

import pytest

from conftest import WAIT, Service, wait_until
from services_fixtures import claims, sign_hs256
from test_gateway_support import (JWT_SECRET, FakeInstance, Load, Nats, NatsServer, echo, fail, gateway,
                                  instances, metric, nats_server, wait_instances)  # noqa: F401

TOKEN = sign_hs256(JWT_SECRET.encode(), claims(role="user", name="loadtest", exp=int(time.time()) + 3600))
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def products(nats, **kw):
    return Service("products", env={"NATS_URL": nats.url, "JWT_SECRET": JWT_SECRET, "WORKERS": "1"}, **kw)


def msgsvc(nats, **kw):
    return Service("msgsvc", env={"NATS_URL": nats.url, "JWT_SECRET": JWT_SECRET, "WORKERS": "1"}, **kw)


def served_over_nats(p):
    return metric(p, "nats_requests_total", route="/products/:id")


@pytest.fixture(scope="module")
def three_products(nats_server):  # noqa: F811
    ps = [products(nats_server) for _ in range(3)]
    try:
        with gateway(nats_server, [{"prefix": "/products", "service": "products", "auth": "user",
                                    "timeout_ms": 1000}]) as gw:
            wait_instances(gw, "products", 3)
            yield ps, gw
    finally:
        for p in ps:
            p.stop()


def test_requests_are_spread_over_every_instance(three_products):
    ps, gw = three_products
    before = [served_over_nats(p) for p in ps]
    for i in range(90):
        st, _, _ = gw.request("GET", f"/products/{i % 20 + 1}", headers=AUTH)
        assert st == 200
    shares = [served_over_nats(p) - b for p, b in zip(ps, before)]
    assert sum(shares) == 90
    # Round robin per worker: each instance gets close to a third.
    assert all(s >= 20 for s in shares), shares


def test_instance_killed_under_load_loses_no_get(three_products):
    ps, gw = three_products
    load = Load(gw.port, "/products/1", headers=AUTH, clients=4)
    try:
        wait_until(lambda: len(load.statuses()) >= 50, what="load before the kill")
        t_kill = time.monotonic()
        ps[0].signal(signal.SIGKILL)
        wait_until(lambda: len(load.statuses(since=t_kill)) > 50 and instances(gw, "products") == 2,
                   what="load after the kill, the dead instance gone")
    finally:
        results = load.stop()
    statuses = collections.Counter(s for _, s, _ in results)
    assert statuses[200] == len(results), statuses
    assert metric(gw, "gateway_retries_total") >= 1
    # The dead instance is gone from the rotation.
    wait_instances(gw, "products", 2)
    # Retries stayed within the budget.
    assert metric(gw, "gateway_retries_total") <= 0.2 * metric(gw, "gateway_requests_total")


def test_nats_restart_under_load():
    nats = NatsServer()
    try:
        with msgsvc(nats) as svc, gateway(nats, [{"prefix": "/whoami", "service": "msgsvc",
                                                 "timeout_ms": 1000}]) as gw:
            wait_instances(gw, "msgsvc", 1)
            load = Load(gw.port, "/whoami", clients=2)
            try:
                wait_until(lambda: load.statuses().count(200) >= 10, what="load before the kill")
                t_down = time.monotonic()
                nats.stop(signal.SIGKILL)
                # Requests started once the kill is done cannot reach anyone.
                t_dead = time.monotonic()
                wait_until(lambda: len(load.statuses(since=t_dead, finished_before=time.monotonic())) >= 5,
                           what="requests during the outage")
                t_up = time.monotonic()
                nats.start()
                # Both the gateway and the service reconnect by themselves
                # (ready: every worker connected and able to send), the
                # gateway finds the instance again, and its breaker, opened
                # by the outage, closes after a trial.
                wait_until(lambda: gw.request("GET", "/readyz")[0] == 200 and svc.request("GET", "/readyz")[0] == 200
                           and instances(gw, "msgsvc") == 1
                           and metric(gw, "gateway_breaker_state", service="msgsvc") == 0,
                           what="both ready again, the instance known, the breaker closed")
                t_ok = time.monotonic()
                wait_until(lambda: load.statuses(since=t_ok).count(200) >= 10, what="load after the restart")
            finally:
                load.stop()
            before = load.statuses(finished_before=t_down)
            outage = load.statuses(since=t_dead, until=t_up, finished_before=t_up)
            tail = load.statuses(since=t_ok)
            assert before and set(before) == {200}, collections.Counter(before)
            # During the outage: visible failures, never a hang or a reset.
            assert outage and set(outage) <= {503, 504}, collections.Counter(outage)
            assert tail and set(tail) == {200}, collections.Counter(tail)
    finally:
        nats.close()


def test_breaker_opens_when_the_only_instance_stops_and_closes_after(nats_server):  # noqa: F811
    with gateway(nats_server, [{"prefix": "/whoami", "service": "msgsvc"}],
                 breaker={"failures": 3, "open_ms": 1000}) as gw:
        svc = msgsvc(nats_server)
        wait_instances(gw, "msgsvc", 1)
        assert gw.request("GET", "/whoami")[0] == 200
        svc.stop()
        codes = []
        for _ in range(3):
            st, _, body = gw.request("GET", "/whoami")
            codes.append(st)
        assert codes == [503] * 3
        assert metric(gw, "gateway_breaker_state", service="msgsvc") == 1
        # Open: failing fast, without calling anyone.
        calls = metric(gw, "gateway_upstream_requests_total", service="msgsvc")
        assert gw.json("GET", "/whoami")[0] == 503
        st, doc = gw.json("GET", "/whoami")
        assert st == 503 and "failing" in doc["error"]["message"]
        assert metric(gw, "gateway_upstream_requests_total", service="msgsvc") == calls
        assert metric(gw, "gateway_breaker_rejected_total", service="msgsvc") >= 2
        with msgsvc(nats_server):
            # After open_ms, one trial goes through; its success closes the breaker.
            wait_until(lambda: gw.request("GET", "/whoami")[0] == 200, what="breaker closing")
            assert metric(gw, "gateway_breaker_state", service="msgsvc") == 0
            assert all(gw.request("GET", "/whoami")[0] == 200 for _ in range(5))


def test_retry_budget_holds_when_every_instance_fails(nats_server):  # noqa: F811
    # Thirty instances answering 503 to everything: each first failure would
    # want a retry on another instance; the budget allows 20% of requests.
    with FakeInstance(nats_server, "broken", fail(503), identities=30) as inst, \
            gateway(nats_server, {"/broken": "broken"}, breaker={"failures": 1000}) as gw:
        wait_instances(gw, "broken", 30)
        for _ in range(150):
            st, _, _ = gw.request("GET", "/broken")
            assert st == 503
        requests = metric(gw, "gateway_requests_total")
        retries = metric(gw, "gateway_retries_total")
        assert requests == 150
        assert 1 <= retries <= 0.2 * requests, retries
        assert metric(gw, "gateway_retry_budget_exhausted_total") >= 1
        assert inst.count() == requests + retries


def test_one_failing_instance_costs_no_client_request(nats_server):  # noqa: F811
    broken = {"now": False}

    def sometimes(inst, m):
        return fail(503)(inst, m) if broken["now"] else echo(inst, m)

    with FakeInstance(nats_server, "half", sometimes) as bad, FakeInstance(nats_server, "half") as good, \
            gateway(nats_server, {"/half": "half"}) as gw:
        wait_instances(gw, "half", 2)
        # Traffic first: the budget is a share of recent requests, and with
        # none there is nothing to spend (20% of nothing).
        for _ in range(40):
            assert gw.request("GET", "/half")[0] == 200
        broken["now"] = True
        n = bad.count()
        for _ in range(100):
            assert gw.request("GET", "/half")[0] == 200
        retries = metric(gw, "gateway_retries_total")
        assert bad.count() - n >= 1 and retries == bad.count() - n
        assert retries <= 0.2 * metric(gw, "gateway_requests_total")
        # A POST is not idempotent: the service's 503 comes back as it is, no retry.
        posts = [gw.request("POST", "/half", body=b"{}")[0] for _ in range(30)]
        assert metric(gw, "gateway_retries_total") == retries
        assert set(posts) <= {200, 503}


def test_request_nobody_received_is_retried_even_if_not_idempotent(nats_server):  # noqa: F811
    with FakeInstance(nats_server, "ghosted") as inst, gateway(nats_server, {"/g": "ghosted"}) as gw:
        wait_instances(gw, "ghosted", 1)
        for _ in range(40):
            assert gw.request("GET", "/g")[0] == 200
        inst.add_ghost()
        wait_instances(gw, "ghosted", 2)
        codes = [gw.request("POST", "/g", body=b"{}")[0] for _ in range(20)]
        assert codes == [200] * 20
        # Some POSTs were sent to the ghost first (no responders) and retried.
        assert metric(gw, "gateway_upstream_requests_total", service="ghosted", outcome="no_responders") >= 1
        assert metric(gw, "gateway_retries_total") >= 1
        assert inst.count() == 60  # each request reached the live instance exactly once


def test_service_started_after_the_gateway_is_picked_up(nats_server):  # noqa: F811
    with gateway(nats_server, {"/late": "late"}) as gw:
        assert gw.request("GET", "/late")[0] == 503
        assert instances(gw, "late") == 0
        with FakeInstance(nats_server, "late", echo):
            wait_until(lambda: gw.request("GET", "/late")[0] == 200, what="the late service")
            wait_instances(gw, "late", 1)
            a = FakeInstance(nats_server, "late", echo)
            try:
                wait_instances(gw, "late", 2)
            finally:
                a.close()


def test_a_ping_answer_naming_another_service_is_dropped():
    """The gateway asks $SRV.PING.<service> for each service: an answer to
    products' PING that claims to be an instance of orders is not learnt.
    A server of its own: no other test's products instances."""
    nats = NatsServer(jetstream=False)
    try:
        with gateway(nats, {"/products": "products", "/orders": "orders"}) as gw, \
                FakeInstance(nats, "products", echo) as real:
            liar = Nats(nats.port)
            try:
                liar.subscribe("$SRV.PING.products")
                liar.flush()
                deadline = time.monotonic() + WAIT
                while metric(gw, "gateway_discovery_answers_dropped_total") < 3 and time.monotonic() < deadline:
                    m = liar.next_msg()
                    doc = {"type": "io.nats.micro.v1.ping_response", "name": "orders", "id": real.id[::-1]}
                    liar.publish(m.reply, json.dumps(doc))
                assert metric(gw, "gateway_discovery_answers_dropped_total") >= 3
                assert instances(gw, "orders") == 0 and instances(gw, "products") == 1
            finally:
                liar.close()
    finally:
        nats.close()


def test_get_in_flight_on_an_instance_that_dies_moves_at_once(nats_server):  # noqa: F811
    """An instance dies with GETs in flight on it: as soon as the gateway finds
    it gone (the next request sent to it meets no responders), those GETs go to
    another instance, instead of waiting for the route's timeout (none of
    them times out)."""
    hang = {"now": False}

    def maybe_hang(inst, m):
        return None if hang["now"] else echo(inst, m)

    # The route's timeout: longer than anything the test does before the
    # GETs move, on any machine. The first attempts of moved GETs stay
    # registered until it passes, and the gateway's drain waits for them, so
    # its SHUTDOWN_TIMEOUT must be longer still.
    routes = [{"prefix": "/mv", "service": "mover", "timeout_ms": 10000}]
    with FakeInstance(nats_server, "mover") as good, \
            gateway(nats_server, routes, env={"WORKERS": "1", "SHUTDOWN_TIMEOUT": "20"}) as gw:
        bad = FakeInstance(nats_server, "mover", maybe_hang)
        closed = False
        try:
            wait_instances(gw, "mover", 2)
            for _ in range(40):  # traffic first: the retry budget is a share of it
                assert gw.request("GET", "/mv")[0] == 200
            hang["now"] = True
            before_bad, results = bad.count(), []

            def one():
                results.append((gw.request("GET", "/mv")[0], time.monotonic()))

            threads = [threading.Thread(target=one) for _ in range(4)]
            for t in threads:
                t.start()
            wait_until(lambda: bad.count() > before_bad, what="a GET held by the dying instance")
            bad.close()  # its NATS connection goes: nats-server drops its subscriptions
            closed = True
            # Once nats-server has done so (until then a request to it is
            # still delivered to the dead connection, and waits for the
            # timeout), the next requests sent to it meet no responders.
            probe = Nats(nats_server.port)
            try:
                wait_until(lambda: probe.request(f"svc.mover.{bad.id}.http").status == 503,
                           what="the dead instance's subscriptions gone")
            finally:
                probe.close()
            for _ in range(4):  # some meet no responders on its subject: the gateway learns it is gone
                assert gw.request("GET", "/mv")[0] == 200
            for t in threads:
                t.join(10)
        finally:
            if not closed:
                bad.close()
        assert [st for st, _ in results] == [200] * 4, results
        held = bad.count() - before_bad
        assert held >= 1
        # Every GET that was held moved on, none waited for its timeout.
        assert metric(gw, "gateway_upstream_requests_total", service="mover", outcome="timeout") == 0
        assert metric(gw, "gateway_moved_total") >= held
        assert good.count() >= 40 // 2


def test_conditional_writes_are_not_retried(nats_server):  # noqa: F811
    """A retry may run a request twice. For a PUT with If-Match that ran the
    first time (a timeout, a lost reply), the second run fails its condition:
    the client would get 412 for a write that landed. So the gateway never
    retries a conditional write (unconditional PUTs and DELETEs it does: the
    unit test of gw_may_run_twice)."""
    broken = {"now": False}

    def sometimes(inst, m):
        return fail(503)(inst, m) if broken["now"] else echo(inst, m)

    with FakeInstance(nats_server, "cw", sometimes) as bad, FakeInstance(nats_server, "cw") as good, \
            gateway(nats_server, {"/cw": "cw"}, breaker={"failures": 1000}) as gw:
        wait_instances(gw, "cw", 2)
        for _ in range(40):  # a budget to retry with
            assert gw.request("GET", "/cw")[0] == 200
        broken["now"] = True
        n, g, retries = bad.count(), good.count(), metric(gw, "gateway_retries_total")
        # Round robin (per worker): within a few requests one reaches the
        # failing instance, and its 503 comes back as it is.
        kinds = [("PUT", "If-Match", '"e1"'), ("DELETE", "If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")]
        cond = []
        while bad.count() == n and len(cond) < 100:
            method, hdr, val = kinds[len(cond) % 2]
            cond.append(gw.request(method, "/cw", body=b"{}", headers={hdr: val})[0])
        assert cond.count(503) == bad.count() - n >= 1, cond
        assert metric(gw, "gateway_retries_total") == retries
        assert good.count() - g == cond.count(200) == len(cond) - cond.count(503)
