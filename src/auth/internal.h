/* Internal to src/auth: shared between its files and its unit tests. */
#ifndef SVC_AUTH_INTERNAL_H
#define SVC_AUTH_INTERNAL_H

#include <jansson.h>
#include <stdint.h>

#include "runtime/module.h"
#include "svckit/auth.h"

/* sodium_init() once per process; SVC_OK or SVC_ERR (logged). */
int svc__auth_sodium_init(void);

/* ---- base64url without padding (RFC 4648 section 5, RFC 7515 section 2) -- */

/* Characters needed to encode n bytes (no NUL). */
#define SVC__B64URL_LEN(n) (((n) / 3) * 4 + ((n) % 3 ? (n) % 3 + 1 : 0))
/* Appends the encoding of data[0..n) to out. */
void svc__b64url_encode(svc_buf *out, const void *data, size_t n);
/* Encodes into a NUL-terminated string of at least SVC__B64URL_LEN(n)+1. */
void svc__b64url_encode_str(char *out, const void *data, size_t n);
/*
 * Strict decoding: only [A-Za-z0-9_-], no padding, no whitespace, and the
 * unused low bits of the last character zero (one encoding per byte string).
 * SVC_OK with *outlen set, SVC_EINVAL for bad input, SVC_ERANGE if the result
 * would not fit in outcap bytes.
 */
int svc__b64url_decode(const char *in, size_t inlen, unsigned char *out,
                       size_t outcap, size_t *outlen);

/* ---- JSON ------------------------------------------------------------------ */

/* Parses data as one JSON object with svckit's limits (duplicate keys
 * rejected). SVC_OK and a new reference, or SVC_EINVAL. */
int svc__auth_parse_object(const char *data, size_t len, size_t max_bytes, json_t **out);

/* ---- key sets -------------------------------------------------------------- */

/*
 * Copies the key a token names into *out under the read lock: by kid when kid
 * is not NULL, else the only key. SVC_OK, SVC_ENOTFOUND (no such kid, or an
 * empty set), SVC_EINVAL (no kid and several keys).
 */
int svc__keyset_pick(const svc_jwt_keyset *ks, const char *kid, svc_jwt_key *out);
/* Bumped by every change to the set; cached verdicts of another generation
 * are stale. */
uint64_t svc__keyset_generation(const svc_jwt_keyset *ks);
/* Checks a key's fields as svc_jwt_keyset_add does. */
int svc__key_check(const svc_jwt_key *key);
/* A key id: 1..SVC_JWT_MAX_KID bytes of printable ASCII, no spaces. */
int svc__kid_ok(const char *kid, size_t len);
/* Appends s, printable ASCII (a kid, base64url), as a JSON string. */
void svc__put_json_ascii(svc_buf *out, const char *s);

/* ---- the verified-token cache (used by the middleware) -------------------- */

/*
 * A bounded map from a token (by its keyed BLAKE2b-256 digest) to its verified
 * claims, valid while the key set's generation is unchanged and until the
 * token's exp plus leeway. Set-associative (4 ways per set); a full set
 * replaces its oldest entry. Thread-safe (one mutex: a lookup is a hash and a
 * few compares, far below the cost of contention on 2 cores).
 */
typedef struct svc__jwt_cache svc__jwt_cache;

/* entries is rounded up to a multiple of the associativity; 0 means
 * SVC_AUTH_CACHE_ENTRIES. NULL on out-of-memory. */
svc__jwt_cache *svc__jwt_cache_new(size_t entries);
void svc__jwt_cache_free(svc__jwt_cache *c);
/* SVC_OK and *claims on a live hit; SVC_ENOTFOUND otherwise. */
int svc__jwt_cache_get(svc__jwt_cache *c, const char *token, size_t len,
                       uint64_t generation, int64_t now, svc_claims *claims);
/* Remembers a verified token until valid_until (seconds since the epoch). */
void svc__jwt_cache_put(svc__jwt_cache *c, const char *token, size_t len,
                        uint64_t generation, int64_t valid_until,
                        const svc_claims *claims);
/* Counters for tests and metrics. */
void svc__jwt_cache_stats(svc__jwt_cache *c, uint64_t *hits, uint64_t *misses,
                          size_t *live, int64_t now);

/* ---- passwords ------------------------------------------------------------ */

/* The hash svc_password_dummy_verify checks against (made at first use). */
const char *svc__password_dummy_hash(void);

/* ---- the module ------------------------------------------------------------ */

/* Token verification as a module of the runtime (middleware.c): its state
 * in the app, its variables, its hook for SVC_AUTH_* routes. svc_app_new
 * registers it. */
extern const svc_module svc__auth_module;

#endif
