/*
 * svckit/auth.h: JSON Web Tokens (RFC 7519) by the rules of RFC 8725, JWKS
 * (RFC 7517), password hashing, and the middleware behind SVC_AUTH_USER /
 * SVC_AUTH_ADMIN.
 *
 * Algorithms: EdDSA (Ed25519, RFC 8037) and HS256, both from libsodium. The
 * accepted algorithm comes from the key, and each key is bound to exactly one
 * algorithm; the token header's "alg" must match it and is never trusted to
 * choose. Tokens whose header carries "crit", "jku", "x5u", "jwk" or "x5c" are
 * rejected outright: svckit never fetches or trusts keys named by a token.
 *
 * Every function here calls sodium_init() itself (once, thread-safely).
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
#define SVC_JWT_MAX_JWKS (64 * 1024)  /* bytes of a JWKS or JWK document */
#define SVC_JWT_MAX_KID 63            /* bytes of a key id */
#define SVC_JWT_DEFAULT_TTL_S 3600    /* lifetime of tokens the auth service signs */
#define SVC_JWT_MAX_LIFETIME_S 86400  /* longest lifetime a verifier accepts
                                       * (AUTH_MAX_TOKEN_LIFETIME) */
#define SVC_JWT_ISSUER "svckit-auth"
#define SVC_JWT_AUDIENCE "svckit"
#define SVC_JWT_HS256_KID "hs256"     /* kid of keys made by svc_jwt_key_hs256 */

typedef enum { SVC_JWT_EDDSA = 1, SVC_JWT_HS256 = 2 } svc_jwt_alg;

/*
 * One key: an algorithm, a key id, and key material, all inline (a key is a
 * plain value: copy it, and wipe it with svc_jwt_key_wipe when done).
 */
typedef struct svc_jwt_key {
    svc_jwt_alg alg;
    char kid[SVC_JWT_MAX_KID + 1];  /* NUL-terminated, 1..SVC_JWT_MAX_KID bytes */
    unsigned char pub[32];          /* EdDSA public key */
    unsigned char sec[64];          /* EdDSA secret key, libsodium form (seed || pub) */
    int has_sec;                    /* sec is set: the key can sign */
    /* HS256 secret. A secret longer than the SHA-256 block (64 bytes) is kept
     * as its SHA-256, which HMAC itself does first (RFC 2104), so tokens are
     * identical to those made with the full secret. */
    unsigned char hmac[64];
    size_t hmac_len;
} svc_jwt_key;

/* Zeroes a key's material (sodium_memzero). NULL is a no-op. */
void svc_jwt_key_wipe(svc_jwt_key *key);

/*
 * A set of verification (and signing) keys. Thread-safe: verification and the
 * other readers may run on any number of threads while another thread adds
 * keys or loads a new JWKS (an internal read-write lock; verification holds it
 * only to copy the chosen key).
 */
typedef struct svc_jwt_keyset svc_jwt_keyset;

/* Verified claims, copied into fixed fields (a claim too long for its field
 * fails verification rather than being truncated). */
typedef struct svc_claims {
    char sub[128];
    char name[128];                 /* "" when absent */
    char role[32];                  /* "" when absent */
    char jti[64];                   /* "" when absent */
    char iss[128];
    int64_t iat, exp, nbf;          /* iat, nbf: 0 when absent */
} svc_claims;

/* What a verifier requires. A NULL policy means all defaults. */
typedef struct svc_jwt_policy {
    const char *issuer;         /* required "iss"; NULL: SVC_JWT_ISSUER */
    const char *audience;       /* required in "aud"; NULL: SVC_JWT_AUDIENCE */
    int leeway_s;               /* <0: SVC_JWT_LEEWAY_S */
    int64_t now;                /* seconds since epoch; 0: the clock */
    int64_t max_lifetime_s;     /* <=0: SVC_JWT_MAX_LIFETIME_S */
} svc_jwt_policy;

/* New empty key set; NULL on out-of-memory. Free with svc_jwt_keyset_free,
 * which wipes the keys; NULL is a no-op. */
svc_jwt_keyset *svc_jwt_keyset_new(void);
void svc_jwt_keyset_free(svc_jwt_keyset *ks);
/* Adds a key (copied). SVC_EEXIST for a duplicate kid, SVC_ERANGE when full,
 * SVC_EINVAL for a bad kid, an unknown alg, or an HS256 secret under
 * SVC_JWT_MIN_SECRET bytes. */
int svc_jwt_keyset_add(svc_jwt_keyset *ks, const svc_jwt_key *key);
/*
 * Replaces every key (HS256 keys too) with those of a JWKS document, all or
 * nothing. Loads only public OKP/Ed25519 entries, each of which must have a
 * "kid" and a 32-byte "x" that is a valid curve point, and binds them to
 * EdDSA; a private "d" is ignored. Entries of another "kty" or "crv", or whose
 * "alg" is not "EdDSA" or whose "use" is not "sig", are skipped. Returns
 * SVC_EINVAL if the document is malformed (not {"keys":[objects]}, a bad
 * Ed25519 entry, a duplicate kid, over SVC_JWT_MAX_JWKS bytes) and SVC_ERANGE
 * for more than SVC_JWT_MAX_KEYS usable keys; the key set is then unchanged.
 */
int svc_jwt_keyset_load_jwks(svc_jwt_keyset *ks, const char *json, size_t len);
/* Appends the EdDSA public keys as a JWKS document ({"keys":[...]}) to out;
 * HS256 keys are never published. SVC_OK or SVC_ENOMEM. */
int svc_jwt_keyset_jwks(const svc_jwt_keyset *ks, svc_buf *out);
/* Number of keys; whether a kid is present (1/0). */
size_t svc_jwt_keyset_count(const svc_jwt_keyset *ks);
int svc_jwt_keyset_has(const svc_jwt_keyset *ks, const char *kid);

/* Fresh Ed25519 key pair with a random kid (16 base64url characters). */
int svc_jwt_key_generate(svc_jwt_key *key);
/* HS256 key (kid SVC_JWT_HS256_KID) from a secret of at least
 * SVC_JWT_MIN_SECRET bytes; SVC_EINVAL if shorter. */
int svc_jwt_key_hs256(svc_jwt_key *key, const void *secret, size_t len);

/*
 * Appends key as one JWK object to out. EdDSA: {"kty":"OKP","crv":"Ed25519",
 * "x","kid","alg":"EdDSA","use":"sig"} plus "d" (the 32-byte seed) when
 * with_private. HS256: {"kty":"oct","k","kid","alg":"HS256"}, only with
 * with_private (a shared secret has no public half: SVC_EINVAL otherwise).
 */
int svc_jwt_key_jwk(const svc_jwt_key *key, int with_private, svc_buf *out);
/*
 * Reads one JWK: OKP/Ed25519 with "x" and "kid", and optionally "d" (whose
 * public key must equal "x"); or "oct" with "k" (at least SVC_JWT_MIN_SECRET
 * bytes; kid defaults to SVC_JWT_HS256_KID). An "alg", if present, must fit the
 * key. SVC_EINVAL if malformed.
 */
int svc_jwt_key_from_jwk(svc_jwt_key *key, const char *json, size_t len);

/*
 * Key files for a service that signs (the auth service). svc_jwt_key_save
 * writes the private JWK of an EdDSA key with its secret: a temporary file in
 * the same folder created O_CREAT|O_EXCL with mode 0600, fsync'd, then linked
 * to path (never replacing an existing file: SVC_EEXIST) and the folder
 * fsync'd, so path is either absent or complete. svc_jwt_key_load reads it
 * back: SVC_ENOTFOUND if there is no file, SVC_EINVAL if it is not a regular
 * file, is group- or world-accessible (mode & 077), or holds no private EdDSA
 * key; SVC_EIO for other I/O errors. svc_jwt_key_load_or_create loads, or
 * generates and saves a new key if the file does not exist (a concurrent
 * creator wins and its key is loaded). All log the reason on failure.
 */
int svc_jwt_key_save(const svc_jwt_key *key, const char *path);
int svc_jwt_key_load(svc_jwt_key *key, const char *path);
int svc_jwt_key_load_or_create(svc_jwt_key *key, const char *path);

/*
 * Signs claims with key (which must hold secret material) and appends the
 * compact token (header.payload.signature) to out. The header is
 * {"alg","typ":"JWT","kid"}; the payload holds iss (SVC_JWT_ISSUER), sub, aud
 * (SVC_JWT_AUDIENCE), iat (now), exp (now + ttl_s), jti (16 random bytes,
 * base64url), and name and role unless NULL. sub must be 1..127 bytes, name
 * under 128, role under 32, ttl_s > 0 (else SVC_EINVAL).
 */
int svc_jwt_sign(const svc_jwt_key *key, const char *sub, const char *name,
                 const char *role, int64_t ttl_s, svc_buf *out);
/* Signs a caller-made payload verbatim (which must be a JSON object: else
 * SVC_EINVAL), with the same header; for tools and tests. */
int svc_jwt_sign_payload(const svc_jwt_key *key, const char *payload, size_t len,
                         svc_buf *out);

/*
 * Verifies a compact token against the key set and policy. Strict: exactly
 * three unpadded base64url parts, at most SVC_JWT_MAX_TOKEN bytes; a header
 * object with "alg" exactly "EdDSA" or "HS256", "typ" (if present) "JWT", and
 * none of crit/jku/x5u/jwk/x5c. The key is the one named by "kid", or the only
 * key when the token has no kid; its algorithm must equal "alg". The payload
 * must be an object with a numeric "exp", "iss" equal to the policy issuer, an
 * "aud" (string or array of strings) containing the policy audience, and a
 * string "sub"; "nbf" and "iat" (numbers) are checked when present; all times
 * with the policy leeway. A token may not live longer than the policy's
 * max_lifetime_s: exp at most that far from now (plus the leeway) and, when
 * iat is present, from iat, so a validly signed token whose exp is far away
 * (1e300) is refused rather than valid for ever. NumericDates may be any JSON
 * number; fractions round towards the stricter side and huge values are
 * clamped before any arithmetic. On SVC_OK fills *claims (may be NULL). On failure
 * returns SVC_EAUTH (bad token, signature, algorithm or claims) or
 * SVC_ENOTFOUND (unknown kid, or an empty key set: the caller may refresh its
 * JWKS and retry), and writes a short reason into err (may be NULL; never
 * echoes the token). Thread-safe.
 */
int svc_jwt_verify(const svc_jwt_keyset *ks, const char *token, size_t len,
                   const svc_jwt_policy *policy, svc_claims *claims,
                   char *err, size_t errlen);

/* ---- passwords: Argon2id through libsodium's crypto_pwhash ---------------- */

#define SVC_PASSWORD_MAX 128                  /* bytes of a password */
#define SVC_PASSWORD_HASH_MAX 128             /* bytes of a hash string, with NUL */
/* Argon2id cost: t=2, m=19 MiB, p=1, OWASP's recommended setting: about
 * 10 ms per hash on one core of the reference machine, and 19 MiB per hash in
 * flight (libsodium's "interactive" m=64 MiB costs 45 ms and 64 MiB per
 * thread-pool thread). Raise both here; svc_password_needs_rehash then flags
 * old hashes. */
#define SVC_PASSWORD_OPSLIMIT 2
#define SVC_PASSWORD_MEMLIMIT (19u * 1024 * 1024)
/* Every Argon2id computation of the functions below is counted in this
 * counter of the process's registry, labelled op="hash" (svc_password_hash,
 * and a rehash) or op="verify" (svc_password_verify and
 * svc_password_dummy_verify, when they compute). */
#define SVC_PASSWORD_METRIC "auth_password_hashes_total"

/*
 * Argon2id hash, PHC format ("$argon2id$v=19$m=...,t=...,p=1$salt$hash"), into
 * out (outlen >= SVC_PASSWORD_HASH_MAX, else SVC_EINVAL). SVC_ERANGE for a
 * password over SVC_PASSWORD_MAX bytes; SVC_ENOMEM if the memory cost cannot
 * be allocated. Slow and memory-hungry by design: call it off the loop
 * (SVC_OFFLOAD). Thread-safe.
 */
int svc_password_hash(const char *password, size_t len, char *out, size_t outlen);
/* SVC_OK if the password matches the hash, SVC_EAUTH if not (or if it is too
 * long), SVC_EINVAL if hash is not an Argon2id string. Thread-safe, slow. */
int svc_password_verify(const char *hash, const char *password, size_t len);
/* Does the work of one svc_password_verify, against a dummy hash with the
 * current parameters (random salt and digest: nothing matches it), and
 * returns SVC_EAUTH: call it for an unknown user so that a login costs the
 * same work whether or not the user exists. */
int svc_password_dummy_verify(const char *password, size_t len);
/* 1 if hash was made with other parameters than the current ones (rehash it
 * at the next successful login), 0 if not, SVC_EINVAL if malformed. */
int svc_password_needs_rehash(const char *hash);

/* ---- the middleware ---------------------------------------------------------
 * svc_auth_install registers a before-hook on the app that, for routes with
 * SVC_AUTH_USER or SVC_AUTH_ADMIN, takes the token from "Authorization: Bearer"
 * (or, when there is no Authorization header, the "token" cookie) and verifies
 * it with the default policy, but for the longest lifetime, which is
 * AUTH_MAX_TOKEN_LIFETIME (svc_config.jwt_max_lifetime_s):
 *  - with a key set from svc_auth_use_keyset: against that set;
 *  - else, when JWT_SECRET is set: HS256 with that secret only;
 *  - else EdDSA with keys from AUTH_JWKS_URL, fetched once at start (blocking,
 *    bounded by SVC_AUTH_JWKS_TIMEOUT_MS) and refreshed in the background: on
 *    an unknown kid at most once per SVC_AUTH_JWKS_REFRESH_S (the request that
 *    saw it gets 401; a retry after the refresh succeeds), every
 *    SVC_AUTH_JWKS_MAX_AGE_S, and every second while the set is empty. A
 *    readiness check "auth" fails while the set is empty. AUTH_JWKS_URL has
 *    no default (the library knows no auth service): unset, svc_auth_install
 *    logs one line naming it and returns SVC_EINVAL (svc_app_run exits 2).
 * Failures answer 401 {"error":{"code":"unauthorized","message":...}} with
 * `WWW-Authenticate: Bearer realm="svckit"` (plus `, error="invalid_token"`
 * when a token was sent; not for a request without one, nor for an
 * Authorization header of another scheme: RFC 6750 section 3.1), and
 * SVC_AUTH_ADMIN routes answer 403 "forbidden" to a valid token whose role
 * is not "admin". Verified tokens are cached (keyed
 * by a keyed BLAKE2b hash of the token, until exp, SVC_AUTH_CACHE_ENTRIES
 * entries) so that a hot token costs one hash and a lookup.
 * svc_app_run calls svc_auth_install when any route asks for auth, after the
 * configuration is validated and before the first request; calling it again
 * is a no-op. A service may call it earlier: the configuration is then read
 * at the first request. SVC_OK, or SVC_ENOMEM.
 */
#define SVC_AUTH_JWKS_TIMEOUT_MS 2000
#define SVC_AUTH_JWKS_REFRESH_S 10
#define SVC_AUTH_JWKS_MAX_AGE_S 300
#define SVC_AUTH_CACHE_ENTRIES 1024

int svc_auth_install(svc_app *app);
/*
 * The middleware's verification on demand, for a handler that decides per
 * request what it needs (the gateway: its catch-all routes carry no auth
 * flags, its route table does). need is SVC_AUTH_USER or SVC_AUTH_ADMIN (0:
 * nothing to check, SVC_NEXT). Same token sources, keys, cache and answers as
 * the middleware, as a hook's outcome: SVC_NEXT with the claims on the
 * request (svc_req_claims), or SVC_DONE after writing the 401, 403 or 500
 * to res (`return svc_auth_check(...)` from a hook or handler). Call
 * svc_auth_install first (from on_start, so JWKS keys are fetched before
 * the first request). Loop thread or thread pool.
 */
svc_outcome svc_auth_check(svc_req *req, svc_res *res, unsigned need);
/* The verified claims of the caller (owned by the request), or NULL on a
 * route without auth. */
const svc_claims *svc_req_claims(const svc_req *req);
/*
 * Lets a service that owns the keys (the auth service) verify locally instead
 * of fetching JWKS. Call it before svc_app_run (svc_app_run decides where keys
 * come from before on_start runs; a later call is ignored with a warning). The
 * set may still be empty then: fill it in on_start, once DATA_DIR is known
 * (svc_jwt_key_load_or_create, then svc_jwt_keyset_add, which is thread-safe).
 * The key set must outlive the app.
 */
void svc_auth_use_keyset(svc_app *app, svc_jwt_keyset *ks);

#ifdef __cplusplus
}
#endif
#endif
