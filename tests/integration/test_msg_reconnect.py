"""Reconnection, readiness, start without NATS, NATS_URL=none, and the drain."""
import collections
import signal
import socket
import subprocess
import threading

from conftest import WAIT, Service, binary, free_port, wait_until
from test_msg_support import NatsServer, Nats, metric, msgsvc, nats_server  # noqa: F401

SVC_OK, SVC_ETIMEDOUT, SVC_EAGAIN, SVC_ECLOSED = 0, -7, -9, -10
# The deadline of the calls these tests make: long, so that a call ending at
# its deadline is one that waited when it should have failed at once (no
# loaded machine takes ten seconds to fail a call), and a correct run never
# waits for it.
CALL_MS = 10000


def ready(s):
    try:
        return s.request("GET", "/readyz", timeout=WAIT)
    except OSError:
        return (0, {}, b"")


def logged(s, text):
    return sum(text in line.get("msg", "") for line in s.log_lines())


def call(s):
    return s.json("GET", f"/call/msgsvc?path=/whoami&timeout={CALL_MS}")[1]


def test_restart_nats_under_load(nats_server):  # noqa: F811
    """nats-server killed and started again while one client publishes and
    calls in a loop. What must hold, whatever the machine's speed: every call
    ends with a defined outcome (ok, closed, no responders), none at its
    deadline; while NATS is down calls fail with "closed"; after it is back
    they succeed; every publish went out, or waited in the reconnect buffer
    and was delivered after the reconnect, or failed visibly and was counted."""
    with msgsvc(nats_server) as s:
        # Phases: "before" the kill; "down" once both workers have seen the
        # connection go (from then on nothing can be lost in a dead socket);
        # "restarting" from nats-server's start; "after" once the service is
        # ready again. Publishes go to ev.load before the kill and to out.load
        # from "down" on. Calls are counted by the phase they ended in.
        phase = {"now": "before"}
        published = {"ev": collections.Counter(), "out": collections.Counter()}
        calls = collections.defaultdict(collections.Counter)  # phase -> outcome code -> n
        lock = threading.Lock()
        stop = threading.Event()
        errors = []

        def load():
            try:
                while not stop.is_set():
                    now = phase["now"]
                    which = "ev" if now == "before" else "out"
                    st, doc = s.json("POST", f"/publish?subject={which}.load&n=20", body=b"payload")
                    with lock:
                        published[which].update(doc)
                    doc = call(s)
                    with lock:
                        calls[phase["now"]][doc["code"]] += 1
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        def count(ph, code=None):
            with lock:
                return sum(n for c, n in calls[ph].items() if code is None or c == code)

        th = threading.Thread(target=load)
        th.start()
        try:
            wait_until(lambda: count("before", SVC_OK) >= 3, what="calls succeeding before the restart")
            nats_server.stop(signal.SIGKILL)
            wait_until(lambda: logged(s, "nats: disconnected") >= 2, what="both workers disconnected")
            phase["now"] = "down"
            st, _, body = ready(s)
            assert st == 503 and b"nats" in body
            # More than the reconnect buffer holds (8 MB): the excess fails
            # with SVC_EAGAIN at once, visibly.
            st, big = s.json("POST", "/publish?subject=out.big&n=100", body=b"B" * 100000)
            assert big["eagain"] > 0 and big["ok"] > 0, big
            with lock:
                published["out"].update(big)
            # Calls end while NATS is down: they fail rather than wait for it.
            wait_until(lambda: count("down") >= 3, what="calls ending while NATS is down")
            phase["now"] = "restarting"
            nats_server.start()
            wait_until(lambda: ready(s)[0] == 200, what="readyz 200 again")
            phase["now"] = "after"
            wait_until(lambda: count("after", SVC_OK) >= 3, what="calls succeeding after the restart")
            # Resubscribed: a fresh client reaches the service over NATS.
            nc = Nats(nats_server.port)
            try:
                wait_until(lambda: nc.svc("msgsvc", "GET", "/whoami").svc_status == 200,
                           what="a request over NATS after the reconnect")
            finally:
                nc.close()
        finally:
            stop.set()
            th.join()
        assert not errors, errors
        # Every call ended with a defined outcome, never at its deadline;
        # while down with "closed" (or "try again" when its request did not
        # fit the full reconnect buffer, within the first 100 ms).
        for ph, outcomes in calls.items():
            assert set(outcomes) <= {SVC_OK, SVC_ECLOSED, SVC_EAGAIN}, (ph, dict(outcomes))
        assert set(calls["down"]) <= {SVC_ECLOSED, SVC_EAGAIN} and calls["down"][SVC_ECLOSED] > 0, dict(calls["down"])
        # Publishes: what was made while down either failed visibly or was
        # delivered after the reconnect, exactly once; before the kill, at
        # most once (what was written to the socket in the instant before the
        # client saw the server die is lost, as core NATS is at-most-once).
        out, ev = published["out"], published["ev"]
        try:
            wait_until(lambda: s.json("GET", "/counts")[1]["outage"] >= out["ok"], what="buffered publishes delivered")
        except AssertionError as e:  # what was delivered, and what the service says about the rest
            raise AssertionError((str(e), dict(out), s.json("GET", "/counts")[1],
                                  [ln for ln in s.request("GET", "/metrics")[2].decode().splitlines()
                                   if ln.startswith("nats_") and not ln.endswith(" 0")],
                                  [ln.get("msg") for ln in s.log_lines() if ln.get("msg") != "request"]))
        counts = s.json("GET", "/counts")[1]
        assert counts["outage"] == out["ok"], (counts, out)
        assert 0 < counts["events"] <= ev["ok"], (counts, ev)
        # Each failure the handler saw is counted (so are calls and replies
        # that found the reconnect buffer full).
        failed = sum(n for c in (out, ev) for k, n in c.items() if k != "ok")
        assert failed > 0 and metric(s, "nats_publish_failures_total") >= failed
        assert metric(s, "nats_reconnects_total") >= 2  # both workers
        assert metric(s, "nats_connected") == 1
        wait_until(lambda: logged(s, "nats: reconnected") >= 2, what="both reconnections logged")  # logs flush each tick


class CuttingProxy:
    """A TCP proxy to nats-server that cuts every connection as soon as the
    client sends `cut` (both sockets closed, nothing after it forwarded)."""

    def __init__(self, nats_port, cut):
        self.nats_port, self.cut = nats_port, cut
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.nats_port))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src, dst, from_client):
        seen = b""
        try:
            while True:
                b = src.recv(65536)
                if not b:
                    break
                seen = (seen + b)[-4096:]
                if from_client and self.cut in seen:
                    self.cuts += 1
                    break
                dst.sendall(b)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self):
        self.listener.close()


def test_call_on_a_worker_holding_its_buffer_fails_fast(nats_server):  # noqa: F811
    """A worker other than 0 that is connected again holds its publishes
    until worker 0's subscriptions are back. A call made on it cannot go out
    meanwhile: it fails at once with SVC_ECLOSED, as when disconnected,
    instead of waiting in the buffer for its deadline. Here a proxy cuts
    worker 0's connection whenever it subscribes to the service's events
    (which only worker 0 does), so worker 1 stays connected and holding."""
    proxy = CuttingProxy(nats_server.port, b"SUB ev.>")
    s = Service("msgsvc", env={"NATS_URL": f"nats://127.0.0.1:{proxy.port}", "WORKERS": "2",
                               "JWT_SECRET": "x" * 40}, wait_ready=False)
    try:
        wait_until(lambda: logged(s, "connected to 127.0.0.1:%d (worker 1)" % proxy.port), what="worker 1 connected")
        wait_until(lambda: proxy.cuts >= 1, what="worker 0 cut")
        # Twenty calls, on either worker: on worker 0 (disconnected, or
        # connected for the instant before its cut) and on worker 1
        # (connected, holding), each fails at once.
        for _ in range(20):
            doc = call(s)
            assert doc["code"] == SVC_ECLOSED, doc
    finally:
        s.stop()
        if s.tmp:
            s.tmp.cleanup()
        proxy.close()


def test_starts_while_nats_is_down_and_connects_later():
    port = free_port()
    s = Service("msgsvc", env={"NATS_URL": f"nats://127.0.0.1:{port}", "JWT_SECRET": "x" * 40}, wait_ready=False)
    ns = None
    try:
        wait_until(lambda: (lambda r: r[0] == 503 and r)(ready(s)), what="up, not ready")
        st, doc = s.json("GET", "/counts")
        assert st == 200 and doc["connected"] == 0
        st, doc = s.json("GET", "/call/msgsvc?path=/whoami")
        assert doc["err"] != "ok"
        ns = NatsServer(port=port)
        wait_until(lambda: ready(s)[0] == 200, what="ready once NATS is up")
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
        assert doc["code"] == SVC_ECLOSED
        st, doc = s.json("POST", "/publish?subject=ev.x&n=1", body=b"x")
        assert doc["closed"] == 1
        assert "nats_connected" not in s.request("GET", "/metrics")[2].decode()
    for bad in ("http://127.0.0.1:4222", "nats://a b", "nats://ok:1,nats://", "nats://ok:99999"):
        r = subprocess.run([binary("msgsvc")], env={"NATS_URL": bad, "PORT": "0"}, capture_output=True,
                           text=True, timeout=WAIT)
        assert r.returncode == 2, (bad, r.stdout, r.stderr)
        assert "NATS_URL" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_drain_answers_in_flight_then_stops_listening(nats_server):  # noqa: F811
    s = msgsvc(nats_server)
    nc = Nats(nats_server.port)
    try:
        nc.publish("svc.msgsvc.http", reply=nc.inbox + ".inflight",
                   headers={"Svc-Method": "GET", "Svc-Path": "/slow", "Svc-Query": "ms=500"})
        # Once the PONG is back the server has routed the request to the
        # service, ahead of anything the drain sends: in flight, whether or
        # not its handler has started yet.
        nc.flush()
        s.signal(signal.SIGTERM)
        m = nc.next_msg(subject_prefix=nc.inbox + ".inflight")
        assert m.svc_status == 200 and m.json() == {"slept_ms": 500}
        # New requests find nobody once the drain's unsubscription is in:
        # the server's no-responders status, not a timeout.
        m = wait_until(lambda: (lambda m: m.status == 503 and not m.data and m)(nc.svc("msgsvc", "GET", "/whoami")),
                       what="no responders after the drain")
        assert s.proc.wait(WAIT) == 0
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
        wait_until(lambda: ready(s)[0] == 503, what="readyz 503")
        # Exit 0 means the drain finished on its own, before SHUTDOWN_TIMEOUT
        # forced it: nothing waited for the missing server.
        assert s.stop() == 0
        assert logged(s, "SHUTDOWN_TIMEOUT reached") == 0
        if s.tmp:
            s.tmp.cleanup()
    finally:
        ns.close()
