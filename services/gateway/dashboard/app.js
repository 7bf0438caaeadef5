// The svckit dashboard: snapshots of every instance's $SRV.LIVE answer, from
// /dashboard/snapshot and then /dashboard/events (one per round). Rates,
// error ratios and quantiles are the difference between an instance's last
// two snapshots, as `svckit top` computes them. Every string shown came from
// an instance on NATS and may be hostile: it reaches the page only through
// textContent and createTextNode, never as markup or a style.
"use strict";

const BUILTIN = new Set(["/healthz", "/readyz", "/metrics"]);
const prev = new Map();   // instance key -> the snapshot of it before the last
const last = new Map();   // instance key -> its last snapshot
let snapshotSeq = 0;

function key(i) { return i.name + "\u0000" + i.id; }

// The quantile q of a non-cumulative histogram over bounds, in seconds; null
// when empty. Linear inside the bucket, as Prometheus's histogram_quantile.
function quantile(h, bounds, q) {
  if (!h || !bounds || !bounds.length) return null;
  const total = h.reduce((a, b) => a + b, 0);
  if (!total) return null;
  const rank = q * total;
  let cum = 0;
  for (let i = 0; i < h.length; i++) {
    if (h[i] > 0 && cum + h[i] >= rank) {
      if (i >= bounds.length) return bounds[bounds.length - 1];
      const lo = i === 0 ? 0 : bounds[i - 1];
      return lo + (bounds[i] - lo) * (rank - cum) / h[i];
    }
    cum += h[i];
  }
  return bounds[bounds.length - 1];
}

function addInto(acc, h) {
  if (!h) return acc;
  if (!acc) return h.slice();
  if (acc.length !== h.length) return acc;
  for (let i = 0; i < h.length; i++) acc[i] += h[i];
  return acc;
}

function routeKey(r) { return r.method + " " + r.route; }

// What changed for one instance between its two last snapshots.
function delta(cur, old) {
  const out = { known: false, rps: 0, req: 0, e4: 0, e5: 0, hist: null, cpu: null, routes: new Map() };
  if (!old || !(cur.now_ms > old.now_ms)) return out;
  const dt = (cur.now_ms - old.now_ms) / 1000;
  const before = new Map((old.routes || []).map(r => [routeKey(r), r]));
  for (const r of cur.routes || []) {
    const o = before.get(routeKey(r)) || {};
    const d = {
      req: Math.max(0, (r.requests || 0) - (o.requests || 0)),
      e4: Math.max(0, (r.errors_4xx || 0) - (o.errors_4xx || 0)),
      e5: Math.max(0, (r.errors_5xx || 0) - (o.errors_5xx || 0)),
      hist: null,
    };
    if (Array.isArray(r.duration_buckets)) {
      const ob = Array.isArray(o.duration_buckets) && o.duration_buckets.length === r.duration_buckets.length
        ? o.duration_buckets : null;
      d.hist = r.duration_buckets.map((v, k) => Math.max(0, v - (ob ? ob[k] : 0)));
    }
    d.rps = d.req / dt;
    out.routes.set(routeKey(r), Object.assign({ method: r.method, route: r.route, total: r.requests || 0 }, d));
    if (BUILTIN.has(r.route)) continue;
    out.req += d.req; out.e4 += d.e4; out.e5 += d.e5;
    out.hist = addInto(out.hist, d.hist);
  }
  out.rps = out.req / dt;
  if (typeof cur.cpu_seconds === "number" && typeof old.cpu_seconds === "number")
    out.cpu = Math.max(0, (cur.cpu_seconds - old.cpu_seconds) / dt * 100);
  // RPC calls by callee, events consumed by publisher.
  out.calls = new Map();
  out.events = new Map();
  const callKey = c => c.kind === "event" ? "event\u0000" + c.from : "rpc\u0000" + c.to;
  const oc = new Map((old.calls || []).map(c => [callKey(c), c]));
  for (const c of cur.calls || []) {
    const o = oc.get(callKey(c)) || {};
    const r = { rps: Math.max(0, (c.calls || 0) - (o.calls || 0)) / dt,
                eps: Math.max(0, (c.errors || 0) - (o.errors || 0)) / dt };
    if (c.kind === "event") out.events.set(c.from, r);
    else out.calls.set(c.to, r);
  }
  out.known = true;
  return out;
}

// ---- formatting ------------------------------------------------------------

function fmtRate(v, known) { return known ? v.toFixed(1) : "-"; }
function fmtPct(n, d) { return d ? (100 * n / d).toFixed(1) : "-"; }
function fmtMs(s) { return s == null ? "-" : s < 1 ? (s * 1000).toFixed(1) + " ms" : s.toFixed(2) + " s"; }
function fmtBytes(b) {
  if (!b) return "-";
  if (b < 1048576) return (b / 1024).toFixed(0) + " K";
  if (b < 1073741824) return (b / 1048576).toFixed(1) + " M";
  return (b / 1073741824).toFixed(1) + " G";
}
function fmtUptime(s) {
  if (typeof s !== "number") return "-";
  s = Math.floor(s);
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
  return Math.floor(s / 86400) + "d" + String(Math.floor(s / 3600) % 24).padStart(2, "0") + "h";
}

// A table row of text cells; cells are strings or [text, className].
function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    const [text, cls] = Array.isArray(c) ? c : [c, ""];
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  return tr;
}

function fill(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows);
}

// ---- the views ---------------------------------------------------------------

function render(snap) {
  const insts = [...last.values()].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  const services = new Map();
  const routes = new Map();
  const rows = [];
  for (const i of insts) {
    const d = delta(i, prev.get(key(i)));
    let s = services.get(i.name);
    if (!s) services.set(i.name, s = { n: 0, ready: 0, rated: 0, rps: 0, req: 0, e5: 0, hist: null, cpu: 0, rss: 0,
                                       bounds: i.buckets, calls: new Map(), events: new Map() });
    s.n++; if (i.ready) s.ready++;
    s.rss += i.rss_bytes || 0;
    if (d.known) {
      s.rated++; s.rps += d.rps; s.req += d.req; s.e5 += d.e5; s.cpu += d.cpu || 0;
      s.hist = addInto(s.hist, d.hist);
      for (const [kind, m] of [["calls", d.calls], ["events", d.events]])
        for (const [peer, c] of m) {
          const e = s[kind].get(peer) || { rps: 0, eps: 0 };
          e.rps += c.rps; e.eps += c.eps; s[kind].set(peer, e);
        }
      for (const [k, r] of d.routes) {
        const rk = i.name + "\u0000" + k;
        let a = routes.get(rk);
        if (!a) routes.set(rk, a = { service: i.name, method: r.method, route: r.route, rps: 0, e4: 0, e5: 0,
                                      req: 0, total: 0, hist: null, bounds: i.buckets });
        a.rps += r.rps; a.e4 += r.e4; a.e5 += r.e5; a.req += r.req; a.total += r.total;
        a.hist = addInto(a.hist, r.hist);
      }
    }
    const known = d.known;
    rows.push(row([i.name, i.id, i.version || "-", i.hostname || "-", (i.host || "-") + ":" + (i.http_port || "-"),
                   [fmtUptime(i.uptime_s), "n"],
                   i.ready ? ["ready", "ready"] : ["not ready" + (i.not_ready ? ": " + i.not_ready : ""), "notready"],
                   [fmtRate(d.rps, known), "n"], [known ? fmtPct(d.e5, d.req) : "-", d.e5 ? "n bad" : "n"],
                   [fmtMs(known ? quantile(d.hist, i.buckets, 0.5) : null), "n"],
                   [fmtMs(known ? quantile(d.hist, i.buckets, 0.99) : null), "n"],
                   [d.cpu == null ? "-" : d.cpu.toFixed(1), "n"], [fmtBytes(i.rss_bytes), "n"]]));
  }
  fill("instances", rows);
  fill("services", [...services].map(([name, s]) => row([
    name, [s.ready + "/" + s.n, s.ready === s.n ? "ready" : "notready"],
    [fmtRate(s.rps, s.rated), "n"], [fmtPct(s.e5, s.req), s.e5 ? "n bad" : "n"],
    [fmtMs(quantile(s.hist, s.bounds, 0.5)), "n"], [fmtMs(quantile(s.hist, s.bounds, 0.99)), "n"],
    [s.rated ? s.cpu.toFixed(1) : "-", "n"], [fmtBytes(s.rss), "n"]])));
  fill("routes", [...routes.values()]
    .filter(r => !BUILTIN.has(r.route))
    .sort((a, b) => a.service.localeCompare(b.service) || a.route.localeCompare(b.route))
    .map(r => row([r.service, r.method, r.route, [r.rps.toFixed(1), "n"], [r.e4.toFixed(0), "n"],
                   [fmtPct(r.e5, r.req), r.e5 ? "n bad" : "n"], [fmtMs(quantile(r.hist, r.bounds, 0.5)), "n"],
                   [fmtMs(quantile(r.hist, r.bounds, 0.99)), "n"], [String(r.total), "n"]])));
  drawMap(snap, services, routes);
  const n = insts.length;
  document.getElementById("summary").textContent =
    services.size + " services, " + n + " instances" + (snap.dropped ? ", " + snap.dropped + " answers dropped" : "") +
    " \u00b7 " + new Date(snap.time_ms || Date.now()).toLocaleTimeString();
  document.body.dataset.seq = String(snap.seq || 0);
  document.body.dataset.instances = String(n);
}

// The map: the gateway on the left, the services it routes to and the ones
// they call on the right; a solid arrow per route target and per RPC callee,
// a dashed one per event flow, from the publishing service to the consumer.
function drawMap(snap, services, routes) {
  const svg = document.getElementById("map");
  const NS = "http://www.w3.org/2000/svg";
  const gw = snap.gateway || "gateway";
  const names = new Set(services.keys());
  const table = (snap.routes && snap.routes.table) || [];
  for (const r of table) names.add(r.service);
  names.add(gw);
  const others = [...names].filter(n => n !== gw).sort();
  const perCol = 6, colW = 200, rowH = 56, nodeW = 150, nodeH = 34;
  const cols = Math.max(1, Math.ceil(others.length / perCol));
  const width = 60 + nodeW + 120 + cols * colW + 150, height = Math.max(3, Math.min(perCol, others.length)) * rowH + 40;
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  svg.style.height = Math.min(height, 600) + "px";
  const pos = new Map([[gw, { x: 20, y: height / 2 - nodeH / 2 }]]);
  others.forEach((n, k) => pos.set(n, { x: 60 + nodeW + 120 + Math.floor(k / perCol) * colW,
                                        y: 20 + (k % perCol) * rowH }));
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const a in attrs) e.setAttribute(a, String(attrs[a]));
    if (text != null) e.textContent = text;
    return e;
  };
  const kids = [];
  const defs = el("defs", {});
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6,
                                orient: "auto-start-reverse" });
  marker.appendChild(el("path", { d: "M 0 0 L 10 5 L 0 10 z" }));
  defs.appendChild(marker);
  kids.push(defs);
  const edges = new Map();
  const gwRoutes = new Map();
  for (const r of routes.values()) if (r.service === gw) gwRoutes.set(r.route, (gwRoutes.get(r.route) || 0) + r.rps);
  const gwErr = new Map();
  for (const r of routes.values()) if (r.service === gw) gwErr.set(r.route, (gwErr.get(r.route) || 0) + r.e5);
  for (const t of table) {
    const e = edges.get(gw + "\u0000" + t.service) || { from: gw, to: t.service, rps: 0, err: 0 };
    e.rps += gwRoutes.get(t.label) || 0;
    e.err += gwErr.get(t.label) || 0;
    edges.set(gw + "\u0000" + t.service, e);
  }
  // The gateway forwards with RPC calls too: for its edges those counts
  // (retries included) replace the route table's, rather than add to them.
  for (const [name, s] of services)
    for (const [to, c] of s.calls) {
      if (!pos.has(to)) continue;
      const k = name + "\u0000" + to;
      const e = edges.get(k) || { from: name, to, rps: 0, err: 0 };
      if (name === gw && edges.has(k)) e.rps = e.err = 0;
      e.rps += c.rps; e.err += c.eps;
      edges.set(k, e);
    }
  // Events: what each service consumed, by publisher ("unknown" and "other"
  // are no service of the map, so not drawn).
  for (const [name, s] of services)
    for (const [from, c] of s.events) {
      if (!pos.has(from)) continue;
      const k = "event\u0000" + from + "\u0000" + name;
      const e = edges.get(k) || { from, to: name, rps: 0, err: 0, event: true };
      e.rps += c.rps; e.err += c.eps;
      edges.set(k, e);
    }
  for (const e of edges.values()) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b || a === b) continue;
    let x1 = a.x + nodeW, y1 = a.y + nodeH / 2, x2 = b.x, y2 = b.y + nodeH / 2, d;
    if (b.x > a.x) {
      const mx = (x1 + x2) / 2;
      d = "M " + x1 + " " + y1 + " C " + mx + " " + y1 + ", " + mx + " " + y2 + ", " + x2 + " " + y2;
    } else {   // between services in one column: a bow on the right, wider for events (more going up)
      x1 = a.x + nodeW; x2 = b.x + nodeW;
      const bx = Math.max(x1, x2) + (e.event ? (b.y > a.y ? 80 : 110) : 50);
      d = "M " + x1 + " " + y1 + " C " + bx + " " + y1 + ", " + bx + " " + y2 + ", " + x2 + " " + y2;
    }
    kids.push(el("path", { d, class: "edge" + (e.event ? " event" : "") + (e.err > 0 ? " err" : ""),
                           "marker-end": "url(#arrow)", "data-from": e.from, "data-to": e.to }));
    // A label at the middle of its arrow; an event bow's just right of its
    // apex (below the middle going down), clear of the RPC bow's label.
    const side = b.x <= a.x && e.event, down = b.y > a.y;
    kids.push(el("text", { x: (x1 + x2) / 2 + (b.x > a.x ? 0 : side ? (down ? 64 : 86) : 40),
                           y: (y1 + y2) / 2 + (side && down ? 12 : -4), class: "elabel" + (e.event ? " event" : ""),
                           "text-anchor": side ? "start" : "middle" }, e.rps.toFixed(1) + (e.event ? " ev/s" : "/s")));
  }
  for (const [name, p] of pos) {
    const s = services.get(name);
    const g = el("g", { class: "node" + (!s || s.ready < s.n ? " down" : "") });
    g.appendChild(el("rect", { x: p.x, y: p.y, width: nodeW, height: nodeH, rx: 5 }));
    g.appendChild(el("text", { x: p.x + 8, y: p.y + 14 }, name.length > 20 ? name.slice(0, 19) + "\u2026" : name));
    g.appendChild(el("text", { x: p.x + 8, y: p.y + 28, class: "elabel" },
                     s ? s.ready + "/" + s.n + " ready \u00b7 " + fmtRate(s.rps, s.rated) + " req/s" : "no instance"));
    kids.push(g);
  }
  svg.replaceChildren(...kids);
}

// ---- traces: /dashboard/traces lists, /dashboard/traces/<id> spans ----------------

function traceItem(t) {
  const li = document.createElement("li");
  li.textContent = (t.service || "?") + " " + (t.name || "") + " \u00b7 " + fmtMs((t.duration_ms || 0) / 1000) +
                   (t.error ? " \u00b7 error" : "");
  if (t.error) li.className = "bad";
  li.addEventListener("click", () => openTrace(String(t.trace_id || "")));
  return li;
}

async function loadTraces() {
  try {
    const r = await fetch("/dashboard/traces", { credentials: "same-origin" });
    if (!r.ok) return;
    const t = await r.json();
    const recent = Array.isArray(t.recent) ? t.recent : [], slowest = Array.isArray(t.slowest) ? t.slowest : [];
    document.getElementById("traces-recent").replaceChildren(...recent.map(traceItem));
    document.getElementById("traces-slowest").replaceChildren(...slowest.map(traceItem));
    document.getElementById("traces-empty").textContent = recent.length || slowest.length ? "" :
      t.enabled ? "No traces yet." : "No traces: tracing is not enabled on this gateway.";
  } catch (e) { /* the next poll tries again */ }
}

async function openTrace(id) {
  if (!/^[0-9a-f]{32}$/.test(id)) return;
  const r = await fetch("/dashboard/traces/" + id, { credentials: "same-origin" });
  if (!r.ok) return;
  const t = await r.json();
  const spans = Array.isArray(t.spans) ? t.spans : [];
  if (!spans.length) return;
  const start = Math.min(...spans.map(s => s.start_us || 0));
  const end = Math.max(...spans.map(s => (s.start_us || 0) + (s.duration_us || 0)));
  const total = Math.max(1, end - start);
  // Depth-first from the roots, children in start order.
  const kids = new Map();
  for (const s of spans) {
    const p = s.parent_id || "";
    if (!kids.has(p)) kids.set(p, []);
    kids.get(p).push(s);
  }
  for (const l of kids.values()) l.sort((a, b) => (a.start_us || 0) - (b.start_us || 0));
  const ids = new Set(spans.map(s => s.span_id));
  const order = [];
  const walk = (s, depth) => {
    if (order.length > 2000) return;
    order.push([s, depth]);
    for (const c of kids.get(s.span_id) || []) walk(c, depth + 1);
  };
  for (const s of spans) if (!s.parent_id || !ids.has(s.parent_id)) walk(s, 0);
  const rows = order.map(([s, depth]) => {
    const r = document.createElement("div");
    r.className = "row";
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = "\u00a0".repeat(depth * 2) + (s.service || "?") + " " + (s.name || "");
    name.title = name.textContent + " \u00b7 " + fmtMs((s.duration_us || 0) / 1e6);
    const track = document.createElement("div");
    track.className = "track";
    const bar = document.createElement("div");
    bar.className = "bar" + (s.error ? " error" : "");
    bar.style.left = (100 * ((s.start_us || 0) - start) / total) + "%";
    bar.style.width = (100 * (s.duration_us || 0) / total) + "%";
    track.appendChild(bar);
    r.append(name, track);
    return r;
  });
  document.getElementById("waterfall-title").textContent = "trace " + id + " \u00b7 " + fmtMs(total / 1e6);
  document.getElementById("waterfall-rows").replaceChildren(...rows);
  document.getElementById("waterfall").hidden = false;
}

// ---- live data ------------------------------------------------------------------

function take(snap) {
  if (!snap || typeof snap.seq !== "number" || snap.seq <= snapshotSeq && snap.seq !== 0) return;
  snapshotSeq = snap.seq;
  const seen = new Set();
  for (const i of Array.isArray(snap.instances) ? snap.instances : []) {
    if (typeof i.name !== "string" || typeof i.id !== "string") continue;
    const k = key(i);
    seen.add(k);
    const old = last.get(k);
    if (old && old.now_ms !== i.now_ms) prev.set(k, old);
    last.set(k, i);
  }
  for (const k of [...last.keys()]) if (!seen.has(k)) { last.delete(k); prev.delete(k); }
  render(snap);
}

function connect() {
  const conn = document.getElementById("conn");
  const es = new EventSource("/dashboard/events");
  es.addEventListener("open", () => { conn.textContent = "live"; conn.className = "badge on"; });
  es.addEventListener("error", () => { conn.textContent = "reconnecting"; conn.className = "badge off"; });
  es.addEventListener("snapshot", ev => {
    try { take(JSON.parse(ev.data)); } catch (e) { /* a malformed event is skipped */ }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  fetch("/dashboard/snapshot", { credentials: "same-origin" })
    .then(r => r.ok ? r.json() : null).then(take).catch(() => {});
  connect();
  loadTraces();
  setInterval(loadTraces, 5000);
});
