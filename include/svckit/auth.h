/*
 * svckit/auth.h: JSON Web Tokens (RFC 7519) by the rules of RFC 8725, JWKS,
 * password hashing, and the middleware behind SVC_AUTH_USER / SVC_AUTH_ADMIN.
 *
 * Algorithms: EdDSA (Ed25519, RFC 8037) and HS256, both from libsodium. The
 * accepted algorithm comes from the key, and each key is bound to exactly one
 * algorithm; the token header's "alg" must match it and is never trusted to
 * choose. "jku", "x5u", "jwk" and "crit" headers are never followed.
 */
#ifndef SVCKIT_AUTH_H
#define SVCKIT_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "svckit/app.h"
#include "svckit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SVC_JWT_MAX_TOKEN 8192        /* bytes of a compact token */
#define SVC_JWT_LEEWAY_S 30           /* clock skew allowed on exp/nbf/iat */
#define SVC_JWT_MIN_SECRET 32         /* bytes of an HS256 secret */
#define SVC_JWT_MAX_KEYS 16           /* keys in one key set / JWKS */
#define SVC_JWT_DEFAULT_TTL_S 3600    /* lifetime of tokens the auth service signs */
#define SVC_JWT_ISSUER "svckit-auth"
#define SVC_JWT_AUDIENCE "svckit"

typedef enum { SVC_JWT_EDDSA = 1, SVC_JWT_HS256 = 2 } svc_jwt_alg;

/* One key: an algorithm, a key id, and key material. */
typedef struct svc_jwt_key {
    svc_jwt_alg alg;
    char kid[64];
    unsigned char pub[32];      /* EdDSA public key */
    unsigned char sec[64];      /* EdDSA secret key (signing only) */
    int has_sec;
    unsigned char *hmac;        /* HS256 secret (owned by the key set) */
    size_t hmac_len;
} svc_jwt_key;

typedef struct svc_jwt_keyset svc_jwt_keyset;

/* Verified claims. Strings point into the claims' own storage. */
typedef struct svc_claims {
    char sub[128];
    char name[128];
    char role[32];
    char jti[64];
    char iss[128];
    int64_t iat, exp, nbf;
} svc_claims;

/* What a verifier requires. */
typedef struct svc_jwt_policy {
    const char *issuer;         /* required "iss"; NULL: SVC_JWT_ISSUER */
    const char *audience;       /* required in "aud"; NULL: SVC_JWT_AUDIENCE */
    int leeway_s;               /* <0: SVC_JWT_LEEWAY_S */
    int64_t now;                /* seconds since epoch; 0: the clock */
} svc_jwt_policy;

svc_jwt_keyset *svc_jwt_keyset_new(void);
void svc_jwt_keyset_free(svc_jwt_keyset *ks);
/* Adds a key (copied). SVC_EEXIST for a duplicate kid, SVC_ERANGE when full,
 * SVC_EINVAL for an HS256 secret under SVC_JWT_MIN_SECRET bytes. */
int svc_jwt_keyset_add(svc_jwt_keyset *ks, const svc_jwt_key *key);
/* Replaces every key with those of a JWKS document (public keys only; OKP
 * Ed25519 entries with a kid; others ignored). SVC_EINVAL if malformed. */
int svc_jwt_keyset_load_jwks(svc_jwt_keyset *ks, const char *json, size_t len);
/* Writes the public keys as a JWKS document ({"keys":[...]}) into out. */
int svc_jwt_keyset_jwks(const svc_jwt_keyset *ks, svc_buf *out);
/* Number of keys; whether a kid is present. */
size_t svc_jwt_keyset_count(const svc_jwt_keyset *ks);
int svc_jwt_keyset_has(const svc_jwt_keyset *ks, const char *kid);

/* Fresh Ed25519 key with a random kid. */
int svc_jwt_key_generate(svc_jwt_key *key);
/* HS256 key from a secret (kid "hs256"). */
int svc_jwt_key_hs256(svc_jwt_key *key, const void *secret, size_t len);

/*
 * Signs claims with key (which must hold secret material) into out, a compact
 * token (header.payload.signature). iat and exp come from now and ttl_s; jti is
 * random; iss and aud from the policy constants. SVC_OK or an error.
 */
int svc_jwt_sign(const svc_jwt_key *key, const char *sub, const char *name,
                 const char *role, int64_t ttl_s, svc_buf *out);

/*
 * Verifies a compact token against the key set and policy. On SVC_OK fills
 * *claims. On failure returns SVC_EAUTH (bad signature, algorithm, claims) or
 * SVC_ENOTFOUND (unknown kid: the caller may refresh its JWKS and retry) and
 * writes a short reason into err (never echoing the token).
 */
int svc_jwt_verify(const svc_jwt_keyset *ks, const char *token, size_t len,
                   const svc_jwt_policy *policy, svc_claims *claims,
                   char *err, size_t errlen);

/* ---- passwords: Argon2id through libsodium's crypto_pwhash ---------------- */

/* PHC-format hash into out (at least 128 bytes). Slow by design: call it off
 * the loop (SVC_OFFLOAD). */
int svc_password_hash(const char *password, size_t len, char *out, size_t outlen);
/* SVC_OK if the password matches the hash, SVC_EAUTH if not. */
int svc_password_verify(const char *hash, const char *password, size_t len);

/* ---- the middleware ---------------------------------------------------------
 * svc_auth_install registers a before-hook on the app that, for routes with
 * SVC_AUTH_USER or SVC_AUTH_ADMIN, takes the token from "Authorization: Bearer"
 * or the "token" cookie, verifies it (HS256 when JWT_SECRET is set, else EdDSA
 * with keys from AUTH_JWKS_URL, fetched and refreshed on unknown kid), answers
 * 401 (with WWW-Authenticate) or 403 as JSON, and stores the claims for
 * svc_req_claims. svc_app_run calls it when any route asks for auth.
 */
int svc_auth_install(svc_app *app);
/* The verified claims of the caller, or NULL on a route without auth. */
const svc_claims *svc_req_claims(const svc_req *req);
/* Lets a service that owns the keys (the auth service) verify locally
 * instead of fetching JWKS. The key set must outlive the app. */
void svc_auth_use_keyset(svc_app *app, svc_jwt_keyset *ks);

#ifdef __cplusplus
}
#endif
#endif
