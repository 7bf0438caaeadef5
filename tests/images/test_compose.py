#!/usr/bin/env python3
"""Runs deploy/compose.yaml with podman-compose and puts an order through it.

Called by `scripts/images.sh test` after test_images.py, with podman's
environment set (scripts/podman-env.sh) and the images of the stage built
(svckit/<service>:latest). No registry is reachable here, so nats-server is a
local image made of the base image and Debian's nats-server binary, with the
official image's entrypoint (/nats-server); compose takes it through NATS_IMAGE.

The secrets are made by the test and reach compose through the environment, as
deploy/.env would: <NAME>_NKEY, the public key of each NATS user (their seeds
in a temporary NATS_NKEYS_DIR), ADMIN_PASSWORD. The gateway is
published on 127.0.0.1 at a free port (GATEWAY_PORT).

Checks: Debian's docker-compose accepts the file (the Compose specification's
schema; no engine needed); every container runs, products with 2 replicas; only the gateway has a
published port; nats-server refuses a client without credentials; the images'
health check still runs under compose; through the gateway: register, log in,
read the catalog, place an order, and see it `confirmed` by the saga. The
project is torn down at the end (down -v, its network and volumes removed),
on failure and Ctrl-C too; leftovers of a killed run go at the next run.
Prints "N passed, N failed" last.
"""
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import stack
import test_images as ti
from test_images import http, podman, result

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
PROJECT = "svckit-compose-%d" % os.getpid()
PROJECT_LABEL = "io.podman.compose.project"
# Every container of the file, with the replicas compose.yaml asks for.
EXPECTED = {"nats": 1, "auth": 1, "products": 2, "orders": 1, "payments": 1, "gateway": 1}
# Seconds for the whole shop to become ready through the gateway, and for an
# order to settle.
UP_TIMEOUT = 120
SETTLE_TIMEOUT = 60


def compose(*args, env, project=PROJECT, timeout=300):
    ti._in_podman = True
    try:
        return subprocess.run(["podman-compose", "-p", project, "-f", str(COMPOSE_FILE), *args],
                              env=env, capture_output=True, text=True, timeout=timeout)
    finally:
        ti._in_podman = False


def containers(project=PROJECT):
    """[(service, name, state, published ports)] of the project."""
    out = podman("ps", "-a", "--filter", "label=%s=%s" % (PROJECT_LABEL, project),
                 "--format", "json", check=False)
    rows = []
    for c in json.loads(out or "[]"):
        labels = c.get("Labels") or {}
        ports = [p for p in (c.get("Ports") or []) if p.get("host_port")]
        rows.append((labels.get("com.docker.compose.service"), c["Names"][0], c.get("State"), ports))
    return rows


def teardown(project, env):
    # down -v leaves the anonymous volumes (products' /data) and the network:
    # note the volumes first.
    ids = podman("ps", "-aq", "--filter", "label=%s=%s" % (PROJECT_LABEL, project),
                 check=False).split()
    vols = set(podman("volume", "ls", "-q", "--filter", "label=%s=%s" % (PROJECT_LABEL, project),
                      check=False).split())
    if ids:
        mounts = podman("inspect", "--format", "{{range .Mounts}}{{.Name}} {{end}}", *ids,
                        check=False)
        vols.update(mounts.split())
    compose("down", "-v", "-t", "10", env=env, project=project)
    ids = podman("ps", "-aq", "--filter", "label=%s=%s" % (PROJECT_LABEL, project),
                 check=False).split()
    if ids:
        podman("rm", "-f", "-v", "-t", "0", *ids, check=False)
    if vols:
        podman("volume", "rm", "-f", *sorted(vols), check=False)
    podman("network", "rm", "-f", project + "_default", check=False)


def remove_leftovers(env):
    out = podman("ps", "-a", "--format", '{{index .Labels "%s"}}' % PROJECT_LABEL, check=False)
    nets = podman("network", "ls", "--format", "{{.Name}}", check=False).split()
    projects = set(out.split()) | {n[:-len("_default")] for n in nets if n.endswith("_default")}
    for p in projects:
        if not p.startswith("svckit-compose-"):
            continue
        try:
            pid = int(p.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and not ti.pid_alive(pid):
            teardown(p, env)


def check_nats_auth():
    """A client on the project's network without credentials is refused."""
    probe = ('exec 3<>/dev/tcp/nats/4222; read -r info <&3; '
             'printf "CONNECT {\\"verbose\\":false,\\"pedantic\\":false}\\r\\nPING\\r\\n" >&3; '
             'read -r answer <&3; echo "$answer"')
    out = podman("run", "--rm", "--network", PROJECT + "_default", ti.BASE_IMAGE,
                 "bash", "-c", probe, check=False, timeout=60).strip()
    result("compose: nats-server refuses a client without credentials", "Authorization" in out,
           "answer %r" % out)


def order_through_gateway(base, admin):
    bearer = stack.sign_up("compose", base)
    if not bearer:
        return
    status, body, _ = http("POST", base + "/auth/login", admin)
    result("compose: the admin account from ADMIN_PASSWORD logs in", status == 200,
           "%r %r" % (status, body))
    status, body = stack.until_status(200, "GET", base + "/products?limit=3", headers=bearer)
    result("compose: GET /products through the gateway 200",
           status == 200 and isinstance(body, dict) and len(body.get("products") or []) == 3,
           "%r %r" % (status, str(body)[:300]))
    headers = dict(bearer, **{"Idempotency-Key": "compose-%d" % os.getpid()})
    status, body = stack.until_status(201, "POST", base + "/orders",
                                      {"items": [{"product_id": 3, "quantity": 1}]}, headers=headers)
    oid = body.get("id") if isinstance(body, dict) else None
    if not result("compose: POST /orders through the gateway 201", status == 201 and bool(oid),
                  "%r %r" % (status, str(body)[:300])):
        return
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        status, body, _ = http("GET", base + "/orders/%d" % oid, headers=bearer)
        state = body.get("status") if isinstance(body, dict) else None
        if state not in (None, "pending") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    result("compose: the order is confirmed by the saga", state == "confirmed",
           "%r %r" % (status, str(body)[:300]))


def main():
    missing = [t for t in ("podman-compose", "docker-compose") if not shutil.which(t)]
    if missing:
        result("compose: %s installed" % " and ".join(missing), False,
               "SVCKIT_DEPS_IMAGES=1 scripts/deps.sh")
        print("%d passed, %d failed" % (ti.passed, ti.failed))
        return 1
    port = stack.free_port()
    nkeys = tempfile.mkdtemp(prefix="svckit-compose-nkeys-")
    env = dict(os.environ, **stack.nats_nkeys(nkeys), NATS_NKEYS_DIR=nkeys, ADMIN_PASSWORD=secrets.token_hex(16),
               GATEWAY_PORT=str(port),
               GATEWAY_BIND="127.0.0.1", NATS_IMAGE=stack.NATS_IMAGE,
               SVCKIT_IMAGE_PREFIX=ti.PREFIX, SVCKIT_TAG=ti.TAG)
    base = "http://127.0.0.1:%d" % port

    def body(t0):
        remove_leftovers(env)
        # Docker's side, without an engine: Debian's docker-compose checks
        # the file against the Compose specification's schema.
        r = subprocess.run(["docker-compose", "-f", str(COMPOSE_FILE), "config", "-q"], env=env,
                           capture_output=True, text=True, timeout=120)
        result("compose: docker-compose config accepts the file", r.returncode == 0,
               (r.stdout + r.stderr)[-800:])
        stack.nats_image()
        r = compose("up", "-d", "--no-build", env=env)
        if not result("compose: podman-compose up -d", r.returncode == 0,
                      (r.stdout + r.stderr)[-1500:]):
            return
        stack.wait_ready("compose", base, UP_TIMEOUT, t0)
        rows = containers()
        running = {}
        for service, _, state, _ in rows:
            if state == "running":
                running[service] = running.get(service, 0) + 1
        result("compose: every container runs (products x2)", running == EXPECTED,
               "running %r" % running)
        published = sorted({s for s, _, _, ports in rows if ports})
        result("compose: only the gateway is published", published == ["gateway"],
               "published: %r" % [(s, p) for s, _, _, p in rows if p])
        hc = subprocess.run(["podman", "healthcheck", "run", PROJECT + "_gateway_1"],
                            capture_output=True, text=True)
        result("compose: the image's health check runs under compose", hc.returncode == 0,
               (hc.stdout + hc.stderr).strip()[-300:])
        check_nats_auth()
        order_through_gateway(base, {"username": "admin", "password": env["ADMIN_PASSWORD"]})

    def down():
        if ti.failed:
            stack.print_logs(name for _, name, _, _ in containers())
        teardown(PROJECT, env)
        shutil.rmtree(nkeys, ignore_errors=True)
        left = containers() or podman("network", "ls", "-q", "--filter",
                                      "name=%s_default" % PROJECT, check=False).strip()
        result("compose: torn down (no container, no network left)", not left, "left %r" % left)

    return stack.run("compose", body, down)


if __name__ == "__main__":
    sys.exit(main())
