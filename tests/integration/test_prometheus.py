"""deploy/prometheus/ (docs/observability.md, "Prometheus and Grafana"): the
scrape configurations and rules pass promtool, the rules' own unit tests
(tests.yml) pass, the static targets are the Procfile's ports, and Debian's
prometheus, started against the whole shop, scrapes every instance and
answers queries that match the requests this test sent.

prometheus and promtool come from Debian's prometheus package, which
scripts/deps.sh installs with the rest. Debian builds them without
Kubernetes service discovery (its client library is not packaged), so the
Kubernetes variant is checked with that one block swapped for a file-based
one, everything else as written; a promtool that knows kubernetes_sd_configs
checks the file as is.
"""
import http.client
import json
import math
import os
import re
import subprocess
import tempfile
import time
import urllib.parse

import yaml

from conftest import ROOT, WAIT, free_port, terminate, track, wait_until
from shop_support import Shop, admin
from test_msg_support import nats_server  # noqa: F401

PROM_DIR = os.path.join(ROOT, "deploy", "prometheus")
PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
CONFIGS = ("prometheus.yml", "prometheus-kubernetes.yml")
RULES = ("recording_rules.yml", "alert_rules.yml")
ALERTS = ("SvckitInstanceDown", "SvckitHighErrorRatio", "SvckitHighLatencyP99", "SvckitNatsDisconnected",
          "SvckitJetStreamConsumerLag")


def promtool(*args, cwd=PROM_DIR):
    r = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=WAIT)
    return r.returncode, r.stdout + r.stderr


def load(name):
    with open(os.path.join(PROM_DIR, name)) as f:
        return yaml.safe_load(f)


# ---- the files ---------------------------------------------------------------------------


def test_static_config_passes_promtool():
    rc, out = promtool("check", "config", "prometheus.yml")
    assert rc == 0, out
    assert "SUCCESS: 2 rule files found" in out, out


def test_kubernetes_config_passes_promtool(tmp_path):
    conf = load("prometheus-kubernetes.yml")
    job = next(j for j in conf["scrape_configs"] if j["job_name"] == "svckit")
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    keep = job["relabel_configs"][0]
    assert keep == {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                    "action": "keep", "regex": "true"}
    rc, out = promtool("check", "config", "prometheus-kubernetes.yml")
    if rc != 0 and "field kubernetes_sd_configs not found" in out:
        # Debian's build: the same file with the discovery block alone swapped.
        del job["kubernetes_sd_configs"]
        job["file_sd_configs"] = [{"files": [str(tmp_path / "pods.json")]}]
        conf["rule_files"] = [os.path.join(PROM_DIR, f) for f in conf["rule_files"]]
        path = tmp_path / "prometheus-kubernetes.yml"
        path.write_text(yaml.safe_dump(conf))
        rc, out = promtool("check", "config", str(path))
    assert rc == 0, out
    assert "SUCCESS: 2 rule files found" in out, out


def test_relabelling_of_the_kubernetes_config_finds_the_annotated_port():
    """The address rule of the Kubernetes job, applied as Prometheus does (a
    full match of the joined source labels; Go's regexp and Python's agree
    on this one): the pod's IP with the annotated port."""
    job = load("prometheus-kubernetes.yml")["scrape_configs"][0]
    rule = next(r for r in job["relabel_configs"] if r.get("target_label") == "__address__")
    assert rule["source_labels"] == ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"]
    repl = rule["replacement"].replace("$1", r"\1").replace("$2", r"\2")
    for address, port, want in [("10.1.2.3:8080", "8082", "10.1.2.3:8082"), ("10.1.2.3", "8081", "10.1.2.3:8081")]:
        m = re.fullmatch(rule["regex"], f"{address};{port}")
        assert m and m.expand(repl) == want


def test_rules_pass_promtool():
    rc, out = promtool("check", "rules", *RULES)
    assert rc == 0, out
    alerts = [r["alert"] for g in load("alert_rules.yml")["groups"] for r in g["rules"]]
    assert sorted(alerts) == sorted(ALERTS)


def test_rules_unit_tests_pass_and_every_alert_fires_in_them():
    rc, out = promtool("test", "rules", "tests.yml")
    assert rc == 0 and "SUCCESS" in out, out
    firing = {t["alertname"] for test in load("tests.yml")["tests"] for t in test.get("alert_rule_test", [])
              if t["exp_alerts"]}
    assert firing == set(ALERTS)


def procfile_ports():
    """{service: (port, scale_port or None)} from the Procfile's defaults, of
    every service `make run` starts (recommendations, the Node.js example,
    has no scale_port)."""
    out = {}
    with open(os.path.join(ROOT, "Procfile")) as f:
        for line in f:
            m = re.match(r"^(\w+)\s+\[([^\]]*)\]:", line)
            if not m:
                continue
            opts = dict(re.findall(r"(\w+)=\$\{\w+:-(\d+)\}", m.group(2)))
            if "port" in opts and "ready=/readyz" in m.group(2) and "manual" not in m.group(2):
                out[m.group(1)] = (int(opts["port"]), int(opts["scale_port"]) if "scale_port" in opts else None)
    return out


def test_static_targets_are_the_procfile_ports():
    ports = procfile_ports()
    assert set(ports) == {"gateway", "auth", "products", "orders", "payments", "recommendations"}
    jobs = {j["job_name"]: [t for sc in j["static_configs"] for t in sc["targets"]]
            for j in load("prometheus.yml")["scrape_configs"]}
    assert sorted(jobs["svckit"]) == sorted(f"127.0.0.1:{p}" for p, _ in ports.values())
    # svckit run --scale NAME=N (N <= 64): instance i >= 2 on scale_port + i - 2.
    scaled = [f"127.0.0.1:{s + i}" for _, s in ports.values() if s for i in range(63)]
    assert sorted(jobs["svckit-scaled"]) == sorted(scaled)
    assert len(set(jobs["svckit"]) | set(scaled)) == len(jobs["svckit"]) + len(scaled)


# ---- prometheus against the running shop --------------------------------------------------


class Prometheus:
    """Debian's prometheus on a free port of 127.0.0.1, its storage in a
    temporary directory; stopped by its PID."""

    def __init__(self, config):
        self.tmp = tempfile.TemporaryDirectory(prefix="svckit-prometheus-")
        self.port = free_port()
        conf = os.path.join(self.tmp.name, "prometheus.yml")
        with open(conf, "w") as f:
            yaml.safe_dump(config, f)
        self.log_path = os.path.join(self.tmp.name, "prometheus.log")
        self.log = open(self.log_path, "wb")
        self.proc = track(subprocess.Popen(
            [PROMETHEUS, f"--config.file={conf}", f"--storage.tsdb.path={self.tmp.name}/data",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.console.templates=" + self.tmp.name,
             "--web.console.libraries=" + self.tmp.name],
            stdout=self.log, stderr=subprocess.STDOUT))
        wait_until(lambda: self.alive() and self.get("/-/ready")[0] == 200, what="prometheus ready")

    def alive(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}:\n{self.read_log()}")
        return True

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def api(self, path, **params):
        q = "?" + urllib.parse.urlencode(params) if params else ""
        status, body = self.get(f"/api/v1/{path}{q}")
        doc = json.loads(body)
        assert status == 200 and doc["status"] == "success", (status, doc)
        return doc["data"]

    def query(self, expr):
        """[(labels, value)] of an instant query."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def stop(self):
        terminate(self.proc)
        self.log.close()
        self.tmp.cleanup()


def scrape_config(shop):
    """deploy/prometheus/prometheus.yml with the shop's real ports and a
    short interval, and its rules."""
    conf = load("prometheus.yml")
    conf["global"].update({"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"})
    conf["rule_files"] = [os.path.join(PROM_DIR, f) for f in conf["rule_files"]]
    conf["scrape_configs"] = [j for j in conf["scrape_configs"] if j["job_name"] == "svckit"]
    conf["scrape_configs"][0]["static_configs"] = [
        {"targets": [f"127.0.0.1:{shop.svc[n].port}" for n in ("gateway", "auth", "products", "orders", "payments")]}]
    return conf


def bucket_bounds(text, service, route, method, rank):
    """(lower, upper) bounds of the bucket of http_request_duration_seconds in
    a /metrics text that holds the rank-th smallest observation (1-based)."""
    counts = []
    for line in text.splitlines():
        if not line.startswith("http_request_duration_seconds_bucket{"):
            continue
        if f'service="{service}"' in line and f'route="{route}"' in line and f'method="{method}"' in line:
            le = re.search(r'le="([^"]+)"', line).group(1)
            counts.append((math.inf if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    counts.sort()
    lower = 0.0
    for le, n in counts:
        if n >= rank:
            return lower, le
        lower = le
    raise AssertionError(f"no bucket holds rank {rank}: {counts}")


N = 60
ROUTE = "/products/:id"


def test_prometheus_scrapes_the_running_shop(nats_server):  # noqa: F811
    shop = Shop(nats_server)
    prom = None
    try:
        prom = Prometheus(scrape_config(shop))
        ports = {shop.svc[n].port: n for n in shop.svc}

        # Every instance is a target, and up.
        def targets_up():
            t = prom.api("targets", state="active")["activeTargets"]
            return len(t) == 5 and all(x["health"] == "up" for x in t) and t
        targets = wait_until(targets_up, what="all five targets up")
        assert sorted(int(x["labels"]["instance"].rsplit(":", 1)[1]) for x in targets) == sorted(ports)
        up = prom.query('up{job="svckit"}')
        assert len(up) == 5 and all(v == 1 for _, v in up)

        # A known number of requests, timed from this side.
        slowest = 0.0
        for i in range(N):
            t0 = time.monotonic()
            st, _, _ = shop.products.request("GET", f"/products/{i % 10 + 1}", headers=admin())
            slowest = max(slowest, time.monotonic() - t0)
            assert st == 200
        sel = f'service="products",route="{ROUTE}",method="GET"'
        # The counter, summed over codes, is what was sent once a scrape
        # after the last request is in.
        wait_until(lambda: prom.query(f"sum(http_requests_total{{{sel}}})") == [({}, float(N))],
                   what=f"http_requests_total = {N}")
        assert prom.query(f'sum(http_requests_total{{{sel},code="200"}})') == [({}, float(N))]

        # p99 over the duration buckets: finite, inside the bucket that holds
        # the 99th percentile of the instance's own histogram, and no more
        # than the first bound above the slowest request seen from here
        # (the server's duration is a part of what the client saw).
        q = prom.query(f"histogram_quantile(0.99, sum by (le) (http_request_duration_seconds_bucket{{{sel}}}))")
        assert len(q) == 1 and math.isfinite(q[0][1]) and q[0][1] > 0, q
        p99 = q[0][1]
        text = shop.products.request("GET", "/metrics")[2].decode()
        lower, upper = bucket_bounds(text, "products", ROUTE, "GET", math.ceil(0.99 * N))
        assert lower <= p99 <= upper, (lower, p99, upper)
        _, client_bound = bucket_bounds_of(text, slowest)
        assert p99 <= client_bound, (p99, slowest, client_bound)

        # The rules load and evaluate on real series: the recording rules
        # give products a rate, every rule is healthy, no alert fires.
        wait_until(lambda: prom.query('service:http_requests:rate1m{service="products"}'),
                   what="a recorded request rate")
        groups = prom.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) == 16 and all(r["health"] == "ok" for r in rules), rules
        # Every instance is on NATS, and the lag gauge of each consumer is
        # scraped.
        connected = prom.query("nats_connected")
        assert sorted(l["service"] for l, v in connected if v == 1) == sorted(shop.svc)
        wait_until(lambda: prom.query("stream_durable:jetstream_consumer_pending_messages:max"),
                   what="a consumer's pending messages")
        assert not [a for a in prom.api("alerts")["alerts"] if a["state"] == "firing"]
    finally:
        if prom:
            prom.stop()
        shop.close()


def bucket_bounds_of(text, seconds):
    """(lower, upper): the bounds of the bucket of http_request_duration_seconds
    that a duration of seconds falls in."""
    bounds = sorted({float(b) for b in re.findall(r'^http_request_duration_seconds_bucket\{[^}]*le="([0-9.e+-]+)"',
                                                   text, re.M)})
    lower = 0.0
    for b in bounds:
        if seconds <= b:
            return lower, b
        lower = b
    return lower, math.inf
