// The official NATS JavaScript client (nats.js) and its services client,
// speaking to svckit services; tests/integration/test_msg_js_client.py runs it
// and reads the one JSON document it prints.
//
//   node svc_client.mjs request <nats-url> <subject> <method> <path>
//       {"status": Svc-Status, "isServiceError": bool, "code": n, "message": s}
//   node svc_client.mjs discover <nats-url> <service>
//       {"ping": [...], "info": [...], "stats": [...]} from the services client
import { connect, headers, ServiceError } from "nats";

async function request(nc, subject, method, path) {
  const h = headers();
  h.set("Svc-Method", method);
  h.set("Svc-Path", path);
  const msg = await nc.request(subject, new Uint8Array(0), { headers: h, timeout: 5000 });
  const err = ServiceError.toServiceError(msg);
  return {
    status: Number(msg.headers?.get("Svc-Status")),
    isServiceError: ServiceError.isServiceError(msg),
    code: err ? err.code : null,
    message: err ? err.message : null,
  };
}

async function collect(iter) {
  const out = [];
  for await (const doc of await iter) out.push(doc);
  return out;
}

async function discover(nc, service) {
  const client = nc.services.client({ maxWait: 1000 });
  return {
    ping: await collect(client.ping(service)),
    info: await collect(client.info(service)),
    stats: await collect(client.stats(service)),
  };
}

const [cmd, url, ...args] = process.argv.slice(2);
const nc = await connect({ servers: url, name: "svckit-js-test" });
try {
  const out = cmd === "request" ? await request(nc, ...args) : await discover(nc, ...args);
  process.stdout.write(JSON.stringify(out) + "\n");
} finally {
  await nc.close();
}
