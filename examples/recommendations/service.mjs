// recommendations: "products often bought together", a service in Node.js
// that joins a svckit system with nothing but the official NATS client
// (nats.js 2). Every convention it follows is in docs/messaging.md,
// "Writing a service in another language"; README.md beside this file says
// how to run it.
//
//   GET /recommendations/{product_id}?limit=N   the products most often in
//                                               the same orders
//   GET /healthz, /readyz, /metrics, /openapi.json
//
// served over NATS on svckit's subjects (svc.recommendations.http, the
// instance's own, one per route) and over HTTP on PORT; discovery by the
// NATS services protocol ($SRV.PING/INFO/STATS) plus svckit's $SRV.LIVE and
// svckit.trace; the orders come from JetStream (stream SHOP, subject
// orders.created) through a durable consumer.
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { AckPolicy, DeliverPolicy, Match, connect, headers as natsHeaders, nanos, nkeyAuthenticator } from "nats";
import { DEFAULT_LIMIT, MAX_LIMIT, Together, parseOrder, productId } from "./together.mjs";

const NAME = "recommendations";
const VERSION = "0.1.0";
const STREAM = "SHOP";                 // services/saga.h: SAGA_STREAM
const SUBJECT = "orders.created";
const DURABLE = process.env.RECOMMENDATIONS_DURABLE || "recommendations";
const ACK_WAIT_MS = 30000;
const TRACE_RING = 1024;               // spans kept for svckit.trace
const TRACE_MAX_QUERY = 1024;          // bytes of a svckit.trace question
const TRACE_MAX_LIMIT = 256;
const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

// ---- configuration: svckit's variables (DESIGN.md, "Environment") --------

function fail(variable, why) {
  console.error(`${NAME}: ${variable}: ${why}`);
  process.exit(2);
}
const PORT = Number(process.env.PORT || 8085);
if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) fail("PORT", "must be 0-65535");
const HOST = process.env.HOST || "0.0.0.0";
const NATS_URL = process.env.NATS_URL || "nats://127.0.0.1:4222";
const DATA_DIR = process.env.DATA_DIR || "./var";
const LOG_LEVELS = { debug: 0, info: 1, warn: 2, error: 3 };
const LOG_LEVEL = process.env.LOG_LEVEL || "info";
if (!(LOG_LEVEL in LOG_LEVELS)) fail("LOG_LEVEL", "must be debug, info, warn or error");

// NATS_URL may name several servers and carry user:password (nats.js wants
// them apart, and never in a log line).
let servers, user, pass;
try {
  const urls = NATS_URL.split(",").map((u) => new URL(u.trim()));
  for (const u of urls) if (u.protocol !== "nats:") throw new Error(`${u.protocol} is not nats:`);
  servers = urls.map((u) => `${u.hostname}:${u.port || 4222}`);
  user = decodeURIComponent(urls[0].username) || undefined;
  pass = decodeURIComponent(urls[0].password) || undefined;
} catch (e) {
  fail("NATS_URL", `not a list of nats:// URLs (${e.message})`);
}
// NATS_NKEY_SEED_FILE: sign in with an NKEY user's seed (SU...), as svckit's
// services do (make run, compose and Kubernetes ship NKEY users); the file
// must be the process's own (no access for group or others).
let authenticator;
const SEED_FILE = process.env.NATS_NKEY_SEED_FILE;
if (SEED_FILE) {
  let seed;
  try {
    if (fs.statSync(SEED_FILE).mode & 0o077) throw new Error("group or others may read it: chmod 600");
    seed = fs.readFileSync(SEED_FILE, "utf8").trim();
  } catch (e) {
    fail("NATS_NKEY_SEED_FILE", `${SEED_FILE}: ${e.message}`);
  }
  if (!/^SU[A-Z2-7]{56}$/.test(seed)) fail("NATS_NKEY_SEED_FILE", `${SEED_FILE} holds no NKEY user seed (SU...)`);
  authenticator = nkeyAuthenticator(new TextEncoder().encode(seed));
}

// ---- logs: one line per event, as svckit's (docs/observability.md) -----
// JSON, or text for a person (LOG_FORMAT=text; unset: text on a terminal),
// without the service's name under `svckit run` (SVCKIT_PROCESS set), whose
// prefix names the process.

const LOG_FORMAT = process.env.LOG_FORMAT || (process.stdout.isTTY ? "text" : "json");
if (LOG_FORMAT !== "json" && LOG_FORMAT !== "text") fail("LOG_FORMAT", "must be json or text");
const LOG_NAME = process.env.SVCKIT_PROCESS ? "" : `${NAME} `;

function log(level, msg, fields = {}) {
  if (LOG_LEVELS[level] < LOG_LEVELS[LOG_LEVEL]) return;
  const time = new Date().toISOString();
  if (LOG_FORMAT === "json") {
    process.stdout.write(JSON.stringify({ time, level, service: NAME, msg, ...fields }) + "\n");
    return;
  }
  // Scrubbed: a path cannot move a terminal's cursor or forge a line.
  const clean = (v) => String(v).replace(/[\x00-\x1f\x7f-\x9f]/g, "?");
  const what = msg === "request"
    ? `${fields.method.padEnd(7)} ${clean(fields.path).padEnd(23)} ${String(fields.status).padEnd(6)} ${fields.duration_ms.toFixed(2)}ms`
    : clean(msg);
  const trace = fields.trace_id ? `  trace=${fields.trace_id}` : "";
  process.stdout.write(`${time.slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${LOG_NAME}${what}${trace}\n`);
}

// ---- traces: W3C traceparent in, spans kept for svckit.trace ------------

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;
const hex = (n) => crypto.randomBytes(n).toString("hex");
const spans = [];
let spanNext = 0;

// The caller's trace (its id and the parent span), or a new one; a malformed
// or all-zero value starts a new trace, as svckit does.
function traceOf(value) {
  const m = typeof value === "string" ? TRACEPARENT.exec(value) : null;
  if (m && !/^0+$/.test(m[1]) && !/^0+$/.test(m[2])) return { trace_id: m[1], parent_id: m[2] };
  return { trace_id: hex(16) };
}

function spanBegin(trace, kind, name) {
  return { ...trace, span_id: hex(8), kind, name, start: process.hrtime.bigint(), start_ns: BigInt(Date.now()) * 1000000n };
}

function spanEnd(s, fields) {
  const duration_ns = Number(process.hrtime.bigint() - s.start);
  const { start, ...rest } = s;
  spans[spanNext++ % TRACE_RING] = { ...rest, start_ns: Number(s.start_ns), duration_ns, ...fields };
}

// svckit.trace question: empty, or {"trace_id", "limit", "slowest"}.
function traceQuery(data) {
  if (data.length > TRACE_MAX_QUERY) throw new Error(`query over ${TRACE_MAX_QUERY} bytes`);
  const q = data.length ? JSON.parse(new TextDecoder().decode(data)) : {};
  if (!q || typeof q !== "object" || Array.isArray(q)) throw new Error("query must be a JSON object");
  if (q.trace_id !== undefined && !/^[0-9a-f]{32}$/.test(q.trace_id)) throw new Error("trace_id must be 32 lowercase hex digits");
  const limit = q.limit === undefined ? 100 : q.limit;
  if (!Number.isInteger(limit) || limit < 1 || limit > TRACE_MAX_LIMIT) throw new Error(`limit must be 1-${TRACE_MAX_LIMIT}`);
  let out = [];
  for (let i = 1; i <= Math.min(spanNext, TRACE_RING); i++) out.push(spans[(spanNext - i) % TRACE_RING]);
  if (q.trace_id) out = out.filter((s) => s.trace_id === q.trace_id);
  if (q.slowest) out = out.filter((s) => s.kind === "server").sort((a, b) => b.duration_ns - a.duration_ns);
  return out.slice(0, limit);
}

// ---- metrics: enough for /metrics and $SRV.LIVE -------------------------

const routeStats = new Map();   // "METHOD route" -> {requests, e4xx, e5xx, sum, buckets[]}
const events = { calls: 0, errors: 0 };

function countRequest(method, route, status, seconds) {
  const key = `${method} ${route}`;
  let r = routeStats.get(key);
  if (!r) routeStats.set(key, (r = { method, route, codes: new Map(), requests: 0, e4xx: 0, e5xx: 0, sum: 0, buckets: Array(BUCKETS.length + 1).fill(0) }));
  r.requests++;
  r.codes.set(status, (r.codes.get(status) || 0) + 1);
  if (status >= 500) r.e5xx++;
  else if (status >= 400) r.e4xx++;
  r.sum += seconds;
  const b = BUCKETS.findIndex((le) => seconds <= le);
  r.buckets[b < 0 ? BUCKETS.length : b]++;
}

function metricsText() {
  const out = ["# TYPE http_requests_total counter"];
  for (const r of routeStats.values())
    for (const [code, n] of r.codes)
      out.push(`http_requests_total{service="${NAME}",route="${r.route}",method="${r.method}",code="${code}"} ${n}`);
  out.push("# TYPE http_request_duration_seconds histogram");
  for (const r of routeStats.values()) {
    const l = `service="${NAME}",route="${r.route}",method="${r.method}"`;
    let acc = 0;
    BUCKETS.forEach((le, i) => out.push(`http_request_duration_seconds_bucket{${l},le="${le}"} ${(acc += r.buckets[i])}`));
    out.push(`http_request_duration_seconds_bucket{${l},le="+Inf"} ${r.requests}`);
    out.push(`http_request_duration_seconds_sum{${l}} ${r.sum}`, `http_request_duration_seconds_count{${l}} ${r.requests}`);
  }
  out.push("# TYPE events_consumed_total counter",
    `events_consumed_total{service="${NAME}",source="orders",subject="${SUBJECT}",outcome="ok"} ${events.calls - events.errors}`,
    `events_consumed_total{service="${NAME}",source="orders",subject="${SUBJECT}",outcome="error"} ${events.errors}`,
    "# TYPE process_resident_memory_bytes gauge", `process_resident_memory_bytes ${process.memoryUsage().rss}`);
  return out.join("\n") + "\n";
}

// ---- the routes: one dispatcher for both transports ---------------------

const together = new Together(path.join(DATA_DIR, "recommendations.json"));
let nc = null, connected = false, consuming = false, draining = false;

function json(status, doc, extra = {}) {
  return { status, headers: { "Content-Type": "application/json", ...extra }, body: JSON.stringify(doc) };
}
function error(status, code, message, extra) {
  return json(status, { error: { code, message } }, extra);
}
function notReady() {
  if (draining) return "shutting down";
  if (!connected) return "nats: not connected";
  if (!consuming) return `jetstream: consumer ${DURABLE} on ${STREAM} not bound yet`;
  return null;
}

const OPENAPI = {
  openapi: "3.1.0",
  info: { title: NAME, version: VERSION },
  paths: {
    "/recommendations/{product_id}": {
      get: {
        operationId: "getRecommendations",
        summary: "Products most often in the same orders as this one",
        parameters: [
          { name: "product_id", in: "path", required: true, schema: { type: "integer", minimum: 1 } },
          { name: "limit", in: "query", required: false, schema: { type: "integer", minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT } },
        ],
        responses: {
          200: { description: "The products, most orders first" },
          400: { description: "A bad product id or limit", content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } },
        },
      },
    },
  },
  components: {
    schemas: {
      Error: {
        type: "object", required: ["error"],
        properties: { error: { type: "object", required: ["code", "message"], properties: { code: { type: "string" }, message: { type: "string" } } } },
      },
    },
  },
};

// Routes: [method, template, handler(params, query)]. A template's `:name`
// segment matches one path segment, as svckit's router does.
const ROUTES = [
  ["GET", "/healthz", () => json(200, { status: "ok" })],
  ["GET", "/readyz", () => {
    const why = notReady();
    return why ? error(503, "unavailable", why) : json(200, { status: "ready" });
  }],
  ["GET", "/metrics", () => ({ status: 200, headers: { "Content-Type": "text/plain; version=0.0.4" }, body: metricsText() })],
  ["GET", "/openapi.json", () => json(200, OPENAPI)],
  ["GET", "/recommendations/:product_id", (params, query) => {
    const raw = params.product_id;
    const id = /^[0-9]{1,16}$/.test(raw) ? productId(Number(raw)) : null;
    if (!id) return error(400, "bad_request", "product_id must be a positive integer");
    const limits = query.getAll("limit");
    if (limits.length > 1) return error(400, "bad_request", "limit given more than once");
    let limit = DEFAULT_LIMIT;
    if (limits.length) {
      limit = /^[0-9]{1,3}$/.test(limits[0]) ? Number(limits[0]) : 0;
      if (limit < 1 || limit > MAX_LIMIT) return error(400, "bad_request", `limit must be 1-${MAX_LIMIT}`);
    }
    return json(200, together.recommend(id, limit));
  }],
];

function match(template, pathname) {
  const t = template.split("/"), p = pathname.split("/");
  if (t.length !== p.length) return null;
  const params = {};
  for (let i = 0; i < t.length; i++) {
    if (t[i].startsWith(":")) {
      if (!p[i]) return null;
      try {
        params[t[i].slice(1)] = decodeURIComponent(p[i]);
      } catch {
        return null;
      }
    } else if (t[i] !== p[i]) return null;
  }
  return params;
}

// -> {route, res}: route is the template matched ("unmatched" when none),
// res {status, headers, body}.
function dispatch(method, pathname, rawQuery) {
  const allowed = [];
  for (const [m, template, fn] of ROUTES) {
    const params = match(template, pathname);
    if (!params) continue;
    if (m === method || (m === "GET" && method === "HEAD")) {
      const res = fn(params, new URLSearchParams(rawQuery));
      if (method === "HEAD") res.body = "";
      return { route: template, res };
    }
    allowed.push(m);
  }
  if (allowed.length)
    return { route: "unmatched", res: error(405, "method_not_allowed", `method ${method} not allowed here`, { Allow: allowed.join(", ") }) };
  return { route: "unmatched", res: error(404, "not_found", "no such resource") };
}

// Probes leave no span and no log line, as svckit's.
const PROBES = ["/healthz", "/readyz", "/metrics"];
// Metric labels come from fixed sets: a made-up method counts as "other".
const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
// A caller's X-Request-Id is kept when it looks sane, else one is made.
const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

// One request of either transport: dispatch, then the access line and the
// server span, with the caller's trace id (or a new one).
function serve(transport, method, pathname, rawQuery, hdr) {
  const trace = traceOf(hdr("traceparent"));
  const given = hdr("x-request-id");
  const requestId = REQUEST_ID.test(given || "") ? given : `${hex(8)}-${hex(4)}`;
  const started = process.hrtime.bigint();
  const span = spanBegin(trace, "server", "");
  const { route, res } = dispatch(method, pathname, rawQuery);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  countRequest(METHODS.includes(method) ? method : "other", route, res.status, seconds);
  res.headers["X-Request-Id"] = requestId;
  if (!PROBES.includes(route)) {
    spanEnd(span, { name: `${method} ${route}`, status: res.status, error: res.status >= 500, route });
    log("info", "request", {
      method, path: pathname, route, status: res.status, duration_ms: Math.round(seconds * 1e5) / 100,
      request_id: requestId, trace_id: trace.trace_id, transport,
    });
  }
  return res;
}

// ---- HTTP ----------------------------------------------------------------

const server = http.createServer((req, rsp) => {
  let u;
  try {
    u = new URL(req.url, "http://x");
  } catch {
    u = null;
  }
  const res = u && req.url.startsWith("/")
    ? serve("http", req.method, u.pathname, u.search.slice(1), (n) => req.headers[n])
    : error(400, "bad_request", "the request target must be an absolute path");
  rsp.writeHead(res.status, res.headers);
  rsp.end(res.body);
});

// ---- NATS: request-reply on svckit's subjects ----------------------------

const SVC_METHOD = /^[A-Z]{1,16}$/;
// What svckit accepts in Svc-Path: normalised, percent-encoded RFC 3986
// path characters (docs/messaging.md, "Request and reply").
const SVC_PATH = /^(\/[A-Za-z0-9\-._~!$&'()*+,;=:@%]*)+$/;

function reply(msg, instanceId, res) {
  const h = natsHeaders();
  h.set("Svc-Status", String(res.status));
  h.set("Svc-Instance", instanceId);
  for (const [k, v] of Object.entries(res.headers)) h.set(k, v);
  if (res.status >= 400) {
    // ADR-32: the official clients' ServiceError reads these two.
    let message = "";
    try {
      message = JSON.parse(res.body).error.message;
    } catch { /* no JSON error body: the reason phrase */ }
    h.set("Nats-Service-Error", (message || http.STATUS_CODES[res.status] || "error").replace(/[\x00-\x1f\x7f]/g, " ").slice(0, 256));
    h.set("Nats-Service-Error-Code", String(res.status));
  }
  msg.respond(res.body, { headers: h });
}

// A request on svc.<name>.http, the instance's subject, or a route's
// subject (then Svc-Method defaults to the route's).
function onRequest(instanceId, routeMethod) {
  return (err, msg) => {
    if (err) return log("error", `nats: ${err.message}`);
    const one = (name) => {
      const v = msg.headers ? msg.headers.values(name, Match.IgnoreCase) : [];
      if (v.length > 1) throw new Error(`${name} given more than once`);
      return v[0];
    };
    let method, pathname, query;
    try {
      method = one("Svc-Method") || routeMethod;
      pathname = one("Svc-Path");
      query = one("Svc-Query") || "";
      const deadline = one("Svc-Deadline");
      if (deadline && Number(deadline) < Date.now()) return;   // the caller gave up: drop, as svckit does
      if (!method || !SVC_METHOD.test(method)) throw new Error("Svc-Method must be 1-16 upper-case letters");
      if (!pathname || !SVC_PATH.test(pathname) || /\/\.\.?(\/|$)|\/\/|%2f|%00/i.test(pathname))
        throw new Error("Svc-Path must be a normalised absolute path");
      if (routeMethod && method !== routeMethod && !(routeMethod === "GET" && method === "HEAD"))
        return reply(msg, instanceId, error(405, "method_not_allowed", `method ${method} not allowed here`));
    } catch (e) {
      return reply(msg, instanceId, error(400, "bad_request", e.message));
    }
    const hdr = (n) => (msg.headers ? msg.headers.get(n, Match.IgnoreCase) : "") || undefined;
    reply(msg, instanceId, serve("nats", method, pathname, query, hdr));
  };
}

// Route subjects: svc.<service>.<METHOD>.<segments>, `:x` as `{x}`.
function routeSubject(method, template) {
  const segs = template.split("/").filter(Boolean).map((s) => (s.startsWith(":") ? `{${s.slice(1)}}` : s));
  return [`svc.${NAME}`, method, ...segs].join(".");
}
const endpointName = (method, template) => [method, ...template.split("/").filter(Boolean)].join("-").replace(/[:.]/g, "_");

function pingDoc(srv, type) {
  const info = srv.info();
  return { type, name: info.name, id: info.id, version: info.version, metadata: info.metadata };
}

function liveDoc(srv, started) {
  const cpu = process.cpuUsage();
  const why = notReady();
  return {
    ...pingDoc(srv, "io.svckit.v1.live_response"),
    started: new Date(started).toISOString(), now_ms: Date.now(), uptime_s: (Date.now() - started) / 1000,
    ready: !why, ...(why ? { not_ready: why } : {}),
    cpu_seconds: (cpu.user + cpu.system) / 1e6, rss_bytes: process.memoryUsage().rss, in_flight: 0, connections: 0,
    buckets: BUCKETS,
    routes: [...routeStats.values()].map((r) => ({
      route: r.route, method: r.method, requests: r.requests, errors_4xx: r.e4xx, errors_5xx: r.e5xx,
      duration_sum: r.sum, duration_buckets: r.buckets,
    })),
    calls: [{ from: "orders", kind: "event", calls: events.calls, errors: events.errors }],
    truncated: false,
  };
}

// Subscribes fn to each subject (no queue group: every instance answers).
function answerAll(subjects, fn) {
  for (const s of subjects)
    nc.subscribe(s, { callback: (err, msg) => { if (!err) fn(msg); } });
}

// ---- JetStream: the order events ------------------------------------------

async function consumeOrders() {
  const jsm = await nc.jetstreamManager({ checkAPI: false });
  for (;;) {
    try {
      await jsm.consumers.add(STREAM, {
        durable_name: DURABLE, filter_subject: SUBJECT, ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All, ack_wait: nanos(ACK_WAIT_MS),
      });
      break;
    } catch (e) {
      // The stream is the shop's: orders, products and payments declare it.
      log("warn", `jetstream: cannot bind ${DURABLE} on ${STREAM} yet (${e.message}); trying again`);
      await new Promise((r) => setTimeout(r, 1000));
      if (draining) return;
    }
  }
  const consumer = await nc.jetstream().consumers.get(STREAM, DURABLE);
  const messages = await consumer.consume({ max_messages: 64 });
  consuming = true;
  log("info", `jetstream: consuming ${SUBJECT} from ${STREAM} as ${DURABLE}`);
  // Acked only once the counts are on disk (a crash before redelivers),
  // in batches: what arrived together is saved once.
  let unsaved = [];
  const flush = async () => {
    const batch = unsaved;
    unsaved = [];
    together.save();
    const acked = await Promise.all(batch.map((m) => m.ackAck().catch(() => false)));
    batch.forEach((m, i) => acked[i] && together.confirmed(m.seq));
  };
  for await (const m of messages) {
    const span = spanBegin(traceOf(m.headers?.get("traceparent", Match.IgnoreCase)), "consumer", `consume ${m.subject}`);
    const order = parseOrder(m.data);
    events.calls++;
    if (order.error) {
      // Never valid, so never worth a redelivery: terminated.
      events.errors++;
      log("warn", `dropped ${m.subject} (stream seq ${m.seq}): ${order.error}`, { trace_id: span.trace_id });
      m.term();
    } else {
      const counted = together.apply(m.seq, order.products);
      log("debug", `order ${order.order} ${counted ? "counted" : "seen before"}`, { trace_id: span.trace_id });
      if (unsaved.push(m) === 1) setImmediate(flush);
    }
    spanEnd(span, { subject: m.subject, error: !!order.error });
  }
  if (!draining) throw new Error(`the consumer ${DURABLE} stopped`);
}

// ---- start and stop --------------------------------------------------------

async function main() {
  const started = Date.now();
  await new Promise((resolve, reject) => server.once("error", reject).listen(PORT, HOST, resolve));
  const port = server.address().port;
  nc = await connect({
    servers, user, pass, authenticator, name: NAME, inboxPrefix: `_INBOX.${NAME}`,
    maxReconnectAttempts: -1, reconnectTimeWait: 250, waitOnFirstConnect: true,
  });
  connected = true;
  log("info", `listening on ${HOST}:${port}, nats ${servers.join(",")}`);
  (async () => {
    // Reconnections, and what the server refuses (a permission it lacks).
    for await (const s of nc.status()) {
      if (s.type === "pingTimer") continue;
      if (s.type === "disconnect" || s.type === "reconnect") connected = s.type === "reconnect";
      log(s.type === "error" || s.type === "disconnect" ? "warn" : "info", `nats: ${s.type} ${s.data}`);
    }
  })();
  const hostname = os.hostname();
  const srv = await nc.services.add({
    name: NAME, version: VERSION, description: `svckit service ${NAME} (Node.js)`, queue: NAME,
    metadata: {
      transport: "http+nats", host: HOST === "0.0.0.0" || HOST === "::" ? hostname : HOST,
      hostname, http_port: String(port), revision: VERSION,
    },
  });
  const id = srv.info().id;
  for (const [m, template] of ROUTES)
    srv.addEndpoint(endpointName(m, template), {
      subject: routeSubject(m, template), handler: onRequest(id, m), metadata: { method: m, path: template },
    });
  srv.addEndpoint("http", { subject: `svc.${NAME}.http`, handler: onRequest(id, null), metadata: { method: "*", path: "*" } });
  srv.addEndpoint("instance", {
    subject: `svc.${NAME}.${id}.http`, queue: id, handler: onRequest(id, null), metadata: { method: "*", path: "*" },
  });
  answerAll(["$SRV.LIVE", `$SRV.LIVE.${NAME}`, `$SRV.LIVE.${NAME}.${id}`], (msg) => msg.respond(JSON.stringify(liveDoc(srv, started))));
  answerAll(["svckit.trace", `svckit.trace.${NAME}`, `svckit.trace.${NAME}.${id}`], (msg) => {
    try {
      msg.respond(JSON.stringify({ service: NAME, instance: id, spans: traceQuery(msg.data) }));
    } catch (e) {
      reply(msg, id, error(400, "bad_request", e.message));
    }
  });
  log("info", `instance ${id} answers on svc.${NAME}.http`);

  let stopping = false;
  const stop = async (sig) => {
    if (stopping) return;
    stopping = true;
    draining = true;
    log("info", `${sig}: leaving`);
    // The leave notice first, so the gateway sends nothing new here.
    nc.publish(`$SRV.LEAVE.${NAME}.${id}`, JSON.stringify(pingDoc(srv, "io.svckit.v1.leave_notice")));
    server.close();
    await srv.stop().catch(() => {});
    await nc.drain().catch(() => {});
    process.exit(0);
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  consumeOrders().catch((e) => {
    log("error", `jetstream: ${e.message}`);
    process.exit(1);
  });
}

main().catch((e) => {
  log("error", e.message);
  process.exit(1);
});
