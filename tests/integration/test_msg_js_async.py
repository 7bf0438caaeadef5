"""svc_js_publish_async against a real nats-server, restarted while publishes
await their acks: every publish reports exactly once (an ack or an error),
every acked one is in the stream where its ack said, the acked ones are
stored in publish order (none overtakes one that a lost connection took),
and publishing goes on once the server is back.

msgsvc publishes pubs.<n> (Nats-Msg-Id p-<n>) from a thread of its own,
without pause, up to SVC_JS_MAX_ASYNC in flight, and logs each callback's
outcome. Outcomes allowed for a publish: acked, or failed with closed (the
connection was down or lost), timeout (its ack never came) or not_found
(sent while the restarted server had no stream yet)."""
import json
import os
import signal

from conftest import wait_until
from test_msg_support import Nats, msgsvc, nats_server  # noqa: F401


# svckit/core.h's codes of the outcomes a publish may report.
CODES = {"0": "ok", "-10": "closed", "-7": "timed out", "-4": "not found"}


def outcomes(svc):
    """{n: (status, seq)} from msgsvc's jsasync.log; fails on a second line for one n."""
    out = {}
    with open(os.path.join(svc.data_dir, "jsasync.log")) as f:
        for line in f:
            n, status, seq, _dup = line.split()
            assert int(n) not in out, f"publish {n} reported twice"
            out[int(n)] = (CODES.get(status, status), int(seq))
    return out


def test_async_publish_across_a_server_restart(nats_server):  # noqa: F811
    svc = msgsvc(nats_server, env={"MSGSVC_JS": "1", "WORKERS": "2"})
    nc = None
    try:
        nc = Nats(nats_server.port)
        wait_until(lambda: json.loads(nc.request("$JS.API.STREAM.INFO.PUBS").data).get("config"),
                   what="stream PUBS")
        nc.close()
        nc = None

        def state():
            return svc.json("GET", "/jsasync")[1]

        assert svc.json("POST", "/jsasync/start")[0] == 200
        wait_until(lambda: state()["acked"] >= 2000, what="2000 acks")
        # Restart the server while the thread keeps publishing.
        nats_server.stop(signal.SIGTERM)
        wait_until(lambda: state()["failed"] > 0, what="failures reported while the server is down")
        nats_server.start()
        acked_before = state()["acked"]
        wait_until(lambda: state()["acked"] >= acked_before + 2000, what="2000 acks after the restart")
        st, final = svc.json("POST", "/jsasync/stop")
        assert st == 200, final
        assert final["refused"] == 0, final
        # Exactly one callback per publish that was accepted.
        assert final["acked"] + final["failed"] == final["sent"], final
        got = outcomes(svc)
        assert len(got) == final["sent"]
        statuses = {s for s, _ in got.values()}
        assert statuses <= {"ok", "closed", "timed out", "not found"}, statuses
        acked = sorted((n, seq) for n, (s, seq) in got.items() if s == "ok")
        assert len(acked) == final["acked"]
        # Stored in publish order: the stream sequences of the acked ones rise with n.
        seqs = [seq for _, seq in acked]
        assert all(a < b for a, b in zip(seqs, seqs[1:])), "an acked publish was stored out of order"
        # Every ack is true: the message is in the stream at that sequence.
        nc = Nats(nats_server.port)
        for n, seq in acked[::97] + acked[-5:]:
            m = json.loads(nc.request("$JS.API.STREAM.MSG.GET.PUBS", json.dumps({"seq": seq}).encode()).data)
            assert m.get("message", {}).get("subject") == f"pubs.{n}", (n, seq, m)
        info = json.loads(nc.request("$JS.API.STREAM.INFO.PUBS").data)
        assert info["state"]["messages"] >= len(acked)
    finally:
        if nc:
            nc.close()
        svc.stop()


def test_async_publish_refuses_bad_arguments_at_once(nats_server):  # noqa: F811
    """Refused before anything is sent, with no callback (a callback would
    log a line to jsasync.log, which is never opened here)."""
    with msgsvc(nats_server, env={"MSGSVC_JS": "1"}) as svc:
        st, doc = svc.json("GET", "/jsasync/refused")
        assert st == 200, doc
        EINVAL, ERANGE = -3, -5  # svckit/core.h
        assert doc == {"no_cb": EINVAL, "wildcard": EINVAL, "empty": EINVAL, "bad_id": EINVAL,
                       "too_big": ERANGE}, doc
        assert svc.json("GET", "/jsasync")[1]["sent"] == 0
