// Validates Kubernetes manifests against the API schemas of the npm
// kubernetes-models package: each YAML document is built as its apiVersion's
// kind and validated (types, required fields, enums, formats). The
// kustomization is not an API object: it is checked by the caller.
//
//   node tests/k8s/validate.mjs FILE...
//
// Prints "ok FILE KIND NAME" or "error FILE KIND NAME: why" per document, and
// exits 1 when any document is invalid or a file has none.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

async function modelClass(apiVersion, kind) {
  let mod;
  try {
    mod = await import(`kubernetes-models/${apiVersion}`);
  } catch {
    throw new Error(`unknown apiVersion ${apiVersion}`);
  }
  if (typeof mod[kind] !== "function") throw new Error(`unknown kind ${kind} in ${apiVersion}`);
  return mod[kind];
}

let bad = 0;
for (const file of process.argv.slice(2)) {
  let docs;
  try {
    docs = parseAllDocuments(readFileSync(file, "utf8"));
  } catch (e) {
    console.log(`error ${file}: ${e.message}`);
    bad++;
    continue;
  }
  let count = 0;
  for (const doc of docs) {
    if (doc.errors.length) {
      console.log(`error ${file}: YAML: ${doc.errors[0].message}`);
      bad++;
      continue;
    }
    const obj = doc.toJS();
    if (obj === null) continue;
    count++;
    const name = `${obj.kind} ${obj.metadata?.name ?? "(no name)"}`;
    try {
      if (typeof obj.apiVersion !== "string" || typeof obj.kind !== "string")
        throw new Error("no apiVersion or kind");
      const Model = await modelClass(obj.apiVersion, obj.kind);
      new Model(obj).validate();
      console.log(`ok ${file} ${name}`);
    } catch (e) {
      console.log(`error ${file} ${name}: ${e.message.replace(/\s+/g, " ").slice(0, 500)}`);
      bad++;
    }
  }
  if (count === 0) {
    console.log(`error ${file}: no document`);
    bad++;
  }
}
process.exit(bad ? 1 : 0);
