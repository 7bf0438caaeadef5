"""deploy/k8s: every manifest is a valid Kubernetes API object, and the
manifests keep the promises docs/deploy.md makes about them.

The schema check is tests/k8s/validate.mjs (npm kubernetes-models@5 and yaml@2,
installed into tests/k8s/node_modules with `npm ci` on first use); a broken
manifest must fail it. The rest reads the YAML with python3-yaml. The
PostgreSQL overlay (deploy/k8s-postgres) is rendered with `kubectl kustomize`
(skipped without kubectl) and validated the same way. Running the pods is
tests/images/test_kube.py's part (the images stage).
"""
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from conftest import node_validator

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
K8S_PG = ROOT / "deploy" / "k8s-postgres"
VALIDATOR = ROOT / "tests" / "k8s"
SERVICES = ["auth", "products", "orders", "payments", "gateway"]
# SQLite on a volume (or PostgreSQL from the Secret svckit-database): one replica each.
SINGLE = ["auth", "products", "orders", "payments"]


def resources():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [K8S / r for r in kust["resources"]]


def objects():
    out = []
    for f in resources():
        out += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return out


def find(kind, name=None):
    return [o for o in objects() if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


@pytest.fixture(scope="module")
def validate():
    return node_validator(str(VALIDATOR), "kubernetes-models/package.json")


def test_kustomization_lists_every_manifest():
    listed = {p.name for p in resources()}
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_every_manifest_validates(validate):
    r = validate(*resources())
    assert r.returncode == 0, r.stdout + r.stderr
    oks = [l for l in r.stdout.splitlines() if l.startswith("ok ")]
    assert len(oks) == len(objects()), r.stdout
    for s in SERVICES:
        assert any(l.endswith(" Deployment " + s) for l in oks), r.stdout
    assert any(l.endswith(" StatefulSet nats") for l in oks), r.stdout


BROKEN = {
    "port as a word": ("Service", lambda o: o["spec"]["ports"][0].update(port="http")),
    "no selector": ("Deployment", lambda o: o["spec"].pop("selector")),
    "replicas as text": ("Deployment", lambda o: o["spec"].update(replicas="two")),
    "unknown kind": ("Deployment", lambda o: o.update(kind="Deployement")),
    "probe path as a number": ("Deployment", lambda o: o["spec"]["template"]["spec"]["containers"][0]
                               ["readinessProbe"]["httpGet"].update(path=42)),
    "HPA without a target": ("HorizontalPodAutoscaler", lambda o: o["spec"].pop("scaleTargetRef")),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_manifest_fails(validate, tmp_path, case):
    kind, breakit = BROKEN[case]
    obj = find(kind)[0]
    breakit(obj)
    f = tmp_path / "broken.yaml"
    f.write_text(yaml.safe_dump_all([find("ConfigMap")[0], obj]))
    r = validate(f)
    assert r.returncode == 1, r.stdout + r.stderr
    assert [l.split(" ", 1)[0] for l in r.stdout.splitlines()] == ["ok", "error"], r.stdout


def container(name):
    return find("Deployment", name)[0]["spec"]["template"]["spec"]["containers"][0]


def env(name):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(name)["env"]}


@pytest.mark.parametrize("name", SERVICES)
def test_probes_resources_and_grace(name):
    c = container(name)
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    for k in ("cpu", "memory"):
        assert c["resources"]["requests"][k] and c["resources"]["limits"][k]
    e = env(name)
    drain, shutdown = int(e["DRAIN_DELAY"]), int(e["SHUTDOWN_TIMEOUT"])
    grace = find("Deployment", name)[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    # The process exits at most 1 s after SHUTDOWN_TIMEOUT (FORCE_GRACE_MS).
    assert drain < shutdown and shutdown + 1 < grace
    assert e["NATS_URL"] == "nats://nats:4222"


@pytest.mark.parametrize("name", SINGLE)
def test_sqlite_services_run_one_replica_on_a_volume(name):
    d = find("Deployment", name)[0]
    assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"]["type"] == "Recreate"
    vols = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
    claim = vols["data"]["persistentVolumeClaim"]["claimName"]
    assert find("PersistentVolumeClaim", claim)


def test_only_the_gateway_is_reachable_from_outside():
    assert [s["metadata"]["name"] for s in find("Service") if s["spec"].get("type") == "LoadBalancer"] \
        == ["gateway"]
    policies = find("NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress")]
    assert deny and deny[0]["spec"]["policyTypes"] == ["Ingress"]
    # Rules without `from` admit any peer: only the gateway's may.
    open_to_all = [p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                   for p in policies for rule in p["spec"].get("ingress", []) if "from" not in rule]
    assert open_to_all == ["gateway"]


def test_autoscaling_and_disruption_budgets():
    assert [h["spec"]["scaleTargetRef"]["name"] for h in find("HorizontalPodAutoscaler")] == ["gateway"]
    assert {p["metadata"]["name"] for p in find("PodDisruptionBudget")} == {"gateway", "nats"}
    nats = find("StatefulSet", "nats")[0]
    assert nats["spec"]["replicas"] == 3
    data = find("ConfigMap", "svckit-config")[0]["data"]
    assert data["NATS_JS_REPLICAS"] == "3"
    conf = find("ConfigMap", "nats-config")[0]["data"]["nats.conf"]
    assert "jetstream" in conf and "$NATS_ROUTE_2" in conf
    # The stream's copy fits each node's store (nats-server refuses one that does not).
    store_mb = int(re.search(r"max_file_store: (\d+)MB", conf).group(1))
    assert 0 < int(data["NATS_JS_MAX_BYTES"]) < store_mb * 10**6, (data, store_mb)


def test_nats_runs_the_shipped_permissions():
    """nats-config holds deploy/nats-users.conf as it is, nats.conf includes
    it, nats-server gets every user's public key from the ConfigMap
    nats-nkeys, and each service signs in with its own seed: the Secret
    nats-nkey-<name>, mounted only into its own pod, read-only, 0400 (the
    seeds and keys are placeholders, made per installation)."""
    data = find("ConfigMap", "nats-config")[0]["data"]
    assert data["nats-users.conf"] == (ROOT / "deploy" / "nats-users.conf").read_text()
    assert "include ./nats-users.conf" in data["nats.conf"]
    nats = find("StatefulSet", "nats")[0]["spec"]["template"]["spec"]["containers"][0]
    assert nats["envFrom"] == [{"configMapRef": {"name": "nats-nkeys"}}]
    users = ("gateway", "auth", "products", "orders", "payments", "recommendations", "ops")
    keys = find("ConfigMap", "nats-nkeys")[0]["data"]
    assert sorted(keys) == sorted(f"{u.upper()}_NKEY" for u in users)
    assert all(f"${k}" in data["nats-users.conf"] for k in keys)
    for u in users:
        assert list(find("Secret", f"nats-nkey-{u}")[0]["stringData"]) == ["seed"]
    assert not any("NATS_PASSWORD" in k for k in find("Secret", "svckit-secrets")[0]["stringData"])
    for name in SERVICES:
        e = env(name)
        assert e["NATS_NKEY_SEED_FILE"] == "/etc/nats-nkey/seed" and "NATS_PASSWORD" not in e
        spec = find("Deployment", name)[0]["spec"]["template"]["spec"]
        secrets = {v["secret"]["secretName"]: v for v in spec["volumes"] if "secret" in v}
        assert list(secrets) == [f"nats-nkey-{name}"]
        vol = secrets[f"nats-nkey-{name}"]
        assert vol["secret"]["defaultMode"] == 0o400
        mount = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == vol["name"]]
        assert mount == [{"name": vol["name"], "mountPath": "/etc/nats-nkey", "readOnly": True}]


def test_nats_routes_are_authenticated():
    """The cluster port takes only the user "route" with the Secret's
    password, and every route URL signs in with it."""
    conf = find("ConfigMap", "nats-config")[0]["data"]["nats.conf"]
    cluster = conf[conf.index("cluster {"):]
    assert "authorization {" in cluster and "user: route" in cluster and "password: $NATS_ROUTE_PASSWORD" in cluster
    assert "routes: [$NATS_ROUTE_0, $NATS_ROUTE_1, $NATS_ROUTE_2]" in cluster
    nats = find("StatefulSet", "nats")[0]["spec"]["template"]["spec"]["containers"][0]
    e = {x["name"]: x for x in nats["env"]}
    assert e["NATS_ROUTE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "svckit-secrets",
                                                                      "key": "NATS_ROUTE_PASSWORD"}
    assert "NATS_ROUTE_PASSWORD" in find("Secret", "svckit-secrets")[0]["stringData"]
    for i in range(3):
        assert e[f"NATS_ROUTE_{i}"]["value"] == \
            f"nats://route:$(NATS_ROUTE_PASSWORD)@nats-{i}.nats-headless:6222"
    # $(VAR) expands only from variables listed before it.
    names = [x["name"] for x in nats["env"]]
    assert names.index("NATS_ROUTE_PASSWORD") < names.index("NATS_ROUTE_0")


DATABASE_REF = {"secretKeyRef": {"name": "svckit-database", "key": "DATABASE_URL", "optional": True}}


def test_stateful_services_read_database_url_from_an_optional_secret():
    """Without the Secret svckit-database the base runs on SQLite as before;
    with it (the overlay's or a managed database's) on PostgreSQL."""
    for name in SINGLE:
        assert env(name)["DATABASE_URL"] == DATABASE_REF, name
    assert "DATABASE_URL" not in env("gateway")
    assert not find("Secret", "svckit-database")


@pytest.fixture(scope="module")
def pg_rendered(tmp_path_factory):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed (kubectl kustomize renders the overlay)")
    r = subprocess.run([kubectl, "kustomize", str(K8S_PG)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    f = tmp_path_factory.mktemp("k8s-postgres") / "rendered.yaml"
    f.write_text(r.stdout)
    return f, [d for d in yaml.safe_load_all(r.stdout) if d]


def pg_find(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def test_postgres_overlay_renders_and_validates(validate, pg_rendered):
    f, docs = pg_rendered
    r = validate(f)
    assert r.returncode == 0, r.stdout + r.stderr
    oks = [l for l in r.stdout.splitlines() if l.startswith("ok ")]
    assert len(oks) == len(docs)
    overlay = {p.name for p in K8S_PG.glob("*.yaml")} - {"kustomization.yaml"}
    listed = yaml.safe_load((K8S_PG / "kustomization.yaml").read_text())["resources"]
    assert set(listed) == overlay | {"../k8s"}
    # The base, plus the database's four objects and products' autoscaler and
    # disruption budget, less products' volume claim, all in the namespace.
    assert len(docs) == len(objects()) + 4 + 2 - 1
    for kind, name in (("StatefulSet", "postgres"), ("Service", "postgres"), ("Secret", "svckit-database"),
                       ("NetworkPolicy", "postgres-from-the-stateful-services"),
                       ("HorizontalPodAutoscaler", "products"), ("PodDisruptionBudget", "products")):
        assert pg_find(docs, kind, name)["metadata"]["namespace"] == "svckit"


def test_products_scales_out_on_postgres(pg_rendered):
    """On PostgreSQL products has no volume of its own: two replicas or more,
    rolled one at a time, autoscaled like the gateway; the other stateful
    services keep one replica and their volumes (auth's key, orders' and
    payments' DATA_DIR)."""
    _, docs = pg_rendered
    products = pg_find(docs, "Deployment", "products")["spec"]
    assert products["replicas"] == 2
    assert products["strategy"]["type"] == "RollingUpdate"
    assert products["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    volumes = products["template"]["spec"]["volumes"]
    assert not any("persistentVolumeClaim" in v for v in volumes), volumes
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "products-data"]
    hpa = pg_find(docs, "HorizontalPodAutoscaler", "products")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "products" and hpa["minReplicas"] == 2 and hpa["maxReplicas"] > 2
    assert pg_find(docs, "PodDisruptionBudget", "products")["spec"]["minAvailable"] == 1
    for name in ("auth", "orders", "payments"):
        d = pg_find(docs, "Deployment", name)["spec"]
        assert d["replicas"] == 1
        assert any("persistentVolumeClaim" in v for v in d["template"]["spec"]["volumes"])


def test_postgres_password_is_referenced_not_inlined(pg_rendered):
    _, docs = pg_rendered
    secret = pg_find(docs, "Secret", "svckit-database")["stringData"]
    assert sorted(secret) == ["DATABASE_URL", "POSTGRES_PASSWORD"]
    url = urlsplit(secret["DATABASE_URL"])
    assert url.password == secret["POSTGRES_PASSWORD"] and url.username == "svckit"
    sts = pg_find(docs, "StatefulSet", "postgres")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    e = {x["name"]: x for x in c["env"]}
    assert e["POSTGRES_PASSWORD"] == {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "svckit-database", "key": "POSTGRES_PASSWORD"}}}
    assert url.path == "/" + e["POSTGRES_DB"]["value"] and url.username == e["POSTGRES_USER"]["value"]
    # No pod spec holds the password or a URL as a literal value.
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            for cont in d["spec"]["template"]["spec"]["containers"]:
                values = [x.get("value", "") for x in cont.get("env", [])]
                assert not any(secret["POSTGRES_PASSWORD"] in v or "postgres://" in v for v in values), d
    for name in SINGLE:
        dep = pg_find(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert {x["name"]: x.get("valueFrom") for x in dep["env"]}["DATABASE_URL"] == DATABASE_REF


def test_postgres_is_reachable_only_from_the_stateful_services(pg_rendered):
    _, docs = pg_rendered
    sts = pg_find(docs, "StatefulSet", "postgres")
    svc = pg_find(docs, "Service", "postgres")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["serviceName"] == "postgres" and svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert all(labels[k] == v for k, v in svc["spec"]["selector"].items())
    assert urlsplit(pg_find(docs, "Secret", "svckit-database")["stringData"]["DATABASE_URL"]).netloc \
        .endswith("@postgres:%d" % svc["spec"]["ports"][0]["port"])
    c = sts["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["exec"]["command"][0] == "pg_isready"
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    pol = pg_find(docs, "NetworkPolicy", "postgres-from-the-stateful-services")["spec"]
    assert pol["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "postgres"}
    [rule] = pol["ingress"]
    [peer] = rule["from"]
    [expr] = peer["podSelector"]["matchExpressions"]
    assert expr["key"] == "app.kubernetes.io/name" and expr["operator"] == "In"
    assert sorted(expr["values"]) == sorted(SINGLE)
    assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
