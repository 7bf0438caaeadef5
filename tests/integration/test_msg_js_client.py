"""svckit's NATS side as the official JavaScript client (nats.js 2, with its
services client) sees it: error replies are service errors (ADR-32), and
$SRV.PING/INFO/STATS list the instance with the subjects and queue groups it
really subscribes to (checked against nats-server's own /connz).

nats.js is pinned by tests/js/package-lock.json and installed into
tests/js/node_modules (`npm ci`) when missing: `make test` installs node and
npm (scripts/deps.sh)."""
import json
import os
import subprocess
import urllib.request

import pytest

from conftest import ROOT, free_port, npm_ci, wait_until
from test_msg_support import NatsServer, msgsvc

JS = os.path.join(ROOT, "tests", "js")


@pytest.fixture(scope="module")
def js():
    node = npm_ci(JS, "nats/package.json")

    def run(*args):
        r = subprocess.run([node, os.path.join(JS, "svc_client.mjs"), *args], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)
    return run


@pytest.fixture(scope="module")
def monitored_nats():
    """nats-server with its monitoring port, to read what each client subscribed."""
    nats = NatsServer()
    nats.monitor = free_port()
    with open(nats.conf, "a") as f:
        f.write(f"http: 127.0.0.1:{nats.monitor}\n")
    nats.stop()
    nats.start()
    try:
        yield nats
    finally:
        nats.close()


@pytest.fixture(scope="module")
def svc(monitored_nats):
    with msgsvc(monitored_nats) as s:
        yield s


def subscriptions(nats):
    """{(subject, queue group or "")} over every client of the server."""
    with urllib.request.urlopen(f"http://127.0.0.1:{nats.monitor}/connz?subs=detail", timeout=5) as r:
        doc = json.load(r)
    out = set()
    for c in doc.get("connections", []):
        for s in c.get("subscriptions_list_detail", []):
            out.add((s["subject"], s.get("qgroup", "")))
    return out


@pytest.mark.parametrize("method,path,status,message", [
    ("GET", "/nope", 404, "no such resource"),
    ("DELETE", "/whoami", 405, "method DELETE not allowed here"),
    ("GET", "/private", 401, "missing bearer token"),
    ("GET", "/status/abc", 400, "code must be 200-599"),
    ("GET", "/status/503", 503, "Service Unavailable"),   # a JSON body without "error": the reason phrase
    ("GET", "/status/418", 418, "Client Error"),
])
def test_error_replies_are_service_errors(js, monitored_nats, svc, method, path, status, message):
    out = js("request", monitored_nats.url, "svc.msgsvc.http", method, path)
    assert out == {"status": status, "isServiceError": True, "code": status, "message": message}, out


def test_a_malformed_request_is_a_service_error_too(js, monitored_nats, svc):
    # Refused before dispatch (a bad Svc-Path): the bare reply carries the headers as well.
    out = js("request", monitored_nats.url, "svc.msgsvc.http", "GET", "/a/../b")
    assert out["isServiceError"] and out["code"] == 400 and out["status"] == 400, out
    assert "Svc-Path" in out["message"]


@pytest.mark.parametrize("path,status", [("/whoami", 200), ("/status/302", 302), ("/status/204", 204)])
def test_other_replies_are_not_service_errors(js, monitored_nats, svc, path, status):
    out = js("request", monitored_nats.url, "svc.msgsvc.http", "GET", path)
    assert out == {"status": status, "isServiceError": False, "code": None, "message": None}, out


def test_services_client_lists_the_truth(js, monitored_nats, svc):
    out = js("discover", monitored_nats.url, "msgsvc")
    assert len(out["ping"]) == 1 and len(out["info"]) == 1 and len(out["stats"]) == 1, out
    ping, info, stats = out["ping"][0], out["info"][0], out["stats"][0]
    iid = ping["id"]
    assert ping["name"] == info["name"] == stats["name"] == "msgsvc"
    assert info["id"] == stats["id"] == iid and len(iid) == 22
    endpoints = {e["name"]: e for e in info["endpoints"]}
    assert endpoints["instance"]["subject"] == f"svc.msgsvc.{iid}.http"
    # Its own group (the instance id), not the service's: one worker answers,
    # and no other instance ever does.
    assert endpoints["instance"]["queue_group"] == iid
    assert endpoints["http"] == {"name": "http", "subject": "svc.msgsvc.http", "queue_group": "msgsvc",
                                 "metadata": {"method": "*", "path": "*"}}
    assert endpoints["GET-hello-_name"]["subject"] == "svc.msgsvc.GET.hello.{name}"
    assert endpoints["GET-hello-_name"]["metadata"] == {"method": "GET", "path": "/hello/:name"}
    # Every endpoint is exactly a subscription the server holds (WORKERS=2:
    # each worker's connection makes the same ones).
    subs = wait_until(lambda: subscriptions(monitored_nats), what="the server's subscriptions")
    for e in info["endpoints"]:
        assert (e["subject"], e["queue_group"]) in subs, e
    ours = {(s, q) for s, q in subs if s.startswith("svc.msgsvc.")}
    assert ours == {(e["subject"], e["queue_group"]) for e in info["endpoints"]}
    assert [e["name"] for e in stats["endpoints"]] == [e["name"] for e in info["endpoints"]]
    assert all(e["queue_group"] == endpoints[e["name"]]["queue_group"] for e in stats["endpoints"])
