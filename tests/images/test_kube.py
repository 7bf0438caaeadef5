#!/usr/bin/env python3
"""Runs the pods of deploy/k8s with `podman kube play` and reads the catalog
through the gateway.

Called by `scripts/images.sh test` after test_compose.py, with podman's
environment set and the stage's images built. `podman kube play` is not a
cluster, so the test plays a variant of the manifests, made here from them:

  - each Deployment's and the StatefulSet's pod template becomes one Pod named
    after it: podman's DNS resolves pod names, so NATS_URL (@nats:4222) and
    AUTH_JWKS_URL (http://auth:8081) stay as they are; no replicas;
  - Secret values are put in place (podman reads a secretKeyRef from its own
    secret store, not from a Secret document), and $(VAR) in env values and
    args is expanded as Kubernetes does (podman does not); the NATS users
    are made here (stack.nats_nkeys): their public keys fill the ConfigMap
    nats-nkeys, and each Secret volume nats-nkey-<name> becomes a hostPath
    of that seed file, mounted where the Secret's "seed" would be;
  - probes go (podman runs them with curl inside the container; the images
    have none) and so do the ports, except the gateway's, published on
    127.0.0.1 at a free port;
  - nats: one node (the cluster block goes: its routes would never resolve;
    NATS_JS_REPLICAS 1),
    the local nats image (stack.py) and no runAsUser (its volume is
    root's);
  - images are the stage's (localhost/svckit/<name>:latest), volume claims
    and ConfigMaps get the run's name, and everything is labelled for the
    cleanup.

Checks: every pod runs, the gateway answers /readyz 200, and a product read
through it (register, log in, GET /products/1) answers 200. Then `podman kube
down`, the volumes and the network are removed (on failure and Ctrl-C too).
Prints "N passed, N failed" last.
"""
import copy
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

import stack
import test_images as ti
from test_images import podman, result

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
RUN_ID = "svckit-kube-%d" % os.getpid()
PODS = ["nats", "auth", "products", "orders", "payments", "gateway"]
UP_TIMEOUT = 120


def load():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for r in kust["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / r).read_text()) if d]
    return docs


def expand(value, env):
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def expand_env(env, secret):
    """Secret values in place, $(VAR) expanded from the variables before it."""
    out, seen = [], {}
    for e in env:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            if ref["key"] not in secret:
                if ref.get("optional"):
                    continue
                raise RuntimeError("secret key %s missing" % ref["key"])
            e = {"name": e["name"], "value": secret[ref["key"]]}
        if "value" in e:
            e = dict(e, value=expand(e["value"], seen))
            seen[e["name"]] = e["value"]
        out.append(e)
    return out


def variant(docs, secret, nkeys, gateway_port):
    out = []
    for d in docs:
        kind, name = d["kind"], d["metadata"]["name"]
        if kind == "ConfigMap":
            # podman keeps a ConfigMap mounted as a volume of its name, and
            # reuses one that exists: the run's name keeps each run's own.
            d = copy.deepcopy(d)
            d["metadata"]["name"] = "%s-%s" % (RUN_ID, name)
            if name == "svckit-config":
                d["data"]["NATS_JS_REPLICAS"] = "1"   # one NATS node here
            if name == "nats-nkeys":
                d["data"] = dict(nkeys["keys"])
            if name == "nats-config":
                conf = d["data"]["nats.conf"]
                d["data"]["nats.conf"] = conf[:conf.index("cluster {")]
            out.append(d)
        elif kind == "PersistentVolumeClaim":
            d = copy.deepcopy(d)
            d["metadata"]["name"] = "%s-%s" % (RUN_ID, name)
            out.append(d)
        elif kind in ("Deployment", "StatefulSet"):
            spec = copy.deepcopy(d["spec"]["template"]["spec"])
            for c in spec["containers"]:
                for probe in ("startupProbe", "readinessProbe", "livenessProbe", "lifecycle"):
                    c.pop(probe, None)
                c["env"] = expand_env(c.get("env", []), secret)
                env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
                c["args"] = [expand(a, env) for a in c.get("args", [])]
                if name == "gateway":
                    c["ports"] = [{"containerPort": 8080, "hostPort": gateway_port,
                                   "hostIP": "127.0.0.1"}]
                else:
                    c.pop("ports", None)
                if name == "nats":
                    c["image"] = stack.NATS_IMAGE
                else:
                    c["image"] = "localhost/%s/%s:%s" % (ti.PREFIX, name, ti.TAG)
            for c in spec["containers"]:
                for ref in c.get("envFrom", []):
                    ref["configMapRef"]["name"] = "%s-%s" % (RUN_ID, ref["configMapRef"]["name"])
            for v in spec.get("volumes", []):
                if "persistentVolumeClaim" in v:
                    claim = v["persistentVolumeClaim"]
                    claim["claimName"] = "%s-%s" % (RUN_ID, claim["claimName"])
                if "configMap" in v:
                    v["configMap"]["name"] = "%s-%s" % (RUN_ID, v["configMap"]["name"])
                if "secret" in v:
                    user = v.pop("secret")["secretName"][len("nats-nkey-"):]
                    v["hostPath"] = {"path": os.path.join(nkeys["dir"], user + ".nk"), "type": "File"}
                    for c in spec["containers"]:
                        for m in c.get("volumeMounts", []):
                            if m["name"] == v["name"]:
                                m["mountPath"] += "/seed"
            if kind == "StatefulSet":
                spec.pop("securityContext", None)
                for t in d["spec"]["volumeClaimTemplates"]:
                    claim = "%s-%s-%s" % (RUN_ID, name, t["metadata"]["name"])
                    spec["volumes"].append({"name": t["metadata"]["name"],
                                            "persistentVolumeClaim": {"claimName": claim}})
                    out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                "metadata": {"name": claim}, "spec": t["spec"]})
            out.append({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": name, "labels": {ti.LABEL: RUN_ID}}, "spec": spec})
    return out


def pods(run=RUN_ID):
    out = podman("pod", "ps", "--filter", "label=%s=%s" % (ti.LABEL, run), "--format", "json",
                 check=False)
    return {p["Name"]: p["Status"] for p in json.loads(out or "[]")}


def teardown(kube_file, volumes, run=RUN_ID):
    if kube_file:
        podman("kube", "down", kube_file, check=False, timeout=120)
    left = list(pods(run))
    if left:
        podman("pod", "rm", "-f", *left, check=False)
    if volumes:
        podman("volume", "rm", "-f", *volumes, check=False)
    podman("network", "rm", "-f", run, check=False)


def remove_leftovers():
    """Removes what killed runs left: their pods would take the pod names."""
    out = podman("pod", "ps", "--format", '{{index .Labels "%s"}}' % ti.LABEL, check=False)
    nets = podman("network", "ls", "--format", "{{.Name}}", check=False).split()
    for run in set(out.split()) | set(nets):
        if not run.startswith("svckit-kube-") or run == RUN_ID:
            continue
        pid = run.rsplit("-", 1)[1]
        if pid.isdigit() and not ti.pid_alive(int(pid)):
            vols = [v for v in podman("volume", "ls", "-q", check=False).split()
                    if v.startswith(run + "-")]
            teardown(None, vols, run)


def read_products(base):
    bearer = stack.sign_up("kube", base)
    if not bearer:
        return
    status, body = stack.until_status(200, "GET", base + "/products/1", headers=bearer)
    result("kube: GET /products/1 through the gateway 200",
           status == 200 and isinstance(body, dict) and body.get("id") == 1,
           "%r %r" % (status, str(body)[:300]))


def main():
    port = stack.free_port()
    base = "http://127.0.0.1:%d" % port
    secret = {"NATS_ROUTE_PASSWORD": "p" + secrets.token_hex(16), "ADMIN_PASSWORD": secrets.token_hex(16)}
    nkeys_dir = tempfile.mkdtemp(prefix=RUN_ID + "-nkeys-")
    nkeys = {"keys": stack.nats_nkeys(nkeys_dir), "dir": nkeys_dir}
    docs = variant(load(), secret, nkeys, port)
    # podman makes a volume of each claim, and one of each ConfigMap mounted.
    volumes = [d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"] + \
        [v["configMap"]["name"] for d in docs if d["kind"] == "Pod"
         for v in d["spec"].get("volumes", []) if "configMap" in v]
    kube_file = os.path.join(tempfile.gettempdir(), RUN_ID + ".yaml")

    def body(t0):
        remove_leftovers()
        stack.nats_image()
        with open(kube_file, "w") as f:
            yaml.safe_dump_all(docs, f)
        podman("network", "create", "--label", "%s=%s" % (ti.LABEL, RUN_ID), RUN_ID)
        out = podman("kube", "play", "--network", RUN_ID, kube_file, check=False, timeout=300)
        stack.wait_ready("kube", base, UP_TIMEOUT, t0, "play: " + out[-500:])
        state = pods()
        result("kube: every pod runs (%s)" % " ".join(PODS),
               sorted(state) == sorted(PODS) and set(state.values()) == {"Running"}, "%r" % state)
        read_products(base)

    def down():
        if ti.failed:
            stack.print_logs(podman("ps", "-a", "--format", "{{.Names}}",
                                    *("--filter=pod=" + p for p in PODS), check=False).split())
        teardown(kube_file if os.path.exists(kube_file) else None, volumes)
        left = list(pods()) + [v for v in podman("volume", "ls", "-q", check=False).split()
                               if v.startswith(RUN_ID)]
        result("kube: torn down (no pod, no volume left)", not left, "left %r" % left)
        if os.path.exists(kube_file):
            os.unlink(kube_file)
        shutil.rmtree(nkeys_dir, ignore_errors=True)

    return stack.run("kube", body, down)


if __name__ == "__main__":
    sys.exit(main())
