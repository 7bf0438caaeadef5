"""Reconnection, readiness, start without NATS, NATS_URL=none, and the drain."""
import signal
import subprocess
import threading
import time

from conftest import Service, binary, free_port
from test_msg_support import NatsServer, Nats, metric, msgsvc, nats_server, wait_for  # noqa: F401


def ready(s):
    try:
        return s.request("GET", "/readyz", timeout=2)
    except OSError:
        return (0, {}, b"")


def test_restart_nats_under_load(nats_server):  # noqa: F811
    with msgsvc(nats_server) as s:
        # Publishes made while the service knows it is disconnected go to
        # "out.load"; the others to "ev.load".
        totals = {"ev": {"ok": 0, "eagain": 0, "closed": 0, "other": 0},
                  "out": {"ok": 0, "eagain": 0, "closed": 0, "other": 0}}
        calls = {"ok": 0, "failed_fast": 0, "slow": 0}
        phase = {"outage": False}
        stop = threading.Event()

        def load():
            while not stop.is_set():
                which = "out" if phase["outage"] else "ev"
                st, doc = s.json("POST", f"/publish?subject={which}.load&n=20", body=b"payload")
                for k in totals[which]:
                    totals[which][k] += doc[k]
                t = time.monotonic()
                st, doc = s.json("GET", "/call/msgsvc?path=/whoami&timeout=300")
                if doc["err"] == "ok":
                    calls["ok"] += 1
                elif time.monotonic() - t < 0.2:
                    calls["failed_fast"] += 1
                else:
                    calls["slow"] += 1
                time.sleep(0.005)

        th = threading.Thread(target=load)
        th.start()
        try:
            time.sleep(0.3)
            nats_server.stop(signal.SIGKILL)
            t_down = time.monotonic()
            st, _, body = wait_for(lambda: (lambda r: r[0] == 503 and r)(ready(s)), what="readyz 503")
            assert b"nats" in body
            assert time.monotonic() - t_down < 2
            phase["outage"] = True
            # More than the reconnect buffer holds (8 MB): the excess fails
            # with SVC_EAGAIN at once, visibly.
            st, big = s.json("POST", "/publish?subject=out.big&n=100", body=b"B" * 100000)
            assert big["eagain"] > 0 and big["ok"] > 0, big
            for k in big:
                totals["out"][k] += big[k]
            time.sleep(0.5)
            assert ready(s)[0] == 503
            phase["outage"] = False
            time.sleep(0.05)  # the load thread's current round ends
            nats_server.start()
            t_up = time.monotonic()
            wait_for(lambda: ready(s)[0] == 200, timeout=5, what="readyz 200 again")
            back = time.monotonic() - t_up
            # Resubscribed: a fresh client reaches the service over NATS.
            nc = Nats(nats_server.port)
            wait_for(lambda: nc.svc("msgsvc", "GET", "/whoami", timeout=1).svc_status == 200, timeout=2,
                     what="request over NATS after reconnect")
            served = time.monotonic() - t_up
            nc.close()
            assert back < 2 and served < 2, (back, served)
            time.sleep(0.3)
        finally:
            stop.set()
            th.join()
        # During the outage every publish either waited in the reconnect
        # buffer and was delivered after the reconnect, or failed visibly
        # and was counted. (What was written to the socket in the instant
        # before the client saw the server die is at-most-once, as core NATS
        # is; JetStream publishes wait for a stored ack.)
        out = totals["out"]
        failed = sum(v for k, t in totals.items() for kk, v in t.items() if kk != "ok")
        assert out["ok"] + out["eagain"] + out["closed"] + out["other"] > 0
        assert metric(s, "nats_publish_failures_total") == failed
        wait_for(lambda: s.json("GET", "/counts")[1]["outage"] >= out["ok"], timeout=5,
                 what="buffered publishes delivered")
        time.sleep(0.2)
        assert s.json("GET", "/counts")[1]["outage"] == out["ok"]
        assert s.json("GET", "/counts")[1]["events"] >= totals["ev"]["ok"] - 40
        # RPC calls while disconnected fail at once (SVC_ECLOSED), not at the deadline.
        assert calls["ok"] > 0 and calls["failed_fast"] > 0 and calls["slow"] <= 1, calls
        assert metric(s, "nats_reconnects_total") >= 1
        assert metric(s, "nats_connected") == 1
        log = " ".join(l.get("msg", "") for l in s.log_lines())
        assert "nats: disconnected" in log and "nats: reconnected" in log


def test_starts_while_nats_is_down_and_connects_later():
    port = free_port()
    s = Service("msgsvc", env={"NATS_URL": f"nats://127.0.0.1:{port}", "JWT_SECRET": "x" * 40}, wait_ready=False)
    ns = None
    try:
        wait_for(lambda: (lambda r: r[0] == 503 and r)(ready(s)), what="up, not ready")
        st, doc = s.json("GET", "/counts")
        assert st == 200 and doc["connected"] == 0
        st, doc = s.json("GET", "/call/msgsvc?path=/whoami")
        assert doc["err"] != "ok"
        ns = NatsServer(port=port)
        wait_for(lambda: ready(s)[0] == 200, timeout=5, what="ready once NATS is up")
        nc = Nats(port)
        assert nc.svc("msgsvc", "GET", "/hello/late").svc_status == 200
        nc.close()
    finally:
        s.stop()
        if s.tmp:
            s.tmp.cleanup()
        if ns:
            ns.close()


def test_nats_url_none_and_bad():
    with Service("msgsvc", env={"NATS_URL": "none", "JWT_SECRET": "x" * 40}) as s:
        st, doc = s.json("GET", "/counts")
        assert doc["connected"] == 0
        st, doc = s.json("GET", "/call/msgsvc?path=/whoami")
        assert doc["code"] == -10  # SVC_ECLOSED
        st, doc = s.json("POST", "/publish?subject=ev.x&n=1", body=b"x")
        assert doc["closed"] == 1
        assert "nats_connected" not in s.request("GET", "/metrics")[2].decode()
    for bad in ("http://127.0.0.1:4222", "nats://a b", "nats://ok:1,", ""):
        if bad == "":
            continue
        r = subprocess.run([binary("msgsvc")], env={"NATS_URL": bad, "PORT": "0"}, capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 2, (bad, r.stdout, r.stderr)
        assert "NATS_URL" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_drain_answers_in_flight_then_stops_listening(nats_server):  # noqa: F811
    s = msgsvc(nats_server)
    nc = Nats(nats_server.port)
    try:
        nc.publish("svc.msgsvc.http", reply=nc.inbox + ".inflight",
                   headers={"Svc-Method": "GET", "Svc-Path": "/slow", "Svc-Query": "ms=500"})
        nc.flush()
        time.sleep(0.15)
        s.signal(signal.SIGTERM)
        m = nc.next_msg(timeout=5, subject_prefix=nc.inbox + ".inflight")
        assert m.svc_status == 200 and m.json() == {"slept_ms": 500}
        # New requests find nobody once the instance drained: no-responders at once.
        t = time.monotonic()
        m = nc.svc("msgsvc", "GET", "/whoami", timeout=3)
        assert m.status == 503 and time.monotonic() - t < 1
        assert s.proc.wait(10) == 0
    finally:
        nc.close()
        s.stop()
        if s.tmp:
            s.tmp.cleanup()


def test_sigterm_while_nats_is_down_exits_promptly():
    ns = NatsServer()
    try:
        s = msgsvc(ns)
        nc = Nats(ns.port)
        assert nc.svc("msgsvc", "GET", "/whoami").svc_status == 200
        nc.close()
        ns.stop(signal.SIGKILL)
        wait_for(lambda: ready(s)[0] == 503, what="readyz 503")
        t = time.monotonic()
        assert s.stop() == 0
        assert time.monotonic() - t < 3.0
        if s.tmp:
            s.tmp.cleanup()
    finally:
        ns.close()
