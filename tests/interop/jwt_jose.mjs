#!/usr/bin/env node
// JWT interop peer: node's `jose` signs and verifies tokens for svckit's
// integration tests (tests/integration/test_jwt_interop.py).
//
//   node jwt_jose.mjs sign   KEY.json CLAIMS_JSON        -> prints a token
//   node jwt_jose.mjs verify KEYS.json TOKEN [ISS AUD]   -> prints the payload
//
// KEY.json is one private JWK (OKP/Ed25519 -> EdDSA, oct -> HS256); the token
// header carries its kid. KEYS.json is a JWKS document ({"keys":[...]}) or one
// JWK. verify pins the algorithms and checks iss and aud (defaults
// svckit-auth / svckit); it exits 1 with the reason on stderr on failure.
import { readFileSync } from 'node:fs';
import { SignJWT, importJWK, jwtVerify, createLocalJWKSet } from 'jose';

const algOf = (jwk) => (jwk.kty === 'oct' ? 'HS256' : 'EdDSA');

async function sign(keyFile, claimsJson) {
  const jwk = JSON.parse(readFileSync(keyFile, 'utf8'));
  const alg = algOf(jwk);
  const key = await importJWK(jwk, alg);
  const header = { alg, typ: 'JWT' };
  if (jwk.kid) header.kid = jwk.kid;
  const token = await new SignJWT(JSON.parse(claimsJson)).setProtectedHeader(header).sign(key);
  process.stdout.write(token + '\n');
}

async function verify(keysFile, token, iss = 'svckit-auth', aud = 'svckit') {
  const doc = JSON.parse(readFileSync(keysFile, 'utf8'));
  const opts = { issuer: iss, audience: aud };
  let key;
  if (Array.isArray(doc.keys)) {
    key = createLocalJWKSet(doc);
    opts.algorithms = ['EdDSA'];
  } else {
    opts.algorithms = [algOf(doc)];
    key = await importJWK(doc, opts.algorithms[0]);
  }
  const { payload } = await jwtVerify(token, key, opts);
  process.stdout.write(JSON.stringify(payload) + '\n');
}

const [cmd, ...args] = process.argv.slice(2);
try {
  if (cmd === 'sign' && args.length === 2) await sign(...args);
  else if (cmd === 'verify' && (args.length === 2 || args.length === 4)) await verify(...args);
  else {
    process.stderr.write('usage: jwt_jose.mjs sign KEY.json CLAIMS | verify KEYS.json TOKEN [ISS AUD]\n');
    process.exit(2);
  }
} catch (e) {
  process.stderr.write(`jose: ${e.code || e.name}: ${e.message}\n`);
  process.exit(1);
}
