#!/usr/bin/env python3
"""Runs the svckit container images and tests them from outside, as a platform would.

Called by `scripts/images.sh test` (`make test-images`) after the images are built,
with podman's environment set (scripts/podman-env.sh). For each image in SERVICES:

  - its configuration: non-root USER, PORT 8080, EXPOSE, HEALTHCHECK, ENTRYPOINT,
    STOPSIGNAL, the /data volume, and a size budget;
  - it starts on a private podman network (NATS beside it), answers GET /healthz
    with 200 through a port published on 127.0.0.1, its HEALTHCHECK reports
    healthy, /readyz turns 200 once its dependencies are up, it runs as uid 65532;
  - when auth and products are both built: the tutorial's flow through the
    published ports (register, login, list products with the token; 401 without),
    and auth's data surviving a restart on the same volume; with orders and
    payments too, an order placed and confirmed by the saga, with its charge;
  - `podman stop` (SIGTERM) ends it with exit code 0 before the stop timeout, and
    every line it wrote to stdout is a JSON object.

Everything it creates carries the label svckit-test=<run id> and is removed at
the end, on failure and on Ctrl-C too; leftovers of a run that was killed are
removed by the next run. Prints "N passed, N failed" last.

Environment: SERVICES (space-separated), IMAGE_PREFIX (svckit), TAG (latest),
IMAGE_MAX_MB (size budget per image, default 12), TEST_TIMEOUT (seconds to wait
for a container to become healthy, default 30).
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.client import HTTPException

PREFIX = os.environ.get("IMAGE_PREFIX", "svckit")
TAG = os.environ.get("TAG", "latest")
SERVICES = os.environ.get("SERVICES", "").split()
IMAGE_MAX_MB = float(os.environ.get("IMAGE_MAX_MB", "12"))
START_TIMEOUT = float(os.environ.get("TEST_TIMEOUT", "30"))
# podman stop waits this long after SIGTERM, then sends SIGKILL (exit 137).
STOP_TIMEOUT = 10
# The services' own drain budget, kept below STOP_TIMEOUT.
SHUTDOWN_TIMEOUT = 5
# The ports of a local run (DESIGN.md), so internal URLs read the same in a
# container network as on one machine; other programs keep the image's 8080.
DESIGN_PORTS = {"gateway": 8080, "auth": 8081, "products": 8082, "orders": 8083,
                "payments": 8084}
NATS_SERVER = "/usr/sbin/nats-server"
BASE_IMAGE = "debian:bookworm-slim"
UID = "65532"

RUN_ID = "svckit-test-%d" % os.getpid()
LABEL = "svckit-test"
NETWORK = RUN_ID

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
passed = 0
failed = 0
# A signal that arrives while podman runs is held until it returns: killing
# `podman run` halfway leaves a container podman no longer knows but whose
# runc and conmon processes live on.
_in_podman = False
_pending_signal = None


def podman(*args, check=True, timeout=120):
    """Runs podman; returns stdout. Its stderr (health timer noise without
    systemd) is shown only when the command fails."""
    global _in_podman, _pending_signal
    _in_podman = True
    try:
        p = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    finally:
        _in_podman = False
    if _pending_signal is not None:
        signum, _pending_signal = _pending_signal, None
        raise SystemExit(128 + signum)
    if check and p.returncode != 0:
        raise RuntimeError("podman %s: exit %d: %s" % (" ".join(args[:3]), p.returncode,
                                                       p.stderr.strip()[-800:]))
    return p.stdout


def result(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok - %s" % name, flush=True)
    else:
        failed += 1
        print("not ok - %s%s" % (name, (": " + detail) if detail else ""), flush=True)
    return ok


def http(method, url, body=None, headers=None, timeout=5):
    """(status, parsed JSON or raw text, headers); status 0 when unreachable."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with _opener.open(req, timeout=timeout) as r:
            raw, status, hdrs = r.read(), r.status, r.headers
    except urllib.error.HTTPError as e:
        raw, status, hdrs = e.read(), e.code, e.headers
    except (OSError, ValueError, HTTPException) as e:
        return 0, str(e), {}
    try:
        return status, json.loads(raw), hdrs
    except ValueError:
        return status, raw.decode("utf-8", "replace"), hdrs


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def remove_leftovers():
    """Removes what runs killed before their cleanup left behind."""
    out = podman("ps", "-a", "--filter", "label=" + LABEL,
                 "--format", '{{.ID}} {{index .Labels "%s"}}' % LABEL, check=False)
    runs = set()
    for line in out.splitlines():
        cid, _, run = line.partition(" ")
        runs.add(run)
    for net in podman("network", "ls", "--format", "{{.Name}}", check=False).split():
        if net.startswith("svckit-test-"):
            runs.add(net)
    for run in runs:
        try:
            pid = int(run.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not pid_alive(pid):
            cleanup(run)


def cleanup(run=RUN_ID):
    ids = podman("ps", "-aq", "--filter", "label=%s=%s" % (LABEL, run), check=False).split()
    if ids:
        podman("rm", "-f", "-v", "-t", "0", *ids, check=False)
    vols = podman("volume", "ls", "-q", "--filter", "label=%s=%s" % (LABEL, run),
                  check=False).split()
    if vols:
        podman("volume", "rm", "-f", *vols, check=False)
    podman("network", "rm", "-f", run, check=False)


def on_signal(signum, frame):
    global _pending_signal
    if _in_podman:
        _pending_signal = signum
        return
    raise SystemExit(128 + signum)


class Container:
    def __init__(self, service, port):
        self.service = service
        self.port = port            # inside the container
        self.name = "%s-%s" % (RUN_ID, service)
        self.host_port = None       # published on 127.0.0.1

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.host_port, path)

    def state(self):
        out = podman("inspect", self.name, "--format",
                     "{{.State.Status}} {{.State.ExitCode}}", check=False).split()
        return (out[0], int(out[1])) if len(out) == 2 else ("missing", -1)

    def logs(self, stream="both"):
        p = subprocess.run(["podman", "logs", self.name], capture_output=True, text=True)
        if stream == "stdout":
            return p.stdout
        return p.stdout + p.stderr


def image(service):
    return "%s/%s:%s" % (PREFIX, service, TAG)


def check_config(service):
    name = "%s: image configuration" % service
    try:
        cfg = json.loads(podman("image", "inspect", image(service)))[0]
    except (RuntimeError, ValueError, IndexError) as e:
        return result(name, False, str(e))
    c = cfg.get("Config", {})
    env = dict(e.split("=", 1) for e in c.get("Env") or [])
    problems = []
    if c.get("User") not in (UID + ":" + UID, UID):
        problems.append("USER is %r" % c.get("User"))
    if env.get("PORT") != "8080" or env.get("HOST") != "0.0.0.0" or env.get("DATA_DIR") != "/data":
        problems.append("ENV PORT/HOST/DATA_DIR are %r/%r/%r" % (env.get("PORT"), env.get("HOST"),
                                                                 env.get("DATA_DIR")))
    if "8080/tcp" not in (c.get("ExposedPorts") or {}):
        problems.append("no EXPOSE 8080")
    if "/data" not in (c.get("Volumes") or {}):
        problems.append("no VOLUME /data")
    if c.get("Entrypoint") != ["/service"]:
        problems.append("ENTRYPOINT is %r" % c.get("Entrypoint"))
    if c.get("StopSignal") not in ("SIGTERM", "15"):
        problems.append("STOPSIGNAL is %r" % c.get("StopSignal"))
    hc = cfg.get("Healthcheck") or cfg.get("HealthCheck") or c.get("Healthcheck") or {}
    if hc.get("Test") != ["CMD", "/healthcheck"]:
        problems.append("HEALTHCHECK is %r" % hc.get("Test"))
    result(name, not problems, "; ".join(problems))
    check_filesystem(service)
    size_mb = cfg.get("Size", 0) / 1e6
    result("%s: image size %.2f MB <= %.0f MB" % (service, size_mb, IMAGE_MAX_MB),
           0 < size_mb <= IMAGE_MAX_MB)


def check_filesystem(service):
    """What the image holds: /data owned by the non-root user, /tmp 1777, the
    program and the probe, and nothing that makes it a distribution (no shell)."""
    name = "%s: image files (/data owned by %s, /tmp 1777, no shell)" % (service, UID)
    try:
        root = podman("image", "mount", image(service)).strip()
    except RuntimeError as e:
        return result(name, False, str(e))
    try:
        problems = []
        st = os.stat(os.path.join(root, "data"))
        if str(st.st_uid) != UID or str(st.st_gid) != UID:
            problems.append("/data is owned by %d:%d" % (st.st_uid, st.st_gid))
        st = os.stat(os.path.join(root, "tmp"))
        if st.st_mode & 0o7777 != 0o1777:
            problems.append("/tmp mode is %o" % (st.st_mode & 0o7777))
        for f in ("service", "healthcheck"):
            if not os.access(os.path.join(root, f), os.X_OK):
                problems.append("no executable /%s" % f)
        for f in ("bin/sh", "usr/bin/sh"):
            if os.path.lexists(os.path.join(root, f)):
                problems.append("/%s exists" % f)
        result(name, not problems, "; ".join(problems))
    finally:
        podman("image", "unmount", image(service), check=False)


def start_nats():
    """A NATS server for the services: Debian's nats-server binary (the host's,
    mounted read-only) in the local base image. None if there is none."""
    if not os.path.exists(NATS_SERVER):
        print("# no %s: services run without NATS" % NATS_SERVER)
        return None
    podman("run", "-d", "--name", RUN_ID + "-nats", "--network", NETWORK,
           "--network-alias", "nats", "--label", "%s=%s" % (LABEL, RUN_ID),
           "-v", "%s:/usr/local/bin/nats-server:ro" % NATS_SERVER,
           BASE_IMAGE, "nats-server", "-a", "0.0.0.0", "-p", "4222", "-js", "-sd", "/tmp/js")
    return "nats://nats:4222"


def start(service, nats_url, volume=None):
    port = DESIGN_PORTS.get(service, 8080)
    c = Container(service, port)
    env = {"PORT": str(port), "SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT), "LOG_LEVEL": "info",
           "AUTH_JWKS_URL": "http://auth:%d/.well-known/jwks.json" % DESIGN_PORTS["auth"],
           "ADMIN_USERNAME": "admin", "ADMIN_PASSWORD": "admin-password-for-tests"}
    if nats_url:
        env["NATS_URL"] = nats_url
    args = ["run", "-d", "--name", c.name, "--network", NETWORK, "--network-alias", service,
            "--label", "%s=%s" % (LABEL, RUN_ID), "-p", "127.0.0.1::%d" % port]
    if volume:
        args += ["-v", "%s:/data" % volume]
    for k, v in env.items():
        args += ["-e", "%s=%s" % (k, v)]
    podman(*args, image(service))
    out = podman("port", c.name, "%d/tcp" % port).strip().splitlines()
    c.host_port = int(out[0].rsplit(":", 1)[1])
    return c


def wait_healthy(c):
    """GET /healthz through the published port until 200, or the container
    exits, or START_TIMEOUT passes."""
    name = "%s: GET /healthz 200 through 127.0.0.1:%d" % (c.service, c.host_port)
    deadline = time.monotonic() + START_TIMEOUT
    t0 = time.monotonic()
    last = None
    while time.monotonic() < deadline:
        status, body, _ = http("GET", c.url("/healthz"), timeout=2)
        if status == 200:
            return result(name + " (%.1f s)" % (time.monotonic() - t0), True)
        last = (status, body)
        st, code = c.state()
        if st not in ("running", "created", "configured"):
            return result(name, False, "container %s (exit %d); log:\n%s"
                          % (st, code, c.logs()[-1500:]))
        time.sleep(0.2)
    return result(name, False, "last answer %r; log:\n%s" % (last, c.logs()[-1500:]))


def check_running(c):
    # No systemd here, so health checks never run on a timer: run it by hand,
    # which is what Docker's timer does.
    p = subprocess.run(["podman", "healthcheck", "run", c.name], capture_output=True, text=True)
    result("%s: HEALTHCHECK (/healthcheck in the image) healthy" % c.service,
           p.returncode == 0, (p.stdout + p.stderr).strip()[-300:])
    user = podman("top", c.name, "user", check=False).split()
    result("%s: runs as uid %s" % (c.service, UID),
           len(user) >= 2 and user[1] in ("nonroot", UID), "podman top: %r" % user)
    deadline = time.monotonic() + START_TIMEOUT
    status, body = 0, None
    while time.monotonic() < deadline:
        status, body, _ = http("GET", c.url("/readyz"), timeout=2)
        if status == 200:
            break
        time.sleep(0.3)
    result("%s: GET /readyz 200" % c.service, status == 200, "last %r %r" % (status, body))


def stop(c, label="stop"):
    """podman stop: SIGTERM, then SIGKILL after STOP_TIMEOUT. Returns
    (exit code, seconds)."""
    t0 = time.monotonic()
    podman("stop", "-t", str(STOP_TIMEOUT), c.name, check=False, timeout=STOP_TIMEOUT + 30)
    took = time.monotonic() - t0
    st, code = c.state()
    return code, took, st


def check_stop(c):
    code, took, st = stop(c)
    result("%s: SIGTERM (podman stop) exits 0 in %.1f s < %d s" % (c.service, took, STOP_TIMEOUT),
           st == "exited" and code == 0 and took < STOP_TIMEOUT,
           "state %s, exit code %d; log tail:\n%s" % (st, code, c.logs()[-800:]))
    lines = [l for l in c.logs("stdout").splitlines() if l.strip()]
    bad = []
    for l in lines:
        try:
            if not isinstance(json.loads(l), dict):
                bad.append(l)
        except ValueError:
            bad.append(l)
    result("%s: stdout is JSON lines (%d lines)" % (c.service, len(lines)),
           lines and not bad, "not JSON: %r" % bad[:3] if bad else "no output")


def flow(auth, products):
    """The tutorial's flow, as DESIGN.md states it."""
    user = {"username": "imgtest_%d" % os.getpid(), "password": "correct-horse-battery"}
    status, body, _ = http("POST", auth.url("/auth/register"), user)
    result("flow: POST /auth/register 201", status == 201, "%r %r" % (status, body))
    status, body, _ = http("POST", auth.url("/auth/login"), user)
    token = body.get("access_token") if isinstance(body, dict) else None
    result("flow: POST /auth/login 200 with a token", status == 200 and bool(token),
           "%r %r" % (status, body))
    bearer = {"Authorization": "Bearer %s" % token}
    # products fetches auth's keys over the network by service name: allow it a
    # moment after both report healthy.
    deadline = time.monotonic() + 10
    while True:
        status, body, _ = http("GET", products.url("/products?limit=5"), headers=bearer)
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    items = body.get("products") if isinstance(body, dict) else None
    result("flow: GET /products with the token 200 and products",
           status == 200 and isinstance(items, list) and len(items) > 0,
           "%r %r" % (status, str(body)[:300]))
    status, body, _ = http("GET", products.url("/products?limit=5"))
    result("flow: GET /products without a token 401", status == 401, "%r %r" % (status, body))
    return user, token


def order_flow(orders, payments, token):
    """An order through the containers: placed (201), settled by the saga
    over JetStream (products reserves, payments charges) to confirmed, and
    its charge listed."""
    bearer = {"Authorization": "Bearer %s" % token, "Idempotency-Key": "imgtest-%d" % os.getpid()}
    order = {"items": [{"product_id": 2, "quantity": 1}]}
    # orders reaches products over NATS: allow it a moment after both are healthy.
    deadline = time.monotonic() + 10
    while True:
        status, body, _ = http("POST", orders.url("/orders"), order, headers=bearer)
        if status == 201 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    oid = body.get("id") if isinstance(body, dict) else None
    result("order: POST /orders 201 pending", status == 201 and bool(oid) and body.get("status") == "pending",
           "%r %r" % (status, str(body)[:300]))
    if not oid:
        return
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        status, body, _ = http("GET", orders.url("/orders/%d" % oid), headers=bearer)
        settled = status == 200 and isinstance(body, dict) and body.get("status") != "pending"
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    result("order: confirmed by the saga", settled and body.get("status") == "confirmed",
           "%r %r" % (status, str(body)[:300]))
    status, body, _ = http("GET", payments.url("/payments?order_id=%d" % oid), headers=bearer)
    pays = body.get("payments") if isinstance(body, dict) else None
    result("order: one succeeded charge", status == 200 and isinstance(pays, list) and len(pays) == 1
           and pays[0].get("status") == "succeeded", "%r %r" % (status, str(body)[:300]))


def check_restart_keeps_data(auth, user, volume, nats_url):
    """auth on the same named volume after a restart: the user is still there."""
    stop(auth)
    podman("rm", auth.name, check=False)
    again = start("auth", nats_url, volume=volume)
    if not wait_healthy(again):
        return again
    status, body, _ = http("POST", again.url("/auth/login"), user)
    result("auth: data in the /data volume survives a restart (login 200)", status == 200,
           "%r %r" % (status, body))
    return again


def main():
    if not os.environ.get("CONTAINERS_STORAGE_CONF"):
        # Without it podman would use (and create) the system's store.
        print("test_images.py: run it through `scripts/images.sh test`, or source "
              "scripts/podman-env.sh first", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t0 = time.monotonic()
    if not SERVICES:
        print("# no services to test")
        print("0 passed, 0 failed")
        return 0
    remove_leftovers()
    try:
        for s in SERVICES:
            check_config(s)
        podman("network", "create", "--label", "%s=%s" % (LABEL, RUN_ID), NETWORK)
        nats_url = start_nats()
        # auth first: the others fetch its keys.
        order = sorted(SERVICES, key=lambda s: (s != "auth", s))
        running = {}
        auth_volume = None
        for s in order:
            volume = None
            if s == "auth":
                auth_volume = RUN_ID + "-auth-data"
                podman("volume", "create", "--label", "%s=%s" % (LABEL, RUN_ID), auth_volume)
                volume = auth_volume
            try:
                c = start(s, nats_url, volume=volume)
            except RuntimeError as e:
                result("%s: container starts" % s, False, str(e))
                continue
            if wait_healthy(c):
                running[s] = c
        for c in running.values():
            check_running(c)
        if "auth" in running and "products" in running:
            user, token = flow(running["auth"], running["products"])
            if "orders" in running and "payments" in running:
                order_flow(running["orders"], running["payments"], token)
            else:
                print("# the order flow needs the orders and payments images")
            running["auth"] = check_restart_keeps_data(running["auth"], user, auth_volume,
                                                       nats_url)
        else:
            print("# the login-then-list flow needs the auth and products images")
        for c in running.values():
            check_stop(c)
    except RuntimeError as e:
        result("container setup", False, str(e))
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cleanup()
    print("# images test took %.0f s" % (time.monotonic() - t0))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
