"""What test_compose.py and test_kube.py share: both run the whole shop from
deploy/ with the images of the stage and talk to it through the gateway,
published on 127.0.0.1 at a free port."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import test_images as ti
from test_images import http, podman, result

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from ports import free_port  # noqa: E402,F401 (the image tests call stack.free_port)

# No registry here: the stand-in for the official nats image (entrypoint
# /nats-server) is Debian's nats-server in the local base image.
NATS_IMAGE = "localhost/svckit-test/nats:local"
SHOP = ["auth", "products", "orders", "payments", "gateway"]


# Every NKEY user deploy/nats-users.conf names ($<NAME>_NKEY): nats-server
# needs each one's public key, whether its service runs or not.
NATS_USERS = sorted({m.lower() for m in re.findall(
    r"\$([A-Z]+)_NKEY", (Path(__file__).resolve().parents[2] / "deploy" / "nats-users.conf").read_text())})


def nats_nkeys(tmp):
    """One NKEY user per user of deploy/nats-users.conf, as
    `scripts/nats-nkeys.sh tmp` makes them: {<NAME>_NKEY: public key}, and
    each seed in tmp/<name>.nk, mode 600, given to the images' user (65532)
    as compose.yaml asks."""
    from nkey_support import NKey
    os.chmod(tmp, 0o755)
    keys = {}
    for u in NATS_USERS:
        key = NKey("user")
        seed = os.path.join(tmp, u + ".nk")
        fd = os.open(seed, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.seed + "\n")
        if os.geteuid() == 0:
            os.chown(seed, 65532, 65532)
        else:
            podman("unshare", "chown", "65532:65532", seed)
        keys["%s_NKEY" % u.upper()] = key.public
    return keys


def nats_image():
    if subprocess.run(["podman", "image", "exists", NATS_IMAGE]).returncode == 0:
        return
    with tempfile.TemporaryDirectory() as ctx:
        shutil.copy(ti.NATS_SERVER, os.path.join(ctx, "nats-server"))
        Path(ctx, "Containerfile").write_text(
            "FROM %s\nCOPY nats-server /nats-server\nENTRYPOINT [\"/nats-server\"]\n" % ti.BASE_IMAGE)
        podman("build", "--format", "docker", "-t", NATS_IMAGE, ctx, timeout=300)


def wait_ready(name, base, timeout, t0, detail=""):
    """GET base/readyz until 200 or the timeout."""
    deadline = time.monotonic() + timeout
    status = 0
    while time.monotonic() < deadline:
        status, _, _ = http("GET", base + "/readyz", timeout=2)
        if status == 200:
            break
        time.sleep(0.5)
    return result("%s: the gateway's /readyz 200 on %s (%.0f s)" % (name, base, time.monotonic() - t0),
                  status == 200, "last %r %s" % (status, detail))


def sign_up(name, base):
    """Registers and logs in a new user through the gateway: its bearer header, or None."""
    user = {"username": "%s_%d" % (name, os.getpid()), "password": "correct-horse-battery"}
    status, body, _ = http("POST", base + "/auth/register", user)
    result("%s: POST /auth/register through the gateway 201" % name, status == 201,
           "%r %r" % (status, body))
    status, body, _ = http("POST", base + "/auth/login", user)
    token = body.get("access_token") if isinstance(body, dict) else None
    if not result("%s: POST /auth/login 200 with a token" % name, status == 200 and bool(token),
                  "%r %r" % (status, body)):
        return None
    return {"Authorization": "Bearer " + token}


def until_status(want, method, url, body=None, headers=None):
    """The request again until it answers `want`, for up to 20 s: services
    that start together find each other (auth's keys, instances on NATS) a
    moment after the gateway is ready. (status, body) of the last answer."""
    deadline = time.monotonic() + 20
    while True:
        status, answer, _ = http(method, url, body, headers=headers)
        if status == want or time.monotonic() > deadline:
            return status, answer
        time.sleep(0.3)


def print_logs(containers):
    for c in containers:
        logs = subprocess.run(["podman", "logs", "--tail", "5", c], capture_output=True, text=True)
        print("# %s:\n%s" % (c, (logs.stdout + logs.stderr).strip()))


def run(name, body, teardown):
    """The frame of a test: podman's environment, the stage's SERVICES, signals
    held while it tears down, the tally last. body() runs the checks,
    teardown() always runs after it."""
    if not os.environ.get("CONTAINERS_STORAGE_CONF"):
        print("%s: run it through `scripts/images.sh test`, or source scripts/podman-env.sh first"
              % sys.argv[0], file=sys.stderr)
        return 2
    missing = sorted(set(SHOP) - set(ti.SERVICES)) if ti.SERVICES else []
    if missing:
        print("# %s test skipped: SERVICES lacks %s" % (name, " ".join(missing)))
        print("0 passed, 0 failed")
        return 0
    signal.signal(signal.SIGTERM, ti.on_signal)
    signal.signal(signal.SIGINT, ti.on_signal)
    t0 = time.monotonic()
    try:
        body(t0)
    except RuntimeError as e:
        result("%s setup" % name, False, str(e))
    finally:
        # A second Ctrl-C must not cut the teardown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        teardown()
    print("# %s test took %.0f s" % (name, time.monotonic() - t0))
    print("%d passed, %d failed" % (ti.passed, ti.failed))
    return 0 if ti.failed == 0 and ti.passed > 0 else 1
