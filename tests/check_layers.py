#!/usr/bin/env python3
"""The folders of src/ must form layers that call only downward.

Two kinds of edges between folders are collected: an #include "<folder>/..."
of another folder's internal header, and a call (a symbol one folder's
objects use and another's define, from `nm` on the release objects in
$SVCKIT_BUILD/obj/src, default build). Public headers (include/svckit/*.h)
are the API, not an edge: who calls what shows in the symbols.

Programs outside src/ (services, examples, the CLI) may include only the
internal headers PROGRAMS allows them.

The check fails on an edge from a folder to one of a higher layer (LAYERS),
on a cycle, and on an edge of KNOWN that has gone (so the list only
shrinks). KNOWN lists, each with its reason, upward edges the tree is allowed to
keep for a while (none today). Usage: tests/check_layers.py [--verbose]
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")

# Lower numbers are lower layers; a folder may use its own layer's or lower.
LAYERS = {
    "core": 0,     # arenas, buffers, formatting, rate limits
    "json": 1,     # JSON with limits
    "obs": 2,      # logging, metrics, process stats
    "store": 2,    # SQLite
    "net": 3,      # protocol clients: NATS, outbound HTTP; they know no app
    "runtime": 4,  # the service: app, workers, dispatch, req/res, compose; transports and modules by interface
    "http": 5,     # transport: the HTTP/1.1 server
    "msg": 5,      # transport: NATS (routes, rpc, events, JetStream, discovery, outbox relay)
    "auth": 5,     # module: tokens, JWKS, the verifying hook
    "svc": 6,      # the default wiring: svc_app_new registers the transports and modules above
}

# Upward edges still present, each with why. Empty since issue 9's layer
# split: the runtime reaches transports and modules through
# runtime/module.h. An entry added here is a debt, visible rather than
# hidden; remove it when its edge goes (the check fails if an entry no
# longer matches anything).
KNOWN = {}


def folders():
    return sorted(d for d in os.listdir(SRC) if os.path.isdir(os.path.join(SRC, d)))


def include_edges():
    edges = {}
    inc = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/[^"]+"', re.M)
    for f in folders():
        for name in os.listdir(os.path.join(SRC, f)):
            if not name.endswith((".c", ".h")):
                continue
            with open(os.path.join(SRC, f, name), encoding="utf-8", errors="replace") as fh:
                for m in inc.finditer(fh.read()):
                    to = m.group(1)
                    if to != f and to in LAYERS:
                        edges.setdefault((f, to), set()).add(f"{f}/{name} includes {to}/")
    return edges


# Programs outside src/ and the internal headers each may include: services
# and examples the public API only; the CLI also the NATS protocol client,
# which knows no app (svckit status speaks NATS itself).
PROGRAMS = {"services": set(), "examples": set(), "tools": {"net"}}


def program_includes():
    inc = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/[^"]+"', re.M)
    bad = []
    for top, allowed in PROGRAMS.items():
        for dirpath, _, names in os.walk(os.path.join(ROOT, top)):
            for name in names:
                if not name.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8", errors="replace") as fh:
                    for m in inc.finditer(fh.read()):
                        if m.group(1) in LAYERS and m.group(1) not in allowed:
                            bad.append(f"{os.path.relpath(path, ROOT)} includes {m.group(1)}/ (src internals)")
    return bad


def nm(path, *flags):
    out = subprocess.run(["nm", *flags, path], capture_output=True, text=True, check=True).stdout
    return [line.split()[-1] for line in out.splitlines() if line.strip()]


def call_edges(build):
    objdir = os.path.join(ROOT, build, "obj", "src")
    if not os.path.isdir(objdir):
        sys.exit(f"check_layers: no objects in {objdir}; build first (make CI=true)")
    defined, used = {}, {}
    for f in folders():
        d = os.path.join(objdir, f)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            # only objects of sources that exist (a moved file leaves a stale one)
            if name.endswith(".o") and os.path.exists(os.path.join(SRC, f, name[:-2] + ".c")):
                p = os.path.join(d, name)
                for s in nm(p, "--defined-only", "--extern-only"):
                    defined[s] = f
                used.setdefault(f, {}).update({s: name for s in nm(p, "--undefined-only")})
    edges = {}
    for f, syms in used.items():
        for s, obj in syms.items():
            to = defined.get(s)
            if to and to != f:
                edges.setdefault((f, to), set()).add(f"{f}/{obj} calls {s} ({to})")
    return edges


def cycles(edges):
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    found, state = [], {}

    def visit(n, path):
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                found.append(path[path.index(m):] + [m])
            elif not state.get(m):
                visit(m, path + [m])
        state[n] = 2

    for n in sorted(graph):
        if not state.get(n):
            visit(n, [n])
    return found


def main():
    verbose = "--verbose" in sys.argv
    build = os.environ.get("SVCKIT_BUILD", "build")
    edges = include_edges()
    for k, v in call_edges(build).items():
        edges.setdefault(k, set()).update(v)
    problems = []
    unknown = [f for f in folders() if f not in LAYERS]
    if unknown:
        problems.append(f"folders without a layer: {', '.join(unknown)} (add them to LAYERS)")
    for (a, b), why in sorted(edges.items()):
        if LAYERS.get(a, 0) < LAYERS.get(b, 0) and (a, b) not in KNOWN:
            problems.append(f"upward edge {a} -> {b}:\n    " + "\n    ".join(sorted(why)[:8]))
    allowed = {e for e in edges if not (LAYERS.get(e[0], 0) < LAYERS.get(e[1], 0) and e in KNOWN)}
    for c in cycles(allowed):
        problems.append("cycle: " + " -> ".join(c))
    problems.extend(program_includes())
    for e in sorted(KNOWN):
        if e not in edges:
            problems.append(f"KNOWN edge {e[0]} -> {e[1]} is gone: remove it from KNOWN")
    if verbose or problems:
        for (a, b), why in sorted(edges.items()):
            tag = "known" if (a, b) in KNOWN else ("UP" if LAYERS.get(a, 0) < LAYERS.get(b, 0) else "down")
            print(f"{a} -> {b} [{tag}] ({len(why)} uses)")
    for p in problems:
        print("check_layers: " + p)
    if problems:
        return 1
    print(f"check_layers: {len(edges)} edges between {len(folders())} folders, none upward "
          f"but the {len(KNOWN)} known, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
