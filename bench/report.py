#!/usr/bin/env python3
"""Turns bench/run.sh's raw measurements into results.md and results.json.

usage: report.py RAW RESULTS_MD RESULTS_JSON

RAW has one measurement per line: a kind (META, SCENARIO, RUN, IDLE, READY) and
key=value fields (text values with %XX escapes: no spaces). Per scenario, each
load metric is the median over its rounds; ratios to a group's ceiling use those
medians, all from the same run.

Scenarios come in groups (SCENARIO group=...), one table each:
  demo      GET /products of the demo; ceiling: "ceiling"
  products  GET /products?limit=30 with a token; ceiling: "ceiling-products"
  login     POST /auth/login; no ceiling
  gateway   GET /products/1 through the gateway; base: "direct" (products, no gateway)
  gzip      GET /products?limit=30 with a token, without and with Accept-Encoding: gzip;
            base: "products-plain"

The gateway group also has HALF lines: bench/rate.c's constant-rate runs at half
of the gateway's maximum req/s, the same rate for direct and the gateway rows;
the gateway hop is gateway minus direct, p50 and p99 (medians over rounds), judged
against issue 4's targets. LAT lines are wrk runs at a fixed small concurrency
after the measured run (the hop at light load, shown, not judged). A KILL line is
the kill loop: gateway-3 under a constant rate while products instances are
SIGKILLed and restarted; every failed GET counts.
"""
import json
import statistics
import sys
from urllib.parse import unquote

# Issue 2's targets, for the demo served by svckit (svckit and svckit-render).
# Units: req/s ratio, us, KiB.
TARGETS = {
    "rps_vs_ceiling_min": 0.85,
    "p99_us_max": 2000,
    "rss_idle_kib_max": 2 * 1024,
    "rss_load_kib_max": 8 * 1024,
    "idle10k_delta_kib_max": 20 * 1024,
    "ready_us_max": 15000,
}
ISSUE2_SUBJECTS = ("svckit", "svckit-render")

# Issue 3's targets, for the reference services: GET /products?limit=30 with token
# verification at >= 0.7 of the ceiling's req/s (serving the same bytes, same run);
# each service's idle RSS at most 4 MiB.
TARGETS3 = {
    "products_rps_vs_ceiling_min": 0.7,
    "service_rss_idle_kib_max": 4 * 1024,
}

# Issue 4's targets, for the gateway: the hop it adds at p50/p99 at half of its
# maximum load (constant-rate runs), its req/s against products directly (both with
# WORKERS=1), and no failed GET while products instances are killed and restarted.
TARGETS4 = {
    "hop_p50_us_max": 150,
    "hop_p99_us_max": 500,
    "rps_vs_direct_min": 0.4,
    "kill_failed_max": 0,
}
ISSUE4_SUBJECTS = ("gateway", "gateway-3")

# A group compared with a scenario that is not a ceiling.
GROUP_BASE = {"gateway": "direct", "gzip": "products-plain"}

GROUPS = {
    "demo": "GET /products on the demo: the same 30-product JSON from every server",
    "products": "GET /products?limit=30 with a valid token: the products service, and the same bytes "
                "from nginx and the ceiling",
    "login": "POST /auth/login with valid credentials: Argon2id (t=2, m=19 MiB), slow on purpose",
    "gateway": "GET /products/1 with a valid token: through the gateway (gateway -> NATS -> products) "
               "and straight to products",
    "gzip": "GET /products?limit=30 with a valid token, without and with Accept-Encoding: gzip",
}

# A round during which other processes used more than this (percent of one CPU)
# is flagged: its numbers are not the machine's.
NOISY_PCT = 5

TEXT_FIELDS = ("note", "skipped", "label")


def parse(path):
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            fields = {}
            for tok in parts[1:]:
                k, _, v = tok.partition("=")
                fields[k] = v
            rows.append((parts[0], fields))
    return rows


def num(v):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return unquote(v)


def median(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    m = statistics.median(xs)
    return int(m) if isinstance(m, float) and m.is_integer() else m


def others_pct(v, hz):
    """CPU (percent of one CPU) that neither the server nor wrk used during the run:
    other people's processes, steal. Kernel softirq work for our traffic is left out."""
    if "machine_ticks" not in v or not v["wall_s"]:
        return None
    wrk = v["client_ticks"] * v["wall_s"] / v["client_wall_s"] if v["client_wall_s"] > 0 else 0
    return round(max(0.0, 100 * (v["machine_ticks"] - v["cpu_ticks"] - wrk) / hz / v["wall_s"]), 1)


def group_ceiling(scen, order, group):
    base = GROUP_BASE.get(group)
    if base:
        return base if base in scen and scen[base]["group"] == group else None
    for name in order:
        s = scen[name]
        if s["group"] == group and (name == "ceiling" or name.startswith("ceiling-")):
            return name
    return None


def collect(rows):
    meta = {}
    order = []
    scen = {}
    for kind, f in rows:
        if kind == "META":
            meta.update({k: num(v) for k, v in f.items()})
        elif kind == "SCENARIO":
            name = f["name"]
            order.append(name)
            scen[name] = {
                "port": int(f["port"]),
                "group": f.get("group", "demo"),
                "label": unquote(f.get("label", "")) or name,
                "note": unquote(f.get("note", "")),
                "skipped": unquote(f.get("skipped", "")) or None,
                "rounds": [],
                "failures": [],
                "lat": {},
                "half": [],
            }
    hz = meta.get("clk_tck", 100)

    for kind, f in rows:
        name = f.get("scenario")
        if name not in scen:
            continue
        s = scen[name]
        if "error" in f:
            s["failures"].append(f"{kind.lower()}: {f['error']}" + (f" (round {f['round']})" if "round" in f else ""))
            continue
        if kind == "RUN":
            v = {k: num(x) for k, x in f.items() if k != "scenario"}
            reqs = v["requests"]
            secs = v["duration_us"] / 1e6
            errors = sum(v[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
            s["rounds"].append({
                "round": v["round"],
                "conns": v.get("conns", meta.get("conns")),
                "duration_s": round(secs, 2),
                "rps": round(reqs / secs, 1),
                "p50_us": v["p50_us"],
                "p90_us": v["p90_us"],
                "p99_us": v["p99_us"],
                "p999_us": v["p999_us"],
                "max_us": v["max_us"],
                "requests": reqs,
                "errors": errors,
                "bytes_per_response": round(v["bytes"] / reqs, 1) if reqs else None,
                "rss_idle_kib": v["rss_idle_kib"],
                "rss_load_kib": v["rss_load_kib"],
                "server_cpu_pct": round(100 * v["cpu_ticks"] / hz / v["wall_s"], 1) if v["wall_s"] else None,
                # The server's CPU time over the requests of the measured run.
                "server_cpu_us_per_request": round(1e6 * v["cpu_ticks"] / hz / reqs, 1) if reqs else None,
                "client_cpu_pct": round(100 * v["client_ticks"] / hz / v["client_wall_s"], 1)
                if v["client_wall_s"] > 0 else None,
                "others_cpu_pct": others_pct(v, hz),
                "log_bytes_per_request": round(v["log_bytes"] / reqs, 1)
                if reqs and v.get("log_expected") else None,
            })
        elif kind == "LAT":
            v = {k: num(x) for k, x in f.items() if k != "scenario"}
            reqs = v["requests"]
            secs = v["duration_us"] / 1e6
            errors = sum(v[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
            wall = v["wall_s"]
            s["lat"].setdefault(str(v["conns"]), []).append({
                "round": v["round"],
                "rps": round(reqs / secs, 1),
                "p50_us": v["p50_us"], "p90_us": v["p90_us"], "p99_us": v["p99_us"],
                "p999_us": v["p999_us"], "max_us": v["max_us"],
                "requests": reqs, "errors": errors,
                "server_cpu_pct": round(100 * v["cpu_ticks"] / hz / wall, 1) if wall else None,
                # wrk's CPU is not sampled in these runs: "others" includes it.
                "others_and_wrk_cpu_pct": round(max(0.0, 100 * (v["machine_ticks"] - v["cpu_ticks"]) / hz / wall), 1)
                if wall else None,
            })
        elif kind == "HALF":
            v = {k: num(x) for k, x in f.items() if k != "scenario"}
            wall = v["wall_s"]
            s["half"].append({
                "round": v["round"], "target_rps": v["target_rps"], "achieved_rps": v["achieved_rps"],
                "p50_us": v["p50_us"], "p90_us": v["p90_us"], "p99_us": v["p99_us"], "p999_us": v["p999_us"],
                "max_us": v["max_us"], "requests": v["due"], "failed": v["failed"],
                "late_max_us": v["late_max_us"],
                # Warm-up included: the CPU of the whole rate run.
                "server_cpu_pct": round(100 * v["cpu_ticks"] / hz / wall, 1) if wall else None,
            })
        elif kind == "KILL":
            s["kill"] = {k: num(x) for k, x in f.items() if k != "scenario"}
        elif kind == "IDLE":
            v = {k: num(x) for k, x in f.items() if k != "scenario"}
            s["idle"] = {
                "conns": v["conns"],
                "established": v["established"],
                "failed": v["failed"],
                "closed_by_server": v["closed_by_server"],
                "rss_before_kib": v["rss_before_kib"],
                "rss_after_kib": v["rss_after_kib"],
                "delta_kib": v["rss_after_kib"] - v["rss_before_kib"],
            }
        elif kind == "READY":
            s["ready"] = {
                "median_us": int(f["median_us"]),
                "samples_us": [int(x) for x in f["samples_us"].split(",")],
            }

    for s in scen.values():
        rs = s["rounds"]
        if not rs:
            continue
        s["median"] = {k: median([r[k] for r in rs]) for k in (
            "rps", "p50_us", "p99_us", "rss_idle_kib", "rss_load_kib", "server_cpu_pct",
            "server_cpu_us_per_request", "client_cpu_pct", "others_cpu_pct", "bytes_per_response", "log_bytes_per_request")}
        s["errors"] = sum(r["errors"] for r in rs)
    for s in scen.values():
        s["lat_median"] = {c: {k: median([r[k] for r in rs]) for k in (
            "rps", "p50_us", "p99_us", "server_cpu_pct", "others_and_wrk_cpu_pct")}
            | {"errors": sum(r["errors"] for r in rs)} for c, rs in s["lat"].items()}
        hs = s["half"]
        s["half_median"] = {k: median([r[k] for r in hs]) for k in (
            "target_rps", "achieved_rps", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "server_cpu_pct")} | {"failed": sum(r["failed"] for r in hs)} if hs else None
    return meta, order, scen


def compute_ratios(scen, order):
    def rps(name):
        s = scen.get(name)
        return s["median"]["rps"] if s and "median" in s else None

    ratios = {}
    for name in order:
        ceil = group_ceiling(scen, order, scen[name]["group"])
        r = rps(name)
        if ceil and ceil != name and r is not None and rps(ceil):
            ratios[f"{name}/{ceil}"] = round(r / rps(ceil), 3)
    pairs = [(sv, peer) for sv in ISSUE2_SUBJECTS for peer in ("nginx", "nginx-nolog")]
    pairs += [("svckit", "svckit-render"), ("products", "nginx-products")]
    for a, b in pairs:
        if rps(a) is not None and rps(b):
            ratios[f"{a}/{b}"] = round(rps(a) / rps(b), 3)
    return ratios


def check(checks, what, value, ok, limit):
    checks.append({"what": what, "value": value, "limit": limit,
                   "pass": None if value is None else bool(ok)})


def issue2_checks(meta, scen, ratios, name):
    """Issue 2's targets for one svckit scenario of the demo group, or None."""
    sv = scen.get(name)
    if not sv or "median" not in sv:
        return None
    m = sv["median"]
    checks = []
    rc = ratios.get(f"{name}/ceiling")
    check(checks, "req/s vs ceiling", rc, rc is not None and rc >= TARGETS["rps_vs_ceiling_min"],
          f">= {TARGETS['rps_vs_ceiling_min']}")
    for peer in ("nginx", "nginx-nolog"):
        rn = ratios.get(f"{name}/{peer}")
        if rn is not None:
            check(checks, f"req/s vs {peer}", rn, rn > 1, "> 1")
    check(checks, "p99 (us)", m["p99_us"], m["p99_us"] <= TARGETS["p99_us_max"], f"<= {TARGETS['p99_us_max']}")
    check(checks, "RSS idle (KiB)", m["rss_idle_kib"], m["rss_idle_kib"] <= TARGETS["rss_idle_kib_max"],
          f"<= {TARGETS['rss_idle_kib_max']}")
    check(checks, "RSS under load (KiB)", m["rss_load_kib"], m["rss_load_kib"] <= TARGETS["rss_load_kib_max"],
          f"<= {TARGETS['rss_load_kib_max']}")
    idle = sv.get("idle")
    # The limit is for 10k connections; another count is shown but not judged.
    d = idle["delta_kib"] if idle and idle["failed"] == 0 and idle["conns"] == 10000 else None
    check(checks, f"RSS +{meta.get('idle_conns')} idle conns (KiB)", d,
          d is not None and d <= TARGETS["idle10k_delta_kib_max"], f"<= {TARGETS['idle10k_delta_kib_max']}")
    rd = sv.get("ready", {}).get("median_us")
    check(checks, "exec to ready (us)", rd, rd is not None and rd <= TARGETS["ready_us_max"],
          f"<= {TARGETS['ready_us_max']}")
    return {"label": sv["label"], "stand_in": "STAND-IN" in sv["note"], "checks": checks}


def issue3(scen, ratios):
    """Issue 3's targets for products and auth, plus what is measured without a limit."""
    pr, au = scen.get("products"), scen.get("auth-login")
    pm = pr.get("median") if pr else None
    am = au.get("median") if au else None
    if not pm and not am:
        return None
    checks, info = [], []
    lim = TARGETS3["service_rss_idle_kib_max"]
    if pm:
        rc = ratios.get("products/ceiling-products")
        check(checks, "products req/s vs ceiling-products", rc,
              rc is not None and rc >= TARGETS3["products_rps_vs_ceiling_min"],
              f">= {TARGETS3['products_rps_vs_ceiling_min']}")
        check(checks, "products RSS idle (KiB)", pm["rss_idle_kib"], pm["rss_idle_kib"] <= lim, f"<= {lim}")
    if am:
        check(checks, "auth RSS idle (KiB)", am["rss_idle_kib"], am["rss_idle_kib"] <= lim, f"<= {lim}")
    if pm:
        info.append(("products req/s", pm["rps"]))
        info.append(("products req/s vs nginx-products", ratios.get("products/nginx-products")))
        info.append(("products p50 (us)", pm["p50_us"]))
        info.append(("products p99 (us)", pm["p99_us"]))
        info.append(("products RSS under load (KiB)", pm["rss_load_kib"]))
    if am:
        info.append(("auth logins/s", am["rps"]))
        info.append(("auth login p50 (us)", am["p50_us"]))
        info.append(("auth login p99 (us)", am["p99_us"]))
        info.append(("auth RSS under load (KiB)", am["rss_load_kib"]))
    return {"checks": checks, "info": [{"what": w, "value": v} for w, v in info]}


def issue4(scen, ratios):
    """Issue 4: the gateway hop at half of its maximum load (judged) and at each
    fixed concurrency (shown), req/s vs direct, and the kill loop."""
    d = scen.get("direct")
    if not d or "median" not in d:
        return None
    subjects = [n for n in ISSUE4_SUBJECTS if n in scen and "median" in scen[n]]
    if not subjects:
        return None
    gw_max = {n: scen[n]["median"]["rps"] for n in subjects}
    checks, hops, half = [], [], []
    for n in subjects:
        label = scen[n]["label"]
        rv = ratios.get(f"{n}/direct")
        check(checks, f"{label}: req/s vs direct (-c{d['rounds'][0]['conns']})", rv,
              rv is not None and rv >= TARGETS4["rps_vs_direct_min"], f">= {TARGETS4['rps_vs_direct_min']}")
        g, b = scen[n].get("half_median"), d.get("half_median")
        if g and b:
            h50, h99 = g["p50_us"] - b["p50_us"], g["p99_us"] - b["p99_us"]
            load = round(g["achieved_rps"] / gw_max[n], 3) if gw_max[n] else None
            half.append({"scenario": n, "label": label, "rate": g["target_rps"], "hop_p50_us": h50,
                         "hop_p99_us": h99, "direct": b, "via": g, "via_load_vs_max": load})
            failed = g["failed"] + b["failed"]
            at = f"at {g['target_rps']:,.0f} req/s ({load:.2f} of its max)" if load else "at half load"
            check(checks, f"{label}: hop p50 {at} (us)", h50,
                  h50 <= TARGETS4["hop_p50_us_max"] and not failed, f"<= {TARGETS4['hop_p50_us_max']}")
            check(checks, f"{label}: hop p99 {at} (us)", h99,
                  h99 <= TARGETS4["hop_p99_us_max"] and not failed, f"<= {TARGETS4['hop_p99_us_max']}")
        for c in sorted(scen[n]["lat_median"], key=int, reverse=True):
            g, b = scen[n]["lat_median"][c], d["lat_median"].get(c)
            if not b:
                continue
            load = round(g["rps"] / gw_max[n], 3) if gw_max[n] else None
            hops.append({"scenario": n, "label": label, "conns": int(c), "hop_p50_us": g["p50_us"] - b["p50_us"],
                         "hop_p99_us": g["p99_us"] - b["p99_us"], "direct": b, "via": g, "via_load_vs_max": load})
    k = scen.get("gateway-3", {}).get("kill")
    if k:
        check(checks, f"failed GETs in the kill loop ({k['kills']} SIGKILLs in {k['duration_s']} s at "
              f"{k['target_rps']:,.0f} req/s)", k["failed"], k["failed"] <= TARGETS4["kill_failed_max"],
              f"<= {TARGETS4['kill_failed_max']}")
    return {"checks": checks, "hops": hops, "half": half, "kill": k}


def main():
    raw, out_md, out_json = sys.argv[1:4]
    meta, order, scen = collect(parse(raw))
    ratios = compute_ratios(scen, order)
    subjects = {n: t for n in ISSUE2_SUBJECTS if (t := issue2_checks(meta, scen, ratios, n))}
    targets = {"issue2": subjects or None, "issue3": issue3(scen, ratios), "issue4": issue4(scen, ratios)}

    result = {"meta": meta, "order": order, "scenarios": scen, "ratios": ratios, "targets": targets}
    with open(out_json, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    md = render(result)
    with open(out_md, "w") as f:
        f.write(md)
    print(md)


def mib(kib):
    return "-" if kib is None else f"{kib / 1024:.2f} MiB"


def us(v):
    if v is None:
        return "-"
    return f"{v:.0f} us" if v < 10000 else f"{v / 1000:.1f} ms"


def fmt_value(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.3f}" if isinstance(v, float) and v < 10 else f"{v:.0f}"


def verdict(c):
    return "n/a" if c["pass"] is None else ("pass" if c["pass"] else "FAIL")


def table(res, group):
    meta, scen, ratios = res["meta"], res["scenarios"], res["ratios"]
    ceil = group_ceiling(scen, res["order"], group)
    L = ["| server | req/s | vs %s | p50 | p99 | RSS idle | RSS load | +%s idle conns | exec to ready "
         "| server CPU | CPU/req | wrk CPU | others CPU | bytes/resp | log bytes/req |"
         % (ceil or "ceiling", meta.get("idle_conns")),
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in res["order"]:
        s = scen[name]
        if s["group"] != group:
            continue
        if s["skipped"]:
            L.append(f"| {s['label']} | {s['skipped']} |" + " |" * 14)
            continue
        m = s.get("median")
        idle = s.get("idle")
        ready = s.get("ready")
        if idle:
            idle_s = mib(idle["delta_kib"])
            if idle["failed"] or idle["closed_by_server"]:
                idle_s += f" ({idle['failed']} failed, {idle['closed_by_server']} closed)"
        else:
            idle_s = "-"
        ready_s = f"{ready['median_us'] / 1000:.2f} ms" if ready else "-"
        if not m:
            L.append(f"| {s['label']} | failed | | | | | | {idle_s} | {ready_s} | | | | | | |")
            continue
        ratio = 1.0 if name == ceil and m["rps"] else ratios.get(f"{name}/{ceil}") if ceil else None
        L.append("| {} | {:,.0f}{} | {} | {} | {} | {} | {} | {} | {} | {:.0f}% | {} | {} | {} | {:.0f} | {} |".format(
            s["label"], m["rps"], " (errors!)" if s["errors"] else "",
            "-" if ratio is None else f"{ratio:.3f}",
            us(m["p50_us"]), us(m["p99_us"]), mib(m["rss_idle_kib"]), mib(m["rss_load_kib"]), idle_s, ready_s,
            m["server_cpu_pct"] or 0,
            "-" if m["server_cpu_us_per_request"] is None else f"{m['server_cpu_us_per_request']:.1f} us",
            "-" if m["client_cpu_pct"] is None else f"{m['client_cpu_pct']:.0f}%",
            "-" if m["others_cpu_pct"] is None else f"{m['others_cpu_pct']:.0f}%",
            m["bytes_per_response"] or 0,
            "-" if m["log_bytes_per_request"] is None else
            (f"{m['log_bytes_per_request']:.0f}" if m["log_bytes_per_request"] else "0 (log empty!)")))
    return L


def hop_table(res):
    t4 = res["targets"]["issue4"]
    meta = res["meta"]
    L = []
    if t4["half"]:
        L += [f"**The hop at half of the gateway's maximum load** (judged): `bench/rate.c` sends "
              f"{meta.get('half_rate'):,} req/s (half of the gateway row's median -c{meta.get('conns')} req/s) "
              f"at a constant rate, open loop, to direct and to each gateway row, on a fresh server: "
              f"{meta.get('half_warmup_s')} s not counted, then {meta.get('half_duration_s')} s; latency from "
              "each request's due time (no coordinated omission); medians over rounds. "
              "hop = via p50/p99 minus direct p50/p99 at the same rate.\n",
              "| path | rate | direct p50 | direct p99 | via p50 | via p99 | hop p50 | hop p99 | via load vs its max "
              "| server CPU (direct) | server CPU (via) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for h in t4["half"]:
            b, g = h["direct"], h["via"]
            L.append("| {} | {:,.0f}{} | {} | {} | {} | {} | {:+.0f} us | {:+.0f} us | {} | {} | {} |".format(
                h["label"], h["rate"], " (failures!)" if g["failed"] or b["failed"] else "",
                us(b["p50_us"]), us(b["p99_us"]), us(g["p50_us"]), us(g["p99_us"]), h["hop_p50_us"],
                h["hop_p99_us"], "-" if h["via_load_vs_max"] is None else f"{h['via_load_vs_max']:.2f}",
                "-" if b["server_cpu_pct"] is None else f"{b['server_cpu_pct']:.0f}%",
                "-" if g["server_cpu_pct"] is None else f"{g['server_cpu_pct']:.0f}%"))
        L.append("")
    if t4["hops"]:
        L += [f"Latency at a fixed concurrency (`wrk -t1 -cN -d{meta.get('lat_duration_s')}s` on the same "
              "server right after its measured run; medians over rounds; shown, not judged): the hop at "
              "light load. \"load\" is that run's req/s over the same scenario's maximum.\n",
              "| path | conns | direct req/s | direct p50 | direct p99 | via req/s | load vs its max | via p50 "
              "| via p99 | hop p50 | hop p99 | others+wrk CPU |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for h in t4["hops"]:
            b, g = h["direct"], h["via"]
            L.append("| {} | {} | {:,.0f} | {} | {} | {:,.0f}{} | {} | {} | {} | {:+.0f} us | {:+.0f} us | {} |".format(
                h["label"], h["conns"], b["rps"], us(b["p50_us"]), us(b["p99_us"]), g["rps"],
                " (errors!)" if g["errors"] or b["errors"] else "",
                "-" if h["via_load_vs_max"] is None else f"{h['via_load_vs_max']:.2f}",
                us(g["p50_us"]), us(g["p99_us"]), h["hop_p50_us"], h["hop_p99_us"],
                "-" if g["others_and_wrk_cpu_pct"] is None else f"{g['others_and_wrk_cpu_pct']:.0f}%"))
        L.append("")
    k = t4.get("kill")
    if k:
        L.append(f"**Kill loop** (gateway -> 3 products): {k['target_rps']:,.0f} req/s at a constant rate for "
                 f"{k['duration_s']} s; every {k['every_s']} s one products instance (in turn) got SIGKILL and was "
                 f"restarted {k['down_s']} s later: {k['kills']} kills, {k['due']:,} requests, **{k['failed']} failed** "
                 f"({k['fail_status']} non-2xx, {k['fail_conn']} connection, {k['fail_timeout']} timeout); the "
                 f"gateway retried {k['retries']} on another instance (budget exhausted {k['budget_exhausted']} "
                 f"times); latency p50 {us(k['p50_us'])}, p99 {us(k['p99_us'])}, p99.9 {us(k['p999_us'])}, "
                 f"max {us(k['max_us'])}.\n")
    return L


def render(res):
    meta, scen, ratios = res["meta"], res["scenarios"], res["ratios"]
    L = []
    L.append("# svckit benchmark results\n")
    L.append(f"{meta.get('date')}, git {meta.get('git_rev')}, {meta.get('cpu')}, {meta.get('nproc')} CPUs, "
             f"kernel {meta.get('kernel')}, machine {meta.get('busy_pct_start')}% busy before the run, "
             f"load average {meta.get('loadavg_start')} at start, "
             f"{meta.get('loadavg_end')} at end, {meta.get('elapsed_s')} s in all.\n")
    L.append(f"Server pinned to CPU {meta.get('server_cpu')}, wrk {meta.get('wrk')} to CPU {meta.get('client_cpu')}: "
             f"`wrk -t1 -c{meta.get('conns')} -d{meta.get('duration_s')}s` after a {meta.get('warmup_s')} s warm-up "
             f"(login: `-c{meta.get('login_conns')} -d{meta.get('login_duration_s')}s` after "
             f"{meta.get('login_warmup_s')} s), {meta.get('rounds')} rounds in alternating order, medians shown. "
             f"svckit services run with NATS_URL={meta.get('nats_url', 'none')}.\n")
    groups = [g for g in GROUPS if any(scen[n]["group"] == g for n in res["order"])]
    groups += sorted({scen[n]["group"] for n in res["order"]} - set(groups))
    for g in groups:
        L.append(f"## {GROUPS.get(g, g)}\n")
        if g == "demo":
            L.append(f"Body: {meta.get('body_bytes')} bytes (sha256 {meta.get('body_sha256')}...), "
                     f"{meta.get('body_source')}. **svckit (cached)** serves the list from svckit's "
                     "per-worker response cache (svckit/cache.h), the recommended design for read-mostly "
                     "data; **svckit-render** is the same binary with DEMO_CACHE=0, rendering the JSON on "
                     "every request: the raw speed of the JSON writer and request handling.\n")
        elif g == "products":
            if meta.get("pbody_bytes"):
                L.append(f"Body: {meta.get('pbody_bytes')} bytes (sha256 {meta.get('pbody_sha256')}...), "
                         f"{meta.get('pbody_source')}; every server gets the same request, "
                         "`Authorization: Bearer <token>` included. products checks the token on every "
                         "request (the Ed25519 signature once, then svckit's verified-token cache) and "
                         "serves the page from its per-worker response cache.\n")
        elif g == "gateway":
            L.append(f"Body: {meta.get('gbody_bytes')} bytes, products' reply to GET {meta.get('gbody_path')} "
                     f"with a token. nats-server {meta.get('nats_server')} (no JetStream), the gateway and "
                     "products (WORKERS=1 each) are " + (
                         f"**all pinned to CPU {meta.get('server_cpu')}** (BENCH_GW_PIN=1), wrk to CPU "
                         f"{meta.get('client_cpu')}" if meta.get("gw_pin") == 1 else
                         "**not pinned**: they share both CPUs, wrk included (pinned to CPU "
                         f"{meta.get('client_cpu')})") + f"; nats-server GOMAXPROCS={meta.get('nats_gomaxprocs')}. "
                     "\"server\" columns sum every process on "
                     "the path: products (and the idle nats-server) for direct; gateway, nats-server and "
                     "the products instances through the gateway. The gateway's per-client rate limit is "
                     "off (`rate_per_client_per_s: 0`): wrk is one address.\n")
            if meta.get("cross_cpu_p50_us") is not None:
                L.append("One process-to-process hand-off on this machine (`bench/wakeup.c`: one byte ping-ponged "
                         "over loopback TCP, each side asleep until the other writes), round trip p50/p99: "
                         f"**{meta['same_cpu_p50_us']}/{meta['same_cpu_p99_us']} us on one CPU, "
                         f"{meta['cross_cpu_p50_us']}/{meta['cross_cpu_p99_us']} us across the two**. A request "
                         "through the gateway makes four more hand-offs than one straight to products.\n")
        elif g == "gzip":
            L.append(f"The products group's request to products, without and with `Accept-Encoding: gzip`: "
                     f"the page is {meta.get('pbody_bytes')} bytes plain, {meta.get('gzbody_bytes')} bytes "
                     "gzipped. Both forms come from products' response cache, which compressed the page once, "
                     "when it stored it; CPU/req is the server's CPU time over the measured run's requests.\n")
        elif g == "login":
            L.append("Every request is a successful login: one Argon2id hash (10-20 ms of CPU) on the "
                     "thread pool, then an EdDSA-signed token. Slow on purpose; RSS under load includes "
                     "19 MiB per hash in flight.\n")
        L.extend(table(res, g))
        L.append("")
        if g == "gateway" and res["targets"].get("issue4"):
            L.extend(hop_table(res))
    L.append("Ratios (median req/s, same run): " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()) + "\n")
    L.append("Per round (req/s, p99, CPU used by other processes, in % of one CPU):\n")
    for name in res["order"]:
        s = scen[name]
        if s["rounds"]:
            L.append(f"- {name}: " + "; ".join(
                f"r{r['round']} {r['rps']:,.0f} req/s p99 {us(r['p99_us'])}" +
                ("" if r["others_cpu_pct"] is None else f" (others {r['others_cpu_pct']:.0f}%"
                 + (", NOISY)" if r["others_cpu_pct"] > NOISY_PCT else ")"))
                for r in s["rounds"]))
        for fl in s["failures"]:
            L.append(f"- {name}: FAILED {fl}")
    L.append("")
    L.append("Scenarios:\n")
    for name in res["order"]:
        s = scen[name]
        L.append(f"- {name}: {s['skipped'] or s['note']}")
    L.append("")

    t2 = res["targets"]["issue2"]
    if t2:
        names = list(t2)
        L.append("Targets (issue 2) for svckit on the demo" +
                 (" -- STAND-IN, NOT svckit" if any(t2[n]["stand_in"] for n in names) else "") +
                 ": judged for both rows; svckit (cached) is the recommended design.\n")
        cols = [x for n in names for x in (t2[n]["label"], "")]
        L.append("| target | limit | " + " | ".join(cols) + " |")
        L.append("|---|---|" + "---:|---|" * len(names))
        rows = {}
        for n in names:
            for c in t2[n]["checks"]:
                rows.setdefault(c["what"], {"limit": c["limit"]})[n] = c
        for what, r in rows.items():
            cells = []
            for n in names:
                c = r.get(n)
                cells.append("- | n/a" if c is None else f"{fmt_value(c['value'])} | {verdict(c)}")
            L.append(f"| {what} | {r['limit']} | " + " | ".join(cells) + " |")
        if "svckit-render" in t2:
            L.append("\nsvckit-render has no idle-connection or ready-time run: it is the same binary as svckit.")
        L.append("")
    t4 = res["targets"].get("issue4")
    if t4:
        L.append("Targets (issue 4) for the gateway: req/s through the gateway vs products directly, the hop "
                 "at p50/p99 at half of the gateway's maximum load, and failed GETs in the kill loop (same run):\n")
        L.append("| target | value | limit | |")
        L.append("|---|---:|---|---|")
        for c in t4["checks"]:
            L.append(f"| {c['what']} | {fmt_value(c['value'])} | {c['limit']} | {verdict(c)} |")
        L.append("")
    t3 = res["targets"]["issue3"]
    if t3:
        L.append("Targets (issue 3) for the reference services (products, auth):\n")
        L.append("| target | value | limit | |")
        L.append("|---|---:|---|---|")
        for c in t3["checks"]:
            L.append(f"| {c['what']} | {fmt_value(c['value'])} | {c['limit']} | {verdict(c)} |")
        L.append("")
        L.append("Also measured: " + "; ".join(f"{i['what']} {fmt_value(i['value'])}" for i in t3["info"]) + ".\n")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
