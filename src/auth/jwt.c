/*
 * JWT sign and verify (RFC 7515 compact JWS, RFC 7519 claims) by the rules of
 * RFC 8725.
 *
 * Verification goes from cheapest and least trusting to most: the token's
 * shape, then its header (which may only ask for the algorithm its key is
 * bound to), then the signature, and only then is the payload decoded and
 * parsed, so an unsigned payload never reaches the JSON parser.
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth/internal.h"

#define ED25519_SIG 64
#define HS256_SIG 32
/* Decoded header or payload of the largest token. */
#define PART_MAX (SVC_JWT_MAX_TOKEN / 4 * 3 + 3)
/* NumericDates beyond this are clamped, and the policy's clock and lifetime
 * beyond POLICY_LIMIT, so that no sum of the checks can overflow. */
#define TIME_LIMIT ((int64_t)1 << 62)
#define POLICY_LIMIT (TIME_LIMIT / 4)

static int fail(char *err, size_t errlen, int rc, const char *msg) {
    if (err && errlen) snprintf(err, errlen, "%s", msg);
    return rc;
}

static const char *alg_name(svc_jwt_alg alg) {
    return alg == SVC_JWT_EDDSA ? "EdDSA" : "HS256";
}

static void hs256(const svc_jwt_key *key, const void *msg, size_t len,
                  unsigned char mac[HS256_SIG]) {
    /* The multi-part API takes a key of any length (the one-shot
     * crypto_auth_hmacsha256 wants exactly 32 bytes). */
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key->hmac, key->hmac_len);
    crypto_auth_hmacsha256_update(&st, msg, len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof st);
}

static int can_sign(const svc_jwt_key *key) {
    if (svc__key_check(key) != SVC_OK) return 0;
    return key->alg == SVC_JWT_HS256 || key->has_sec;
}

/* Appends header.payload.signature; rolls out back on failure. */
static int sign_compact(const svc_jwt_key *key, const char *payload, size_t plen,
                        svc_buf *out) {
    svc_buf hdr = {0};
    svc_buf_printf(&hdr, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":", alg_name(key->alg));
    svc__put_json_ascii(&hdr, key->kid);
    svc_buf_putc(&hdr, '}');
    size_t start = out->len;
    if (!hdr.oom) {
        svc__b64url_encode(out, hdr.data, hdr.len);
        svc_buf_putc(out, '.');
        svc__b64url_encode(out, payload, plen);
    }
    int oom = hdr.oom;
    svc_buf_free(&hdr);
    if (oom || out->oom) return SVC_ENOMEM;
    unsigned char sig[ED25519_SIG];
    size_t siglen;
    const unsigned char *msg = (const unsigned char *)out->data + start;
    size_t mlen = out->len - start;
    if (key->alg == SVC_JWT_EDDSA) {
        crypto_sign_ed25519_detached(sig, NULL, msg, mlen, key->sec);
        siglen = ED25519_SIG;
    } else {
        hs256(key, msg, mlen, sig);
        siglen = HS256_SIG;
    }
    svc_buf_putc(out, '.');
    svc__b64url_encode(out, sig, siglen);
    if (out->oom) return SVC_ENOMEM;
    return SVC_OK;
}

int svc_jwt_sign_payload(const svc_jwt_key *key, const char *payload, size_t len,
                         svc_buf *out) {
    if (!out || !payload || svc__auth_sodium_init() != SVC_OK || !can_sign(key))
        return SVC_EINVAL;
    json_t *o;
    if (svc__auth_parse_object(payload, len, PART_MAX, &o) != SVC_OK) return SVC_EINVAL;
    json_decref(o);
    return sign_compact(key, payload, len, out);
}

static int str_fits(const char *s, size_t min, size_t cap) {
    size_t n = s ? strnlen(s, cap) : 0;
    return n >= min && n < cap;
}

int svc_jwt_sign(const svc_jwt_key *key, const char *sub, const char *name,
                 const char *role, int64_t ttl_s, svc_buf *out) {
    svc_claims c;
    if (!out || svc__auth_sodium_init() != SVC_OK || !can_sign(key)) return SVC_EINVAL;
    if (!str_fits(sub, 1, sizeof c.sub) || (name && !str_fits(name, 0, sizeof c.name)) ||
        (role && !str_fits(role, 0, sizeof c.role)) || ttl_s <= 0 || ttl_s > TIME_LIMIT)
        return SVC_EINVAL;
    unsigned char rnd[16];
    char jti[SVC__B64URL_LEN(sizeof rnd) + 1];
    randombytes_buf(rnd, sizeof rnd);
    svc__b64url_encode_str(jti, rnd, sizeof rnd);
    int64_t now = (int64_t)time(NULL);
    /* jansson validates the UTF-8 of sub, name and role and escapes them;
     * it keeps members in insertion order. */
    json_t *p = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "iss", SVC_JWT_ISSUER, "sub",
                          sub, "aud", SVC_JWT_AUDIENCE, "iat", (json_int_t)now, "exp",
                          (json_int_t)(now + ttl_s), "jti", jti);
    if (!p) return SVC_EINVAL;
    int rc = SVC_OK;
    if (name && json_object_set_new(p, "name", json_string(name)) != 0) rc = SVC_EINVAL;
    if (role && json_object_set_new(p, "role", json_string(role)) != 0) rc = SVC_EINVAL;
    char *payload = rc == SVC_OK ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(p);
    if (rc != SVC_OK) return rc;
    if (!payload) return SVC_ENOMEM;
    rc = sign_compact(key, payload, strlen(payload), out);
    free(payload);
    return rc;
}

/* ---- verify ---------------------------------------------------------------- */

/* A NumericDate (RFC 7519 section 2): any JSON number. Fractions round
 * towards the stricter side: exp down, nbf and iat up. */
static int numeric_date(json_t *v, int round_up, int64_t *out) {
    double d;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        *out = i > TIME_LIMIT ? TIME_LIMIT : i < -TIME_LIMIT ? -TIME_LIMIT : (int64_t)i;
        return 1;
    }
    if (!json_is_real(v)) return 0;
    d = json_real_value(v);
    if (!isfinite(d)) return 0;
    d = round_up ? ceil(d) : floor(d);
    *out = d >= (double)TIME_LIMIT ? TIME_LIMIT : d <= (double)-TIME_LIMIT ? -TIME_LIMIT
                                                                            : (int64_t)d;
    return 1;
}

/* Copies an optional (or required) string claim; 0 if absent and optional,
 * 1 if copied, -1 if wrong type, empty when required, or too long. */
static int str_claim(json_t *o, const char *name, int required, char *dst, size_t cap) {
    json_t *v = json_object_get(o, name);
    dst[0] = '\0';
    if (!v) return required ? -1 : 0;
    if (!json_is_string(v)) return -1;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n >= cap || memchr(s, '\0', n) || (required && n == 0)) return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 1;
}

static int aud_contains(json_t *aud, const char *want) {
    if (json_is_string(aud)) return strcmp(json_string_value(aud), want) == 0;
    if (!json_is_array(aud) || json_array_size(aud) == 0) return 0;
    int found = 0;
    for (size_t i = 0; i < json_array_size(aud); i++) {
        json_t *e = json_array_get(aud, i);
        if (!json_is_string(e)) return 0; /* a malformed array is no audience */
        if (strcmp(json_string_value(e), want) == 0) found = 1;
    }
    return found;
}

static int check_claims(json_t *p, const svc_jwt_policy *pol, svc_claims *c, char *err,
                        size_t errlen) {
    const char *issuer = pol && pol->issuer ? pol->issuer : SVC_JWT_ISSUER;
    const char *audience = pol && pol->audience ? pol->audience : SVC_JWT_AUDIENCE;
    int64_t leeway = pol && pol->leeway_s >= 0 ? pol->leeway_s : SVC_JWT_LEEWAY_S;
    int64_t now = pol && pol->now ? pol->now : (int64_t)time(NULL);
    int64_t max_lifetime = pol && pol->max_lifetime_s > 0 ? pol->max_lifetime_s : SVC_JWT_MAX_LIFETIME_S;
    now = now > POLICY_LIMIT ? POLICY_LIMIT : now < -POLICY_LIMIT ? -POLICY_LIMIT : now;
    if (max_lifetime > POLICY_LIMIT) max_lifetime = POLICY_LIMIT;
    json_t *v;

    memset(c, 0, sizeof *c);
    v = json_object_get(p, "exp");
    if (!v) return fail(err, errlen, SVC_EAUTH, "token has no exp");
    if (!numeric_date(v, 0, &c->exp)) return fail(err, errlen, SVC_EAUTH, "exp is not a number");
    if (now > c->exp + leeway) return fail(err, errlen, SVC_EAUTH, "token expired");
    if (c->exp > now + leeway + max_lifetime)
        return fail(err, errlen, SVC_EAUTH, "exp is too far in the future");
    if ((v = json_object_get(p, "nbf"))) {
        if (!numeric_date(v, 1, &c->nbf))
            return fail(err, errlen, SVC_EAUTH, "nbf is not a number");
        if (c->nbf > now + leeway) return fail(err, errlen, SVC_EAUTH, "token not yet valid");
    }
    if ((v = json_object_get(p, "iat"))) {
        if (!numeric_date(v, 1, &c->iat))
            return fail(err, errlen, SVC_EAUTH, "iat is not a number");
        if (c->iat > now + leeway)
            return fail(err, errlen, SVC_EAUTH, "token issued in the future");
        if (c->exp > c->iat + max_lifetime)
            return fail(err, errlen, SVC_EAUTH, "token lifetime too long");
    }
    if (str_claim(p, "iss", 1, c->iss, sizeof c->iss) != 1 || strcmp(c->iss, issuer) != 0)
        return fail(err, errlen, SVC_EAUTH, "wrong issuer");
    if (!aud_contains(json_object_get(p, "aud"), audience))
        return fail(err, errlen, SVC_EAUTH, "wrong audience");
    if (str_claim(p, "sub", 1, c->sub, sizeof c->sub) != 1)
        return fail(err, errlen, SVC_EAUTH, "bad sub");
    if (str_claim(p, "name", 0, c->name, sizeof c->name) < 0)
        return fail(err, errlen, SVC_EAUTH, "bad name");
    if (str_claim(p, "role", 0, c->role, sizeof c->role) < 0)
        return fail(err, errlen, SVC_EAUTH, "bad role");
    if (str_claim(p, "jti", 0, c->jti, sizeof c->jti) < 0)
        return fail(err, errlen, SVC_EAUTH, "bad jti");
    return SVC_OK;
}

/* Header members that would let a token choose or carry its own key, or make
 * the verifier apply extensions it does not know (RFC 7515 section 4.1.11). */
static const char *const forbidden_headers[] = {"crit", "jku", "x5u", "jwk", "x5c"};

/* Parses and checks the protected header; fills alg and kid (or "" when
 * absent). */
static int check_header(const unsigned char *h, size_t hlen, svc_jwt_alg *alg,
                        char kid[SVC_JWT_MAX_KID + 1], char *err, size_t errlen) {
    json_t *o;
    int rc = SVC_EAUTH;
    const char *msg = "malformed header";
    if (svc__auth_parse_object((const char *)h, hlen, PART_MAX, &o) != SVC_OK)
        return fail(err, errlen, SVC_EAUTH, msg);
    for (size_t i = 0; i < sizeof forbidden_headers / sizeof *forbidden_headers; i++) {
        if (json_object_get(o, forbidden_headers[i])) {
            msg = "header parameter not allowed";
            goto out;
        }
    }
    json_t *a = json_object_get(o, "alg");
    if (!json_is_string(a)) {
        msg = "header has no alg";
        goto out;
    }
    /* Exact and case-sensitive (RFC 7515 section 4.1.1): "none", "None" and
     * every other spelling are simply unknown. */
    if (strcmp(json_string_value(a), "EdDSA") == 0 && json_string_length(a) == 5) {
        *alg = SVC_JWT_EDDSA;
    } else if (strcmp(json_string_value(a), "HS256") == 0 && json_string_length(a) == 5) {
        *alg = SVC_JWT_HS256;
    } else {
        msg = "algorithm not allowed";
        goto out;
    }
    json_t *t = json_object_get(o, "typ");
    if (t) {
        /* A media type, compared case-insensitively, "application/" optional
         * (RFC 7515 section 4.1.9). */
        const char *ts = json_is_string(t) ? json_string_value(t) : NULL;
        if (!ts || (strcasecmp(ts, "JWT") != 0 && strcasecmp(ts, "application/jwt") != 0)) {
            msg = "bad typ";
            goto out;
        }
    }
    kid[0] = '\0';
    json_t *k = json_object_get(o, "kid");
    if (k) {
        if (!json_is_string(k) || !svc__kid_ok(json_string_value(k), json_string_length(k))) {
            msg = "bad kid";
            goto out;
        }
        memcpy(kid, json_string_value(k), json_string_length(k) + 1);
    }
    rc = SVC_OK;
out:
    json_decref(o);
    return rc == SVC_OK ? SVC_OK : fail(err, errlen, rc, msg);
}

int svc_jwt_verify(const svc_jwt_keyset *ks, const char *token, size_t len,
                   const svc_jwt_policy *policy, svc_claims *claims, char *err,
                   size_t errlen) {
    if (err && errlen) err[0] = '\0';
    if (svc__auth_sodium_init() != SVC_OK) return fail(err, errlen, SVC_EAUTH, "no crypto");
    if (!token || len == 0) return fail(err, errlen, SVC_EAUTH, "no token");
    if (len > SVC_JWT_MAX_TOKEN) return fail(err, errlen, SVC_EAUTH, "token too large");

    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) || d1 == token ||
        d2 == d1 + 1)
        return fail(err, errlen, SVC_EAUTH, "malformed token");
    size_t hlen_b64 = (size_t)(d1 - token);
    size_t plen_b64 = (size_t)(d2 - d1 - 1);
    size_t slen_b64 = len - (size_t)(d2 + 1 - token);

    unsigned char part[PART_MAX];
    size_t n;
    if (svc__b64url_decode(token, hlen_b64, part, sizeof part, &n) != SVC_OK)
        return fail(err, errlen, SVC_EAUTH, "malformed header");
    svc_jwt_alg alg;
    char kid[SVC_JWT_MAX_KID + 1];
    int rc = check_header(part, n, &alg, kid, err, errlen);
    if (rc != SVC_OK) return rc;

    unsigned char sig[ED25519_SIG];
    size_t siglen;
    if (svc__b64url_decode(d2 + 1, slen_b64, sig, sizeof sig, &siglen) != SVC_OK ||
        siglen != (alg == SVC_JWT_EDDSA ? ED25519_SIG : HS256_SIG))
        return fail(err, errlen, SVC_EAUTH, "malformed signature");

    if (!ks) return fail(err, errlen, SVC_ENOTFOUND, "no keys");
    svc_jwt_key key;
    rc = svc__keyset_pick(ks, kid[0] ? kid : NULL, &key);
    if (rc == SVC_ENOTFOUND)
        return fail(err, errlen, SVC_ENOTFOUND, kid[0] ? "unknown key id" : "no keys");
    if (rc != SVC_OK) return fail(err, errlen, SVC_EAUTH, "token has no kid");
    /* The key decides the algorithm (RFC 8725 section 3.1): an HS256 token
     * naming an Ed25519 key would otherwise be checked with the public key
     * as an HMAC secret. */
    if (key.alg != alg) {
        svc_jwt_key_wipe(&key);
        return fail(err, errlen, SVC_EAUTH, "algorithm not allowed for this key");
    }
    const unsigned char *msg = (const unsigned char *)token;
    size_t mlen = (size_t)(d2 - token);
    int ok;
    if (alg == SVC_JWT_EDDSA) {
        ok = crypto_sign_ed25519_verify_detached(sig, msg, mlen, key.pub) == 0;
    } else {
        unsigned char mac[HS256_SIG];
        hs256(&key, msg, mlen, mac);
        ok = sodium_memcmp(mac, sig, HS256_SIG) == 0;
        sodium_memzero(mac, sizeof mac);
    }
    svc_jwt_key_wipe(&key);
    if (!ok) return fail(err, errlen, SVC_EAUTH, "bad signature");

    if (svc__b64url_decode(d1 + 1, plen_b64, part, sizeof part, &n) != SVC_OK)
        return fail(err, errlen, SVC_EAUTH, "malformed payload");
    json_t *p;
    if (svc__auth_parse_object((const char *)part, n, PART_MAX, &p) != SVC_OK)
        return fail(err, errlen, SVC_EAUTH, "payload is not a JSON object");
    svc_claims tmp;
    rc = check_claims(p, policy, claims ? claims : &tmp, err, errlen);
    json_decref(p);
    return rc;
}
