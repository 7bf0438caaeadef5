#!/usr/bin/env python3
"""Turns bench/run.sh's raw measurements into results.md and results.json.

usage: report.py RAW RESULTS_MD RESULTS_JSON

RAW has one measurement per line: a kind (META, SCENARIO, RUN, IDLE, READY) and
key=value fields. Per scenario, each load metric is the median over its rounds;
ratios to the ceiling use those medians, all from the same run.
"""
import json
import statistics
import sys

# The targets for svckit (issue 2). Units: req/s ratio, us, KiB.
TARGETS = {
    "rps_vs_ceiling_min": 0.85,
    "p99_us_max": 2000,
    "rss_idle_kib_max": 2 * 1024,
    "rss_load_kib_max": 8 * 1024,
    "idle10k_delta_kib_max": 20 * 1024,
    "ready_us_max": 15000,
}


# A round during which other processes used more than this (percent of one CPU)
# is flagged: its numbers are not the machine's.
NOISY_PCT = 5


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
            return v


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


def main():
    raw, out_md, out_json = sys.argv[1:4]
    rows = parse(raw)
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
                "note": f.get("note", "").replace("_", " "),
                "skipped": f.get("skipped", "").replace("_", " ") or None,
                "rounds": [],
                "failures": [],
            }
    for k in ("cpu", "body_source"):
        if isinstance(meta.get(k), str):
            meta[k] = meta[k].replace("_", " ")
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
                "client_cpu_pct": round(100 * v["client_ticks"] / hz / v["client_wall_s"], 1)
                if v["client_wall_s"] > 0 else None,
                "others_cpu_pct": others_pct(v, hz),
                "log_bytes_per_request": round(v["log_bytes"] / reqs, 1)
                if reqs and v.get("log_expected") else None,
            })
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
            "client_cpu_pct", "others_cpu_pct", "bytes_per_response", "log_bytes_per_request")}
        s["errors"] = sum(r["errors"] for r in rs)

    def rps(name):
        s = scen.get(name)
        return s["median"]["rps"] if s and "median" in s else None

    ceil = rps("ceiling")
    ratios = {}
    for name in order:
        r = rps(name)
        if r is not None and ceil:
            ratios[f"{name}/ceiling"] = round(r / ceil, 3)
    if rps("svckit") is not None:
        for peer in ("nginx", "nginx-nolog"):
            if rps(peer):
                ratios[f"svckit/{peer}"] = round(rps("svckit") / rps(peer), 3)

    targets = None
    sv = scen.get("svckit")
    if sv and "median" in sv:
        m = sv["median"]
        checks = []

        def check(what, value, ok, limit):
            checks.append({"what": what, "value": value, "limit": limit,
                           "pass": None if value is None else bool(ok)})

        rc = ratios.get("svckit/ceiling")
        check("req/s vs ceiling", rc, rc is not None and rc >= TARGETS["rps_vs_ceiling_min"],
              f">= {TARGETS['rps_vs_ceiling_min']}")
        for peer in ("nginx", "nginx-nolog"):
            rn = ratios.get(f"svckit/{peer}")
            if rn is not None:
                check(f"req/s vs {peer}", rn, rn > 1, "> 1")
        check("p99 (us)", m["p99_us"], m["p99_us"] <= TARGETS["p99_us_max"], f"<= {TARGETS['p99_us_max']}")
        check("RSS idle (KiB)", m["rss_idle_kib"], m["rss_idle_kib"] <= TARGETS["rss_idle_kib_max"],
              f"<= {TARGETS['rss_idle_kib_max']}")
        check("RSS under load (KiB)", m["rss_load_kib"], m["rss_load_kib"] <= TARGETS["rss_load_kib_max"],
              f"<= {TARGETS['rss_load_kib_max']}")
        idle = sv.get("idle")
        # The limit is for 10k connections; another count is shown but not judged.
        d = idle["delta_kib"] if idle and idle["failed"] == 0 and idle["conns"] == 10000 else None
        check(f"RSS +{meta.get('idle_conns')} idle conns (KiB)", d,
              d is not None and d <= TARGETS["idle10k_delta_kib_max"], f"<= {TARGETS['idle10k_delta_kib_max']}")
        rd = sv.get("ready", {}).get("median_us")
        check("exec to ready (us)", rd, rd is not None and rd <= TARGETS["ready_us_max"],
              f"<= {TARGETS['ready_us_max']}")
        targets = {"stand_in": "STAND-IN" in sv["note"], "checks": checks}

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


def render(res):
    meta, scen, ratios = res["meta"], res["scenarios"], res["ratios"]
    L = []
    L.append("# svckit benchmark results\n")
    L.append(f"{meta.get('date')}, git {meta.get('git_rev')}, {meta.get('cpu')}, {meta.get('nproc')} CPUs, "
             f"kernel {meta.get('kernel')}, machine {meta.get('busy_pct_start')}% busy before the run, "
             f"load average {meta.get('loadavg_start')} at start, "
             f"{meta.get('loadavg_end')} at end, {meta.get('elapsed_s')} s in all.\n")
    L.append(f"Server pinned to CPU {meta.get('server_cpu')}, wrk {meta.get('wrk')} to CPU {meta.get('client_cpu')}: "
             f"`wrk -t1 -c{meta.get('conns')} -d{meta.get('duration_s')}s` after a {meta.get('warmup_s')} s warm-up, "
             f"{meta.get('rounds')} rounds in alternating order, medians shown. "
             f"Body: {meta.get('body_bytes')} bytes (sha256 {meta.get('body_sha256')}...), {meta.get('body_source')}.\n")
    L.append("| server | req/s | vs ceiling | p50 | p99 | RSS idle | RSS load | +%s idle conns | exec to ready | server CPU | wrk CPU | others CPU | bytes/resp | log bytes/req |"
             % meta.get("idle_conns"))
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in res["order"]:
        s = scen[name]
        if s["skipped"]:
            L.append(f"| {name} | {s['skipped']} |" + " |" * 13)
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
            L.append(f"| {name} | failed | | | | | | {idle_s} | {ready_s} | | | | | |")
            continue
        ratio = ratios.get(f"{name}/ceiling")
        L.append("| {} | {:,.0f}{} | {} | {:.0f} us | {:.0f} us | {} | {} | {} | {} | {:.0f}% | {} | {} | {:.0f} | {} |".format(
            name, m["rps"], " (errors!)" if s["errors"] else "",
            "-" if ratio is None else f"{ratio:.3f}",
            m["p50_us"], m["p99_us"], mib(m["rss_idle_kib"]), mib(m["rss_load_kib"]), idle_s, ready_s,
            m["server_cpu_pct"] or 0,
            "-" if m["client_cpu_pct"] is None else f"{m['client_cpu_pct']:.0f}%",
            "-" if m["others_cpu_pct"] is None else f"{m['others_cpu_pct']:.0f}%",
            m["bytes_per_response"] or 0,
            "-" if m["log_bytes_per_request"] is None else
            (f"{m['log_bytes_per_request']:.0f}" if m["log_bytes_per_request"] else "0 (log empty!)")))
    L.append("")
    L.append("Ratios (median req/s, same run): " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()) + "\n")
    L.append("Per round (req/s, p99, CPU used by other processes, in % of one CPU):\n")
    for name in res["order"]:
        s = scen[name]
        if s["rounds"]:
            L.append(f"- {name}: " + "; ".join(
                f"r{r['round']} {r['rps']:,.0f} req/s p99 {r['p99_us']} us" +
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
    t = res["targets"]
    if t:
        L.append("Targets (issue 2) for svckit" + (" -- STAND-IN, NOT svckit:" if t["stand_in"] else ":") + "\n")
        L.append("| target | value | limit | |")
        L.append("|---|---:|---|---|")
        for c in t["checks"]:
            verdict = "n/a" if c["pass"] is None else ("pass" if c["pass"] else "FAIL")
            v = c["value"]
            v = "-" if v is None else (f"{v:.3f}" if isinstance(v, float) and v < 10 else f"{v:.0f}")
            L.append(f"| {c['what']} | {v} | {c['limit']} | {verdict} |")
        L.append("")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
