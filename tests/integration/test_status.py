"""`svckit status`: live instances listed from NATS discovery ($SRV.INFO/STATS)."""
import json
import os
import socket
import subprocess

import pytest

from conftest import BIN, WAIT, free_port, wait_until
from live_support import Forger
from test_msg_support import msgsvc, nats_server  # noqa: F401  (fixture)

SVCKIT = os.path.join(BIN, "svckit")
# svckit status gathers replies for a window (500 ms by default); here one
# that every instance answers within on a loaded machine.
GATHER = ["--wait", "3000"]


def status(*args, timeout=WAIT):
    p = subprocess.run([SVCKIT, "status", *args], capture_output=True, timeout=timeout,
                       env={k: v for k, v in os.environ.items() if k != "NATS_URL"})
    return p.returncode, p.stdout.decode(), p.stderr.decode()


@pytest.fixture(scope="module")
def two(nats_server):  # noqa: F811
    a = msgsvc(nats_server)
    b = msgsvc(nats_server)
    try:
        # One request each, so the counts are not all zero.
        assert a.request("GET", "/hello/x")[0] == 200
        yield nats_server, [a, b]
    finally:
        a.stop()
        b.stop()


def instance_ids(nats):
    """Ids from the instances' own PING answers, independent of svckit."""
    from test_msg_support import Nats
    c = Nats(nats.port)
    try:
        return {json.loads(m.data)["id"] for m in c.request_all("$SRV.PING", until=lambda rs: len(rs) >= 2)}
    finally:
        c.close()


def test_lists_both_instances(two):
    nats, svcs = two

    # HEALTH is svckit status's own probe of /readyz, with a short timeout
    # that a loaded machine can miss: the listing is asked again until both
    # are seen ready.
    def listed_ready():
        rc, out, err = status("--nats", nats.url, *GATHER)
        assert rc == 0, err
        rows = [l.split() for l in out.strip().splitlines()[1:]]
        return len(rows) == 2 and all(r[5] == "ready" for r in rows) and out
    out = wait_until(listed_ready, what="both instances listed ready")
    lines = out.strip().splitlines()
    assert lines[0].split()[:5] == ["SERVICE", "ID", "VERSION", "HOST", "HTTP"]
    rows = [l.split() for l in lines[1:]]
    assert len(rows) == 2, out
    assert all(r[0] == "msgsvc" for r in rows)
    assert rows[0][1] < rows[1][1]  # sorted by id within the service
    assert all(r[2] == "0.1.0" or r[2][0].isdigit() for r in rows)
    # HOST: the machine's name (the HTTP column holds the listen address).
    assert all(r[3] == socket.gethostname() for r in rows), out
    ports = {r[4].rsplit(":", 1)[1] for r in rows}
    assert ports == {str(s.port) for s in svcs}
    assert all(r[5] == "ready" for r in rows), out
    total = sum(int(r[6]) for r in rows)
    assert total >= 1, out


def test_ids_match_the_instances(two):
    nats, _ = two
    rc, out, _ = status("--nats", nats.url, "--no-ready", *GATHER)
    assert rc == 0
    listed = {l.split()[1] for l in out.strip().splitlines()[1:]}
    assert listed == instance_ids(nats) and len(listed) == 2


def test_url_list_read_as_services_read_it(two):
    """NATS_URL's rules (svc__nats_urls_parse): blanks around a URL and empty
    entries are ignored."""
    nats, _ = two
    rc, out, err = status("--nats", f" {nats.url} ,", "--no-ready", *GATHER)
    assert rc == 0, err
    assert len(out.strip().splitlines()) == 3, out


def test_json(two):
    nats, _ = two
    rc, out, err = status("--nats", nats.url, "--json", *GATHER)
    assert rc == 0, err
    docs = json.loads(out)
    assert isinstance(docs, list)
    types = sorted(d["type"] for d in docs)
    assert types == ["io.nats.micro.v1.info_response"] * 2 + ["io.nats.micro.v1.stats_response"] * 2
    assert len({d["id"] for d in docs}) == 2
    assert all(d["name"] == "msgsvc" and d["version"] for d in docs)


def test_no_instances_exit_1():
    from test_msg_support import NatsServer
    s = NatsServer()
    try:
        rc, out, err = status("--nats", s.url, "--wait", "200")
        assert rc == 1
        assert f"no svckit instances on {s.url}" in err
    finally:
        s.close()


def test_unreachable_exit_2():
    url = f"nats://127.0.0.1:{free_port()}"
    rc, out, err = status("--nats", url, "--wait", "100")
    assert rc == 2
    assert out == "" and len(err.strip().splitlines()) == 1 and url in err


@pytest.mark.parametrize("args", [["--wait", "0"], ["--wait", "x"], ["--nats", "http://x"], ["--bogus"],
                                  ["--nats"], ["--nats", "nats://127.0.0.1:1,http://x"]])
def test_bad_arguments_exit_2(args):
    rc, _, err = status(*args)
    assert rc == 2 and err


def live_docs(nats, n):
    from test_msg_support import Nats
    c = Nats(nats.port)
    try:
        return [json.loads(m.data) for m in c.request_all("$SRV.LIVE", until=lambda rs: len(rs) >= n)]
    finally:
        c.close()


def test_live_snapshot(two):
    """$SRV.LIVE: every instance answers with its live numbers; the routes'
    counts and buckets are those of /metrics (bounded by the router)."""
    nats, svcs = two
    a = svcs[0]
    assert a.request("GET", "/hello/y")[0] == 200
    docs = live_docs(nats, 2)
    assert len(docs) == 2
    doc = next(d for d in docs if d["metadata"]["http_port"] == str(a.port))
    assert doc["type"] == "io.svckit.v1.live_response" and doc["name"] == "msgsvc"
    assert doc["ready"] is True and "not_ready" not in doc
    assert doc["uptime_s"] >= 0 and doc["cpu_seconds"] >= 0 and doc["rss_bytes"] > 0
    assert doc["in_flight"] >= 0 and doc["truncated"] is False
    assert doc["buckets"][0] == 0.0001 and len(doc["buckets"]) == 16
    hello = [r for r in doc["routes"] if r["method"] == "GET" and r["route"].startswith("/hello")]
    assert len(hello) == 1, doc["routes"]
    r = hello[0]
    assert r["requests"] >= 2 and r["errors_5xx"] == 0
    assert len(r["duration_buckets"]) == 17 and sum(r["duration_buckets"]) == r["requests"]


def test_live_addressed_to_one_instance(two):
    nats, _ = two
    from test_msg_support import Nats
    ids = sorted(instance_ids(nats))
    c = Nats(nats.port)
    try:
        doc = c.request(f"$SRV.LIVE.msgsvc.{ids[0]}").json()
        assert doc["id"] == ids[0] and doc["type"] == "io.svckit.v1.live_response"
    finally:
        c.close()


FIELD_MAX = 48  # SVC__GATHER_FIELD_MAX


def test_forged_instance_is_cleaned_and_its_sums_saturate(nats_server):  # noqa: F811
    """Anyone on NATS may answer $SRV.INFO and $SRV.STATS: escape sequences
    reach the terminal as '?', long strings are cut, and counters whose sum
    passes 2^64 stay at the top (a signed sum overflowed: undefined
    behaviour, which the sanitizer build stops at)."""
    big = 2 ** 63 - 1

    def answer(m):
        kind = "info" if m.subject == "$SRV.INFO" else "stats"
        doc = {"type": f"io.nats.micro.v1.{kind}_response", "name": "\x1b[2Jevil\x07" + "n" * 100000,
               "id": "forged\x1b]0;t\x07", "version": "\x1b[31m1", "metadata": {"host": "h\x1b[1m", "http_port": "1",
                                                                    "hostname": "m\x1b[1m"}}
        if kind == "stats":
            doc["endpoints"] = [{"name": "r", "num_requests": big, "num_errors": big, "processing_time": big}] * 3
        return [doc]
    with Forger(nats_server, ["$SRV.INFO", "$SRV.STATS"], answer):
        rc, out, err = status("--nats", nats_server.url, "--no-ready", *GATHER)
    assert rc == 0, err
    assert "\x1b" not in out and "\x07" not in out
    row = next(line for line in out.splitlines() if "forged" in line).split()
    assert row[0] == ("?[2Jevil?" + "n" * FIELD_MAX)[:FIELD_MAX], row
    assert row[1:6] == ["forged?]0;t?", "?[31m1", "m?[1m", "h?[1m:1", "up"], row
    assert row[6] == row[7] == str(2 ** 64 - 1), row


def test_answers_past_the_byte_cap_are_dropped_and_said(nats_server):  # noqa: F811
    """An answer larger than SVC__GATHER_MAX_BYTES is never parsed: dropped,
    and stderr says how many."""
    big = {"type": "io.nats.micro.v1.info_response", "name": "big", "id": "b1", "pad": "x" * 600000}
    with Forger(nats_server, ["$SRV.INFO"], lambda m: [big]):
        rc, out, err = status("--nats", nats_server.url, "--no-ready", *GATHER)
    assert "big" not in out
    assert "svckit status: 1 answers dropped" in err, err
