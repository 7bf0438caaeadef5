// The svckit API explorer: reads the gateway's merged /openapi.json, lists
// every operation grouped by service (the tag the gateway gives each one),
// and sends the request a person fills in to this gateway with fetch,
// showing the status, headers and body of the answer.
//
// The bearer token lives in this tab only (sessionStorage) and goes with
// every request the page sends, as Authorization. The page's requests carry
// no cookie (credentials "omit"), so an answer shows what that token may do,
// not what a login cookie of the browser may. The document came from the
// services over NATS and may be hostile: its strings reach the page only
// through textContent, never as markup, and a request goes only to this
// origin.
"use strict";

const TOKEN_KEY = "svckit.docs.token";
const SHOWN_MAX = 1 << 20;                               // characters of an answer's body shown
const METHODS = ["get", "post", "put", "patch", "delete"]; // their order under a path
const EXAMPLE_DEPTH = 8;                                 // levels of a body example

const $ = id => document.getElementById(id);
let operations = []; // {method, path, op, tag}, in the document's order
let current = null;  // the operation picked
let answerToken = null;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

const str = v => typeof v === "string" ? v : "";
const obj = v => v && typeof v === "object" && !Array.isArray(v) ? v : null;

// ---- the document ---------------------------------------------------------

async function load() {
  $("summary").textContent = "loading /openapi.json\u2026";
  let doc;
  try {
    const r = await fetch("/openapi.json", { credentials: "omit", cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    doc = obj(await r.json()) || {};
  } catch (e) {
    $("summary").textContent = "cannot read /openapi.json: " + e.message;
    $("summary").classList.add("bad");
    return;
  }
  operations = [];
  for (const [path, item] of Object.entries(obj(doc.paths) || {})) {
    for (const method of METHODS) {
      const op = obj(obj(item) && item[method]);
      if (!op) continue;
      const tag = Array.isArray(op.tags) && str(op.tags[0]) || path.split("/")[1] || "/";
      operations.push({ method, path, op, tag });
    }
  }
  const missing = (Array.isArray(doc["x-svckit-unavailable"]) ? doc["x-svckit-unavailable"] : []).filter(str);
  $("summary").textContent = operations.length + " endpoints" +
    (missing.length ? "; not answering, so not listed: " + missing.join(", ") : "");
  $("summary").classList.toggle("bad", missing.length > 0);
  const wanted = decodeURIComponent(location.hash.slice(1));
  const found = operations.find(o => key(o) === wanted);
  if (found) pick(found);
  else list();
}

function key(o) { return o.method.toUpperCase() + " " + o.path; }

function list() {
  const words = $("filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  const groups = new Map();
  for (const o of operations) {
    const text = (key(o) + " " + str(o.op.summary)).toLowerCase();
    if (!words.every(w => text.includes(w))) continue;
    if (!groups.has(o.tag)) groups.set(o.tag, []);
    groups.get(o.tag).push(o);
  }
  const box = $("endpoints");
  box.replaceChildren();
  for (const [tag, ops] of groups) {
    const g = el("section", "group");
    g.append(el("h2", null, tag));
    for (const o of ops) {
      const b = el("button", "endpoint" + (o === current ? " on" : ""));
      b.type = "button";
      b.dataset.method = o.method.toUpperCase();
      b.dataset.path = o.path;
      b.append(el("span", "method " + o.method, o.method.toUpperCase()), el("span", "path", o.path));
      if (str(o.op.summary)) b.append(el("span", "summary", o.op.summary));
      b.addEventListener("click", () => pick(o));
      g.append(b);
    }
    box.append(g);
  }
  if (!groups.size) box.append(el("p", "muted", operations.length ? "nothing matches" : "no endpoints"));
}

// ---- one operation --------------------------------------------------------

function pick(o) {
  current = o;
  history.replaceState(null, "", "#" + encodeURIComponent(key(o)));
  list();
  $("pick").hidden = true;
  $("op").hidden = false;
  $("response").hidden = true;
  $("problem").textContent = "";
  $("op-method").textContent = o.method.toUpperCase();
  $("op-method").className = "method " + o.method;
  $("op-path").textContent = o.path;
  $("op-summary").textContent = [str(o.op.summary), str(o.op.description)].filter(Boolean).join(": ");
  const secured = Array.isArray(o.op.security) && o.op.security.length > 0;
  $("op-auth").textContent = secured ? "Needs a bearer token." : "Needs no token.";
  form(o);
  const content = obj(obj(obj(o.op.requestBody) && o.op.requestBody.content) && o.op.requestBody.content["application/json"]);
  const schema = content && obj(content.schema);
  $("body-box").hidden = !content;
  $("body").value = content ? JSON.stringify(example(schema, 0), null, 2) : "";
  $("body-schema").textContent = schema ? JSON.stringify(schema, null, 2) : "";
  const answers = $("op-responses");
  answers.replaceChildren();
  for (const [status, r] of Object.entries(obj(o.op.responses) || {}))
    answers.append(el("li", null, status + " " + str(obj(r) && r.description)));
  if (matchMedia("(max-width: 48rem)").matches) $("operation").scrollIntoView(); // one column: the form is below
}

// A value the schema takes, where that is simple to find: enums' first,
// numbers within bounds, strings of a fitting length, the required
// properties of an object (every writable one when none is required).
function example(s, depth) {
  if (!s || depth > EXAMPLE_DEPTH) return null;
  if (Array.isArray(s.enum) && s.enum.length) return s.enum[0];
  const num = v => typeof v === "number";
  switch (s.type) {
  case "object": {
    const out = {};
    const required = Array.isArray(s.required) && s.required.length ? s.required : null;
    for (const [name, p] of Object.entries(obj(s.properties) || {}))
      if (obj(p) && !p.readOnly && (!required || required.includes(name))) out[name] = example(p, depth + 1);
    return out;
  }
  case "array": return obj(s.items) ? [example(s.items, depth + 1)] : [];
  case "string": {
    let v = "string";
    if (num(s.minLength) && v.length < s.minLength) v = v.padEnd(s.minLength, "x");
    return num(s.maxLength) ? v.slice(0, s.maxLength) : v;
  }
  case "integer": case "number": {
    let v = 0;
    if (num(s.minimum) && v < s.minimum) v = s.minimum;
    if (num(s.maximum) && v > s.maximum) v = s.maximum;
    return v;
  }
  case "boolean": return false;
  }
  return null;
}

function range(lo, hi, unit) {
  const num = v => typeof v === "number";
  if (num(lo) && num(hi)) return lo + " to " + hi + unit;
  if (num(lo)) return "at least " + lo + unit;
  if (num(hi)) return "at most " + hi + unit;
  return "";
}

// The path, query and header parameters, one field each: a list for an enum or a
// boolean, text otherwise, with what the schema says beside it.
function form(o) {
  const box = $("params");
  box.replaceChildren();
  const params = Array.isArray(o.op.parameters) ? o.op.parameters : [];
  params.forEach((p, i) => {
    if (!obj(p) || !str(p.name) || !["path", "query", "header"].includes(p.in)) return;
    const s = obj(p.schema) || {};
    const needed = p.in === "path" || p.required === true;
    const choices = Array.isArray(s.enum) ? s.enum : s.type === "boolean" ? [true, false] : null;
    let input;
    if (choices) {
      input = el("select");
      if (!needed) input.append(new Option("", ""));
      for (const c of choices) input.append(new Option(String(c), String(c)));
    } else {
      input = el("input");
      input.type = "text";
      input.spellcheck = false;
    }
    input.id = "param-" + i;
    input.dataset.name = p.name;
    input.dataset.in = p.in;
    const label = el("label", null, p.name + (needed ? " *" : ""));
    label.htmlFor = input.id;
    let type = str(s.type) || "string";
    if (type === "array") type = "comma-separated " + (str(obj(s.items) && s.items.type) || "value") + "s";
    const hint = [p.in, type, range(s.minimum, s.maximum, ""), range(s.minLength, s.maxLength, " characters"),
      str(p.description)].filter(Boolean).join(" \u00b7 ");
    const row = el("div", "param");
    row.append(label, input, el("span", "hint", hint));
    box.append(row);
  });
}

// ---- the request and its answer ---------------------------------------------

function problem(text) { $("problem").textContent = text; }

async function send() {
  const o = current;
  problem("");
  let path = o.path;
  const query = new URLSearchParams();
  const declared = []; // header parameters: [name, value]
  for (const input of $("params").querySelectorAll("input, select")) {
    const v = input.value;
    if (input.dataset.in === "query") {
      if (v !== "") query.append(input.dataset.name, v);
    } else if (input.dataset.in === "header") {
      if (v !== "") declared.push([input.dataset.name, v]);
    } else if (v === "") {
      return problem("fill in " + input.dataset.name);
    } else {
      path = path.split("{" + input.dataset.name + "}").join(encodeURIComponent(v));
    }
  }
  const headers = new Headers({ Accept: "application/json" });
  for (const [name, v] of declared) {
    try {
      headers.set(name, v);
    } catch (e) {
      return problem("not a value for the header " + name);
    }
  }
  for (const line of $("headers").value.split("\n")) {
    if (!line.trim()) continue;
    const colon = line.indexOf(":");
    try {
      if (colon < 1) throw new TypeError();
      headers.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    } catch (e) {
      return problem("not a header: " + line);
    }
  }
  const token = $("token").value.trim();
  if (token) headers.set("Authorization", "Bearer " + token);
  let body;
  if (!$("body-box").hidden) {
    body = $("body").value; // as typed: an invalid body is worth sending too
    headers.set("Content-Type", "application/json");
  }
  const qs = query.toString();
  const url = new URL(path + (qs ? "?" + qs : ""), location.origin);
  if (url.origin !== location.origin) return problem("not a path of this gateway: " + o.path);
  $("send").disabled = true;
  const started = performance.now();
  try {
    const r = await fetch(url, { method: o.method.toUpperCase(), headers, body, credentials: "omit", cache: "no-store" });
    show(o, url, r, await r.text(), performance.now() - started);
  } catch (e) {
    show(o, url, null, String(e.message || e), performance.now() - started);
  } finally {
    $("send").disabled = false;
  }
}

function show(o, url, r, text, ms) {
  $("response").hidden = false;
  $("res-status").textContent = r ? (r.status + " " + r.statusText).trim() : "no answer";
  $("res-status").className = "status s" + (r ? String(r.status)[0] : "0");
  $("res-request").textContent = o.method.toUpperCase() + " " + url.pathname + url.search;
  $("res-time").textContent = Math.round(ms) + " ms";
  const rows = $("res-headers").tBodies[0];
  rows.replaceChildren();
  for (const [name, value] of r ? r.headers : []) {
    const tr = el("tr");
    tr.append(el("td", null, name), el("td", null, value));
    rows.append(tr);
  }
  let shown = text;
  answerToken = null;
  try {
    const v = JSON.parse(text);
    shown = JSON.stringify(v, null, 2);
    if (obj(v) && str(v.access_token)) answerToken = v.access_token;
  } catch (e) {
    // not JSON: shown as it came
  }
  if (shown.length > SHOWN_MAX)
    shown = shown.slice(0, SHOWN_MAX) + "\n\u2026 (" + (shown.length - SHOWN_MAX) + " more characters not shown)";
  $("res-body").textContent = shown || "(no body)";
  $("use-token-box").hidden = !answerToken;
}

// ---- the token --------------------------------------------------------------

function remember() {
  const t = $("token").value.trim();
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch (e) {
    // storage off: the token lives in the field only
  }
}

function start() {
  try {
    $("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  } catch (e) {
    // storage off
  }
  $("token").addEventListener("input", remember);
  $("forget").addEventListener("click", () => { $("token").value = ""; remember(); });
  $("use-token").addEventListener("click", () => {
    $("token").value = answerToken;
    remember();
    $("use-token-box").hidden = true;
  });
  $("filter").addEventListener("input", list);
  $("reload").addEventListener("click", load);
  $("send").addEventListener("click", send);
  for (const id of ["body", "headers"])
    $(id).addEventListener("keydown", e => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send(); });
  load();
}

start();
