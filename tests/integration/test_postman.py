"""The Postman collection of the tutorial flow, run by newman against live
auth, products, orders and payments services (on a nats-server with
JetStream, for the checkout saga).

newman is an npm package pinned by tests/postman/package-lock.json and
installed into tests/postman/node_modules (`npm ci`) when missing. Without
node or npm this test fails: `make test` installs them.
"""
import json
import os
import subprocess

from conftest import ROOT, npm_ci
from conftest import Service
from services_fixtures import ADMIN_PASS, ADMIN_USER, jwks_url, running_system
from test_msg_support import NatsServer

POSTMAN_DIR = os.path.join(ROOT, "tests", "postman")
NEWMAN = os.path.join(POSTMAN_DIR, "node_modules", ".bin", "newman")
COLLECTION = os.path.join(ROOT, "docs", "postman", "svckit.postman_collection.json")
ENVIRONMENT = os.path.join(ROOT, "docs", "postman", "svckit.postman_environment.json")
MIN_ASSERTIONS = 15


def ensure_newman():
    npm_ci(POSTMAN_DIR, ".bin/newman")


def test_collection_is_postman_v2_1():
    with open(COLLECTION) as f:
        c = json.load(f)
    assert c["info"]["schema"] == "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
    names = {v["key"] for v in c["variable"]}
    assert {"auth_url", "products_url", "orders_url", "payments_url"} <= names

    def requests(items):
        for it in items:
            yield from requests(it["item"]) if "item" in it else [it]

    reqs = list(requests(c["item"]))
    assert len(reqs) >= 15
    for r in reqs:
        raw = r["request"]["url"]["raw"]
        assert raw.split("/")[0] in ("{{auth_url}}", "{{products_url}}", "{{orders_url}}", "{{payments_url}}"), raw
        tests = "\n".join(line for e in r["event"] if e["listen"] == "test" for line in e["script"]["exec"])
        assert "pm.response.to.have.status(" in tests, r["name"]
        assert tests.count("pm.test(") >= 2, r["name"]


def test_newman_runs_the_tutorial_flow_twice_in_a_row(tmp_path):
    """With auth's default per-address limits (every request of newman comes
    from one address): a second run right after the first must pass too."""
    ensure_newman()
    defaults = {"LOGIN_RATE_PER_MIN": "10", "REGISTER_RATE_PER_MIN": "5"}
    nats = NatsServer()
    try:
        with running_system(auth_env=defaults, products_env={"NATS_URL": nats.url}) as (auth, products):
            env = {"NATS_URL": nats.url, "AUTH_JWKS_URL": jwks_url(auth)}
            with Service("orders", env=env) as orders, Service("payments", env=env) as payments:
                newman_twice(tmp_path, auth, products, orders, payments)
    finally:
        nats.close()


def newman_twice(tmp_path, auth, products, orders, payments):
    """Two newman runs in a row against the running services."""
    for run in (1, 2):
        report = str(tmp_path / f"newman-{run}.json")
        cmd = [NEWMAN, "run", COLLECTION, "-e", ENVIRONMENT,
               "--env-var", f"auth_url=http://127.0.0.1:{auth.port}",
               "--env-var", f"products_url=http://127.0.0.1:{products.port}",
               "--env-var", f"orders_url=http://127.0.0.1:{orders.port}",
               "--env-var", f"payments_url=http://127.0.0.1:{payments.port}",
               "--env-var", f"admin_username={ADMIN_USER}",
               "--env-var", f"admin_password={ADMIN_PASS}",
               "--timeout-request", "10000", "--color", "off",
               "-r", "cli,json", "--reporter-json-export", report]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
        out = f"run {run}:\n" + r.stdout[-6000:] + r.stderr[-2000:]
        assert r.returncode == 0, out
        with open(report) as f:
            stats = json.load(f)["run"]["stats"]
        print(f"newman run {run}: {stats['requests']['total']} requests, "
              f"{stats['assertions']['total']} assertions")
        assert stats["assertions"]["total"] >= MIN_ASSERTIONS, out
        assert stats["assertions"]["failed"] == 0, out
        assert stats["requests"]["failed"] == 0, out
        assert stats["testScripts"]["failed"] == 0 and stats["prerequestScripts"]["failed"] == 0, out
