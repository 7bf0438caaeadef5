/*
 * Fuzz target for src/auth: each input is tried as
 *   1. a compact token, verified against a fixed key set (one EdDSA key, one
 *      HS256 key) with a fixed clock, so valid seeds stay valid;
 *   2. a payload, signed with the HS256 key and verified, which drives the
 *      claims checks past the signature with arbitrary JSON;
 *   3. a JWKS document loaded into a scratch key set, and a single JWK.
 * The keys are fixed (Ed25519 seed bytes 1..32, kid "fuzz-ed"; HS256 secret
 * below, kid "hs256") and so is the clock, so the seeds ed_valid and hs_valid
 * in fuzz/corpus/jwt verify and the fuzzer explores past the signature. The
 * other named seeds are forgeries, JWKS and JWK documents; fz-* files are what
 * libFuzzer found that added coverage.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/internal.h"
#include "svckit/auth.h"

#define FUZZ_NOW 1700000000

static svc_jwt_keyset *ks;
static svc_jwt_key hs;

static void setup(void) {
    svc_jwt_key ed;
    unsigned char seed[32];
    for (int i = 0; i < 32; i++) seed[i] = (unsigned char)(i + 1);
    memset(&ed, 0, sizeof ed);
    ed.alg = SVC_JWT_EDDSA;
    strcpy(ed.kid, "fuzz-ed");
    if (sodium_init() < 0) abort();
    crypto_sign_ed25519_seed_keypair(ed.pub, ed.sec, seed);
    ed.has_sec = 1;
    const char *secret = "fuzz-hs256-secret-0123456789abcdef";
    if (svc_jwt_key_hs256(&hs, secret, strlen(secret)) != SVC_OK) abort();
    ks = svc_jwt_keyset_new();
    if (!ks || svc_jwt_keyset_add(ks, &ed) != SVC_OK || svc_jwt_keyset_add(ks, &hs) != SVC_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!ks) setup();
    const char *in = (const char *)data;
    svc_jwt_policy pol = {.now = FUZZ_NOW, .leeway_s = -1};
    svc_claims c;
    char err[64];

    (void)svc_jwt_verify(ks, in, size, &pol, &c, err, sizeof err);

    svc_buf tok = {0};
    if (svc_jwt_sign_payload(&hs, in, size, &tok) == SVC_OK &&
        svc_jwt_verify(ks, tok.data, tok.len, &pol, &c, err, sizeof err) == SVC_OK) {
        /* Whatever passed must be within the claims' bounds, its lifetime too. */
        if (!c.sub[0] || strlen(c.sub) >= sizeof c.sub || strcmp(c.iss, SVC_JWT_ISSUER) != 0 ||
            c.exp > FUZZ_NOW + SVC_JWT_LEEWAY_S + SVC_JWT_MAX_LIFETIME_S ||
            (c.iat && c.exp > c.iat + SVC_JWT_MAX_LIFETIME_S))
            abort();
    }
    svc_buf_free(&tok);

    svc_jwt_keyset *scratch = svc_jwt_keyset_new();
    if (svc_jwt_keyset_load_jwks(scratch, in, size) == SVC_OK) {
        svc_buf out = {0};
        if (svc_jwt_keyset_jwks(scratch, &out) != SVC_OK) abort();
        /* What we publish we must be able to read back. */
        svc_jwt_keyset *again = svc_jwt_keyset_new();
        if (svc_jwt_keyset_load_jwks(again, out.data, out.len) != SVC_OK ||
            svc_jwt_keyset_count(again) != svc_jwt_keyset_count(scratch))
            abort();
        svc_jwt_keyset_free(again);
        svc_buf_free(&out);
    }
    svc_jwt_keyset_free(scratch);

    svc_jwt_key k;
    if (svc_jwt_key_from_jwk(&k, in, size) == SVC_OK) svc_jwt_key_wipe(&k);
    return 0;
}
