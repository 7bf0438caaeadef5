// Validates OpenAPI documents with @apidevtools/swagger-parser (schema and
// semantics: unique operation paths, path parameters declared, $refs).
// Usage: node validate.mjs FILE...; prints one JSON line per file,
// {"file","ok":true} or {"file","ok":false,"error"}; exit 0 when all pass.
import SwaggerParser from "@apidevtools/swagger-parser";

let failed = 0;
for (const file of process.argv.slice(2)) {
  try {
    await SwaggerParser.validate(file);
    console.log(JSON.stringify({ file, ok: true }));
  } catch (err) {
    failed++;
    console.log(JSON.stringify({ file, ok: false, error: String(err.message || err) }));
  }
}
process.exit(failed ? 1 : 0);
