"""`svckit call` (one request over NATS, exit status from the answer) and
`svckit routes` (every route from $SRV.INFO), against msgsvc."""
import json
import os
import pty
import re
import subprocess
import threading
import time

import pytest

from conftest import BIN, WAIT, wait_until
from shop_support import token as shop_token
from test_msg_perms import perms  # noqa: F401  (fixture)
from test_msg_support import JWT_SECRET, Nats, msgsvc, nats_server  # noqa: F401  (fixture)

SVCKIT = os.path.join(BIN, "svckit")


def svckit(*args, timeout=WAIT, env=None):
    e = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    e.update(env or {})
    p = subprocess.run([SVCKIT, *args], capture_output=True, timeout=timeout, env=e)
    return p.returncode, p.stdout, p.stderr.decode()


def token():
    from services_fixtures import claims, sign_hs256
    return sign_hs256(JWT_SECRET.encode(), claims(role="user", name="u"))


@pytest.fixture(scope="module")
def svc(nats_server):  # noqa: F811
    s = msgsvc(nats_server)
    try:
        yield nats_server, s
    finally:
        s.stop()


def call(nats, *args, timeout_ms=None):
    extra = ["--timeout", str(timeout_ms)] if timeout_ms else []
    return svckit("call", "--nats", nats.url, *extra, *args)


def test_get_with_token(svc):
    nats, _ = svc
    rc, out, err = call(nats, "--token", token(), "msgsvc", "GET", "/private")
    assert rc == 0, err
    assert json.loads(out) == {"private": True}
    assert err.startswith("status 200\n"), err
    assert "Svc-Status: 200" in err
    # Without it: the service's 401, exit status 4.
    rc, out, err = call(nats, "msgsvc", "GET", "/private")
    assert rc == 4, err
    assert json.loads(out)["error"]["code"] == "unauthorized"


def test_post_with_body_and_include(svc):
    nats, _ = svc
    rc, out, err = call(nats, "-i", "msgsvc", "POST", "/echo", '{"a":[1,2]}')
    assert rc == 0, err
    head, body = out.split(b"\n\n", 1)
    assert head.startswith(b"status 200\n")
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {"echo": {"a": [1, 2]}}
    assert err == ""


def test_query_and_header(svc):
    nats, _ = svc
    rc, out, err = call(nats, "--header", "X-Request-Id:req-call-1", "-H", "X-Other: x",
                        "msgsvc", "GET", "/whoami?x=1")
    assert rc == 0, err
    assert json.loads(out)["request_id"] == "req-call-1"
    assert "X-Request-Id: req-call-1" in err


def test_status_exit_codes(svc):
    nats, _ = svc
    rc, out, err = call(nats, "msgsvc", "GET", "/nope")
    assert rc == 4, err
    assert json.loads(out)["error"]["code"] == "not_found"
    rc, _, err = call(nats, "msgsvc", "GET", "/status/503")
    assert rc == 5, err


def test_no_responders(svc):
    nats, _ = svc
    rc, out, err = call(nats, "nobody", "GET", "/x")
    assert rc == 7, err
    assert "no responders" in err and out == b""


def test_timeout(svc):
    nats, _ = svc
    # Someone subscribes and never answers: no "no responders", only silence.
    c = Nats(nats.port)
    try:
        c.subscribe("svc.silent.http")
        c.flush()
        before_ms = int(time.time() * 1000)
        rc, out, err = call(nats, "-H", "content-type: text/plain", "silent", "PUT", "/x?a=1&b=%20", "hi",
                            timeout_ms=300)
        after_ms = int(time.time() * 1000) + 1
        assert rc == 6, err
        assert "no answer" in err and out == b""
        # The request arrived, with the wire conventions of docs/messaging.md.
        m = c.next_msg(subject_prefix="svc.silent.http")
        assert m.header("Svc-Method") == "PUT" and m.header("Svc-Path") == "/x"
        # The caller's Content-Type (any case) replaces the default.
        assert m.data == b"hi" and [(k, v) for k, v in m.headers.items() if k.lower() == "content-type"] == \
            [("content-type", "text/plain")]
        assert m.header("Svc-Query") == "a=1&b=%20"
        # The deadline is when the caller stops waiting: sent + --timeout, in
        # ms since the epoch.
        assert before_ms + 300 <= int(m.header("Svc-Deadline")) <= after_ms + 300, m.header("Svc-Deadline")
    finally:
        c.close()


def forged(nats, body, headers, *args, stdout=subprocess.PIPE):
    """`svckit call forged GET /x` answered once by a forger with body and
    headers: (exit status, stdout bytes, stderr)."""
    c = Nats(nats.port)
    c.subscribe("svc.forged.http")
    c.flush()
    done = threading.Event()

    def answer():
        m = c.next_msg(subject_prefix="svc.forged.http")
        c.publish(m.reply, body, headers=headers)
        done.set()

    th = threading.Thread(target=answer, daemon=True)
    th.start()
    try:
        p = subprocess.run([SVCKIT, "call", "--nats", nats.url, *args, "forged", "GET", "/x"], stdout=stdout,
                           stderr=subprocess.PIPE, timeout=WAIT)
        assert done.wait(WAIT)
        return p.returncode, p.stdout, p.stderr.decode()
    finally:
        th.join(WAIT)
        c.close()


def test_forged_answer_is_cleaned(svc):
    nats, _ = svc
    # NATS header lines cannot carry C0 control bytes (the client drops such
    # an answer as malformed); C1 ones (the 8-bit CSI, U+009B) and any other
    # non-ASCII can.
    rc, out, err = forged(nats, b"\x1b[31mbody\x1b[0m", {"Svc-Status": "200", "X-Evil": "a\x9b2Jb\u00e9"})
    assert rc == 0, err
    assert "X-Evil: a??2Jb??\n" in err, repr(err)
    assert err.isascii()
    # Not a terminal: the body is written as bytes.
    assert out == b"\x1b[31mbody\x1b[0m"


def test_body_on_a_terminal_is_cleaned(svc):
    nats, _ = svc
    master, slave = pty.openpty()
    try:
        rc, _, err = forged(nats, b"\x1b]0;pwned\x07ok\tline\n", {"Svc-Status": "200"}, stdout=slave)
        assert rc == 0, err
        os.close(slave)
        slave = -1
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other side is closed and read out
                break
            if not chunk:
                break
            shown += chunk
        assert b"\x1b" not in shown and b"\x07" not in shown, shown
        assert b"?]0;pwned?ok\tline" in shown, shown
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)


@pytest.mark.parametrize("headers,code", [({"Svc-Status": "302", "Location": "/y"}, 3),
                                          ({"Svc-Status": "20x"}, 1), ({"Svc-Status": "099"}, 1),
                                          ({"X-Other": "1"}, 1)],
                         ids=["302", "bad status", "status below 100", "no status"])
def test_other_and_malformed_answers(svc, headers, code):
    nats, _ = svc
    rc, out, err = forged(nats, b"", headers)
    assert rc == code, err
    if code == 1:
        assert "malformed answer" in err and out == b""


def test_bad_arguments(svc):
    nats, _ = svc
    for args in (["msgsvc", "get", "/x"], ["msg.svc", "GET", "/x"], ["msgsvc", "GET", "x"],
                 ["-H", "no-colon", "msgsvc", "GET", "/x"], ["msgsvc", "GET"],
                 ["--timeout", "0", "msgsvc", "GET", "/x"], ["msgsvc", "GET", "/x", "--tokne"]):
        rc, out, err = call(nats, *args)
        assert rc == 2 and err.startswith("svckit call: "), (args, err)


def openapi_routes(s):
    doc = json.loads(s.request("GET", "/openapi.json")[2])
    return {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}


def test_routes_lists_what_the_service_registered(svc):
    nats, s = svc
    expected = openapi_routes(s)
    # Two instances of the service: still one row per route.
    with msgsvc(nats):
        def listed():
            rc, out, err = svckit("routes", "--nats", nats.url, "--wait", "2000", "--json")
            assert rc == 0, err
            return json.loads(out)
        rows = wait_until(listed, what="routes listed")
    assert all(r["service"] == "msgsvc" for r in rows)
    got = {(r["method"], re.sub(r"/[:*]([^/]+)", r"/{\1}", r["path"])) for r in rows}
    assert got == expected
    assert len(rows) == len(got)  # one row per route
    rc, out, err = svckit("routes", "--nats", nats.url, "--wait", "2000")
    lines = out.decode().strip().splitlines()
    assert lines[0].split() == ["SERVICE", "METHOD", "PATH"]
    table = [tuple(l.split()) for l in lines[1:]]
    assert table == sorted(table, key=lambda r: (r[0], r[2], r[1]))


def test_call_and_routes_work_as_the_ops_user(perms):
    """Under the shipped permissions (deploy/nats-users.conf), ops may call
    any service on svc.<service>.http and read its discovery."""
    nats, users, _ = perms
    ops = {"NATS_NKEY_SEED_FILE": users.seed_file("ops")}
    rc, out, err = svckit("call", "--nats", nats.url, "--token", shop_token("ann"), "products", "GET", "/products/1",
                          env=ops)
    assert rc == 0, err
    assert json.loads(out)["id"] == 1
    rc, out, err = svckit("routes", "--nats", nats.url, "--wait", "2000", "--json", env=ops)
    assert rc == 0, err
    assert {"service": "products", "method": "GET", "path": "/products/:id"} in json.loads(out)
    # Without the seed: refused (Authorization Violation), exit 2.
    rc, _, err = svckit("routes", "--nats", nats.url, "--wait", "2000")
    assert rc == 2 and "cannot connect to NATS" in err, err
