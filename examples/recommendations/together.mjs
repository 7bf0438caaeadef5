// "Products often bought together": the business part of the service, no
// NATS and no HTTP. It counts, for every pair of products, the orders that
// hold both, from the order events (orders.created) it is given, and keeps
// the counts in one JSON file so that a restart resumes where the durable
// consumer does.
import fs from "node:fs";
import path from "node:path";

// Limits on what an event may hold (services/saga.h has the same numbers:
// the orders service never publishes more).
export const MAX_EVENT_BYTES = 16 * 1024;
export const MAX_ITEMS = 50;
// Limits on what a question may ask.
export const DEFAULT_LIMIT = 5;
export const MAX_LIMIT = 50;
// Stream sequences applied whose ack the server has not confirmed: a crash
// leaves at most a batch of them, so this bound is never reached in practice.
export const MAX_UNCONFIRMED = 4096;

// A product id: a positive integer JavaScript represents exactly.
export function productId(v) {
  return Number.isSafeInteger(v) && v > 0 ? v : null;
}

// The distinct product ids of an orders.created body, or an error string.
export function parseOrder(data) {
  if (data.length > MAX_EVENT_BYTES) return { error: `body over ${MAX_EVENT_BYTES} bytes` };
  let doc;
  try {
    doc = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data));
  } catch {
    return { error: "body is not JSON" };
  }
  if (!doc || typeof doc !== "object" || !productId(doc.order_id)) return { error: "order_id must be a positive integer" };
  if (!Array.isArray(doc.items) || doc.items.length < 1 || doc.items.length > MAX_ITEMS)
    return { error: `items must hold 1 to ${MAX_ITEMS} lines` };
  const ids = new Set();
  for (const it of doc.items) {
    const id = it && typeof it === "object" ? productId(it.product_id) : null;
    if (!id) return { error: "every item needs a positive integer product_id" };
    ids.add(id);
  }
  return { order: doc.order_id, products: [...ids] };
}

export class Together {
  // file: where the counts live (created on the first save).
  constructor(file) {
    this.file = file;
    this.unconfirmed = new Set(); // stream sequences applied, their ack not confirmed
    this.orders = new Map();   // product id -> orders holding it
    this.pairs = new Map();    // product id -> Map(other id -> orders holding both)
    if (fs.existsSync(file)) this.load(JSON.parse(fs.readFileSync(file, "utf8")));
  }

  load(doc) {
    this.unconfirmed = new Set(doc.unconfirmed);
    for (const [p, n] of Object.entries(doc.orders)) this.orders.set(Number(p), n);
    for (const [p, others] of Object.entries(doc.pairs))
      this.pairs.set(Number(p), new Map(Object.entries(others).map(([q, n]) => [Number(q), n])));
  }

  // Counts one order. seq is its stream sequence: JetStream redelivers what
  // was not acked, so a message applied and saved whose ack was lost (a
  // crash between the save and the ack) comes again, possibly after newer
  // ones: its sequence is still among the unconfirmed. Returns whether it
  // counted.
  apply(seq, products) {
    if (this.unconfirmed.has(seq)) return false;
    this.unconfirmed.add(seq);
    if (this.unconfirmed.size > MAX_UNCONFIRMED) this.unconfirmed.delete(this.unconfirmed.values().next().value);
    for (const p of products) {
      this.orders.set(p, (this.orders.get(p) || 0) + 1);
      let row = this.pairs.get(p);
      if (!row) this.pairs.set(p, (row = new Map()));
      for (const q of products) if (q !== p) row.set(q, (row.get(q) || 0) + 1);
    }
    return true;
  }

  // The server confirmed the ack of seq: it never comes again.
  confirmed(seq) {
    this.unconfirmed.delete(seq);
  }

  // Written whole to a temporary file, then renamed over the old one: a
  // crash leaves either the old counts or the new ones.
  save() {
    const obj = (m, f) => Object.fromEntries([...m].map(([k, v]) => [k, f(v)]));
    const doc = { unconfirmed: [...this.unconfirmed], orders: obj(this.orders, (n) => n), pairs: obj(this.pairs, (r) => obj(r, (n) => n)) };
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(doc));
    fs.renameSync(tmp, this.file);
  }

  // The products most often in the same orders as id, most orders first,
  // then by id; at most limit of them.
  recommend(id, limit) {
    const row = this.pairs.get(id) || new Map();
    const best = [...row].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, limit);
    return {
      product_id: id,
      orders: this.orders.get(id) || 0,
      recommendations: best.map(([q, n]) => ({ product_id: q, orders: n })),
    };
  }
}
