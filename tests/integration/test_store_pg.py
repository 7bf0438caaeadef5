"""The store on PostgreSQL, seen from a service: DATABASE_URL checked at
start (docs/store-postgres.md). A bad URL stops the service with one line
naming DATABASE_URL and never its password, before any database is opened.
A program built without PostgreSQL (the default static build) refuses a
postgres:// URL the same way, naming make PG=1."""
import http.client
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading

import pytest

from conftest import Service, pg_psql, terminate, wait_until
from pg_support import pg_bindir
from services_fixtures import ADMIN_PASS, ADMIN_USER, bearer, login, start_auth, start_products

SECRET = "hunter2-not-logged"


@pytest.mark.parametrize("url, why", [
    (f"mysql://u:{SECRET}@127.0.0.1/db", "must be a postgres:// URL"),
    (f"postgres://u:{SECRET}@127.0.0.1/db?nosuchoption=1", None),
    (f"postgresql://u:{SECRET}%zz@127.0.0.1/db", None),
    ("postgres://u:p@h/" + "d" * 1100, "longer than 1024 bytes"),
])
@pytest.mark.parametrize("service", ["products", "orders"])
def test_bad_database_url_stops_the_service_without_showing_the_password(service, url, why):
    with Service(service, env={"DATABASE_URL": url}, wait_ready=False, check_exit=False) as s:
        assert s.proc.wait(30) == 2
        log = s.read_log()
        lines = [ln for ln in log.splitlines() if ln.strip()]
        assert len(lines) == 1 and "invalid configuration: DATABASE_URL" in lines[0], lines
        # A program without libpq names the remedy; one with it, libpq's reason.
        assert why is None or why in lines[0] or "make PG=1" in lines[0], lines
        assert SECRET not in log and "%zz" not in log
        assert not os.path.exists(os.path.join(s.data_dir, f"{service}.db")), "stopped before opening the database"


# ---- several instances, one database (needs a PostgreSQL build) -----------------

needs_pg_build = pytest.mark.skipif(os.environ.get("SVCKIT_TEST_PG") != "1",
                                    reason="programs built with make PG=1 (SVCKIT_TEST_PG=1, as tests/run.sh runs it)")


def patch(svc, pid, body, headers, out, key):
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=60)
    try:
        conn.request("PATCH", f"/products/{pid}", json.dumps(body).encode(),
                     dict(headers, **{"Content-Type": "application/json"}))
        out[key] = conn.getresponse().status
    finally:
        conn.close()


@needs_pg_build
def test_two_products_instances_serve_one_catalog_and_writes_do_not_race(pg_server):
    """Two products instances (their own DATA_DIR) on one DATABASE_URL: one
    seed, a write on one is read on the other, and two PATCHes with the same
    If-Match on the two instances make one change and one 412, even when
    both read the product before either writes (the row is locked for the
    write's transaction, as SQLite's one writer would have it)."""
    url = pg_server.database("two_products")
    with start_auth() as auth:
        admin = bearer(login(auth, ADMIN_USER, ADMIN_PASS))
        with start_products(auth, {"DATABASE_URL": url}) as a, start_products(auth, {"DATABASE_URL": url}) as b:
            ta, tb = (s.json("GET", "/products?limit=1", headers=admin)[1]["total"] for s in (a, b))
            assert ta == tb and int(pg_psql(url, "SELECT count(*) FROM products.products")) == ta
            st, p = a.json("POST", "/products", {"title": "Shared", "category": "tests", "price": 5, "stock": 3},
                           headers=admin)
            assert st == 201, p
            st, q = b.json("GET", f"/products/{p['id']}", headers=admin)
            assert st == 200 and q == p

            # Hold the row, so that both PATCHes have read nothing yet or are
            # queued on the lock; let go once both wait.
            holder = subprocess.Popen([os.path.join(pg_bindir(), "psql"), url, "-q", "-v", "ON_ERROR_STOP=1"],
                                      stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
            try:
                holder.stdin.write(f"BEGIN; SELECT 1 FROM products.products WHERE id = {p['id']} FOR UPDATE;\n")
                holder.stdin.flush()
                wait_until(lambda: int(pg_psql(url, "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid'"
                                                    " AND granted AND mode = 'ExclusiveLock'")) >= 1,
                           what="the row held")
                etag = f'"p{p["id"]}-v{1}"'
                out = {}
                threads = [threading.Thread(target=patch, args=(s, p["id"], {"price": price},
                                                                 dict(admin, **{"If-Match": etag}), out, name))
                           for s, price, name in ((a, 6, "a"), (b, 7, "b"))]
                for t in threads:
                    t.start()
                wait_until(lambda: int(pg_psql(url, "SELECT count(*) FROM pg_locks WHERE NOT granted")) >= 2,
                           what="both PATCHes waiting on the row")
            finally:
                holder.stdin.write("ROLLBACK;\n")
                holder.stdin.close()
                terminate(holder)
            for t in threads:
                t.join(60)
            assert sorted(out.values()) == [200, 412], out
            winner = 6 if out["a"] == 200 else 7
            st, now = b.json("GET", f"/products/{p['id']}", headers=admin)
            assert st == 200 and now["price"] == winner


@needs_pg_build
def test_a_cached_read_sees_the_other_instances_write(pg_server):
    """products' response cache on one instance is validated by
    svc_db_version, a counter moved by LISTEN/NOTIFY: a write through the
    other instance, which this one takes no part in, moves it, so its cached
    product is rendered again (once the notification arrives: waited for)."""
    url = pg_server.database("cached_reads")
    with start_auth() as auth:
        admin = bearer(login(auth, ADMIN_USER, ADMIN_PASS))
        with start_products(auth, {"DATABASE_URL": url}) as a, start_products(auth, {"DATABASE_URL": url}) as b:
            for _ in range(2):  # the second is served from b's cache
                st, before = b.json("GET", "/products/3", headers=admin)
                assert st == 200
            st, _ = a.json("PATCH", "/products/3", {"price": before["price"] + 1}, headers=admin)
            assert st == 200
            wait_until(lambda: b.json("GET", "/products/3", headers=admin)[1]["price"] == before["price"] + 1,
                       what="b reading a's write")


@needs_pg_build
def test_a_restarted_server_is_reconnected_to(tmp_path):
    """The server restarts under a running service (a failover, a crash):
    the statements on the lost connections fail as 503 or 500 at worst, and
    once the server answers again every worker reconnects by itself and the
    service serves again, its data intact; no restart of the service."""
    from pg_support import PgServer
    srv = PgServer(tempfile.mkdtemp(prefix="svckit-pg-")).start()
    try:
        url = srv.database("restart")
        with start_auth() as auth:
            admin = bearer(login(auth, ADMIN_USER, ADMIN_PASS))
            with start_products(auth, {"DATABASE_URL": url}) as p:
                st, made = p.json("POST", "/products", {"title": "Survivor", "category": "tests", "price": 1},
                                  headers=admin)
                assert st == 201, made
                srv.restart()
                wait_until(lambda: p.json("GET", f"/products/{made['id']}", headers=admin)[0] == 200,
                           what="a read after the restart")
                st, again = p.json("GET", f"/products/{made['id']}", headers=admin)
                assert again == made
                st, other = p.json("POST", "/products", {"title": "After", "category": "tests", "price": 2},
                                   headers=admin)
                assert st == 201 and other["id"] > made["id"], other
                wait_until(lambda: "connection lost, reconnected" in p.read_log(), what="the reconnect logged")
    finally:
        srv.stop()
        shutil.rmtree(srv.root, ignore_errors=True)


@needs_pg_build
def test_statements_on_postgres_are_spans_of_the_request_without_values(pg_server):
    """A sampled request's SQL on PostgreSQL: client spans named and peered
    "postgres", children of the request, carrying the statement as prepared
    ($1), never the value bound to it; exported as SQLite's are. (A login:
    its statements are short enough to show whole within
    SVC_TRACE_DETAIL_MAX, and the bound value is a user name.)"""
    from test_tracing import Receiver
    trace = secrets.token_hex(16)
    receiver = Receiver()
    try:
        url = pg_server.database("traced")
        env = {"DATABASE_URL": url, "TRACE_SAMPLE": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
        with start_auth(env) as auth:
            name = "nobody" + secrets.token_hex(6)
            st, _ = auth.json("POST", "/auth/login", {"username": name, "password": "not-the-password"},
                              headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
            assert st == 401

            def sql_spans():
                got = [s for _, s in receiver.of_trace(trace) if s["name"] == "postgres"]
                return got if any("$1" in attr(s, "db.query.text") for s in got) else None

            spans = wait_until(sql_spans, what="the SQL spans at the OTLP receiver")
            server = [s for _, s in receiver.of_trace(trace) if s["kind"] == 2]
            assert server and all(s["parentSpanId"] == server[0]["spanId"] for s in spans)
            assert all(s["kind"] == 3 and attr(s, "peer.service") == "postgres" for s in spans)
            assert not any(name in attr(s, "db.query.text") for s in spans)
    finally:
        receiver.close()


def attr(span, key):
    return next((a["value"].get("stringValue", "") for a in span.get("attributes", []) if a["key"] == key), "")
