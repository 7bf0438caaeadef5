/* JWT sign and verify, and every forgery RFC 8725 warns about. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "auth/internal.h"
#include "svckit/auth.h"
#include "../test.h"

#define NOW 1700000000LL
#define NOW_S "1700000000"
#define LATER "1700003600" /* NOW plus an hour: within every lifetime bound */

static svc_jwt_key ed, ed2, hs;
static const char hs_secret[] = "0123456789abcdef0123456789abcdef-hs256";

static void setup(void) {
    if (svc_jwt_key_generate(&ed) != SVC_OK || svc_jwt_key_generate(&ed2) != SVC_OK ||
        svc_jwt_key_hs256(&hs, hs_secret, strlen(hs_secret)) != SVC_OK)
        abort();
}

static svc_jwt_keyset *keyset_of(const svc_jwt_key *a, const svc_jwt_key *b) {
    svc_jwt_keyset *ks = svc_jwt_keyset_new();
    if (!ks) abort();
    if (a && svc_jwt_keyset_add(ks, a) != SVC_OK) abort();
    if (b && svc_jwt_keyset_add(ks, b) != SVC_OK) abort();
    return ks;
}

enum { SIG_KEY, SIG_HMAC_RAW, SIG_EMPTY, SIG_LITERAL };

/* Builds b64(hdr).b64(payload).sig, where sig is made with key (SIG_KEY),
 * HMAC-SHA256 with a raw secret (SIG_HMAC_RAW), empty, or a literal string. */
static char *craft(const char *hdr, const char *payload, int kind, const svc_jwt_key *key,
                   const void *secret, size_t secret_len) {
    svc_buf b = {0};
    svc__b64url_encode(&b, hdr, strlen(hdr));
    svc_buf_putc(&b, '.');
    svc__b64url_encode(&b, payload, strlen(payload));
    unsigned char sig[64];
    size_t siglen = 0;
    if (kind == SIG_KEY && key->alg == SVC_JWT_EDDSA) {
        crypto_sign_ed25519_detached(sig, NULL, (unsigned char *)b.data, b.len, key->sec);
        siglen = 64;
    } else if (kind == SIG_KEY || kind == SIG_HMAC_RAW) {
        if (kind == SIG_KEY) {
            secret = key->hmac;
            secret_len = key->hmac_len;
        }
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, secret, secret_len);
        crypto_auth_hmacsha256_update(&st, (unsigned char *)b.data, b.len);
        crypto_auth_hmacsha256_final(&st, sig);
        siglen = 32;
    }
    svc_buf_putc(&b, '.');
    if (kind == SIG_LITERAL)
        svc_buf_puts(&b, (const char *)secret);
    else
        svc__b64url_encode(&b, sig, siglen);
    return b.data;
}

/* A payload that passes with policy {.now = NOW}, with optional extra or
 * replacing members spliced in front (later duplicates are rejected, so
 * tests that replace a member build their own payload). */
static char *payload_with(const char *extra) {
    svc_buf b = {0};
    svc_buf_printf(&b,
                   "{%s%s\"iss\":\"svckit-auth\",\"sub\":\"42\",\"aud\":\"svckit\","
                   "\"iat\":%lld,\"exp\":%lld,\"name\":\"Ann\",\"role\":\"user\",\"jti\":\"j1\"}",
                   extra ? extra : "", extra ? "," : "", NOW, NOW + 600);
    return b.data;
}

static char hdr_ed[200], hdr_hs[200];

static void headers(void) {
    snprintf(hdr_ed, sizeof hdr_ed, "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"%s\"}", ed.kid);
    snprintf(hdr_hs, sizeof hdr_hs, "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", hs.kid);
}

static const svc_jwt_policy pol = {.now = NOW, .leeway_s = -1};

/* Verifies token against ks with pol; returns the status and the reason. */
static int verify(svc_jwt_keyset *ks, const char *token, char *why, size_t whylen) {
    svc_claims c;
    return svc_jwt_verify(ks, token, strlen(token), &pol, &c, why, whylen);
}

static int verify_payload(const char *payload, char *why, size_t whylen) {
    svc_jwt_keyset *ks = keyset_of(&ed, &hs);
    char *t = craft(hdr_ed, payload, SIG_KEY, &ed, NULL, 0);
    int rc = verify(ks, t, why, whylen);
    free(t);
    svc_jwt_keyset_free(ks);
    return rc;
}

TEST(sign_then_verify_eddsa) {
    setup();
    svc_jwt_keyset *ks = keyset_of(&ed, &hs);
    svc_buf tok = {0};
    REQUIRE(svc_jwt_sign(&ed, "42", "Ann Lee", "admin", 3600, &tok) == SVC_OK);
    svc_claims c;
    char why[64];
    CHECK_EQ(svc_jwt_verify(ks, tok.data, tok.len, NULL, &c, why, sizeof why), SVC_OK);
    CHECK_STR(c.sub, "42");
    CHECK_STR(c.name, "Ann Lee");
    CHECK_STR(c.role, "admin");
    CHECK_STR(c.iss, SVC_JWT_ISSUER);
    CHECK_EQ(strlen(c.jti), 22);
    CHECK_EQ(c.exp - c.iat, 3600);
    CHECK(c.iat <= time(NULL) && c.iat >= time(NULL) - 5);
    /* The header names the key and the algorithm. */
    char hdr[200];
    size_t n;
    const char *dot = strchr(tok.data, '.');
    REQUIRE(svc__b64url_decode(tok.data, (size_t)(dot - tok.data), (unsigned char *)hdr,
                               sizeof hdr - 1, &n) == SVC_OK);
    hdr[n] = '\0';
    char want[200];
    snprintf(want, sizeof want, "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"%s\"}", ed.kid);
    CHECK_STR(hdr, want);
    /* Every byte of the token matters. */
    for (size_t i = 0; i < tok.len; i++) {
        char *t = strdup(tok.data);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        CHECK(svc_jwt_verify(ks, t, tok.len, NULL, NULL, NULL, 0) != SVC_OK);
        free(t);
    }
    svc_buf_free(&tok);
    svc_jwt_keyset_free(ks);
}

TEST(sign_then_verify_hs256_without_optional_claims) {
    setup();
    svc_jwt_keyset *ks = keyset_of(&hs, NULL);
    svc_buf tok = {0};
    REQUIRE(svc_jwt_sign(&hs, "user-7", NULL, NULL, 60, &tok) == SVC_OK);
    svc_claims c;
    CHECK_EQ(svc_jwt_verify(ks, tok.data, tok.len, NULL, &c, NULL, 0), SVC_OK);
    CHECK_STR(c.sub, "user-7");
    CHECK_STR(c.name, "");
    CHECK_STR(c.role, "");
    /* The HS256 signature is 32 bytes: 43 base64url characters. */
    CHECK_EQ(strlen(strrchr(tok.data, '.') + 1), 43);
    svc_buf_free(&tok);
    svc_jwt_keyset_free(ks);
}

TEST(sign_refuses_bad_input) {
    setup();
    svc_buf tok = {0};
    svc_jwt_key pub = ed;
    pub.has_sec = 0;
    memset(pub.sec, 0, sizeof pub.sec);
    char long_sub[129];
    memset(long_sub, 'a', 128);
    long_sub[128] = '\0';
    CHECK_EQ(svc_jwt_sign(&pub, "1", NULL, NULL, 60, &tok), SVC_EINVAL);
    CHECK_EQ(svc_jwt_sign(&ed, "", NULL, NULL, 60, &tok), SVC_EINVAL);
    CHECK_EQ(svc_jwt_sign(&ed, NULL, NULL, NULL, 60, &tok), SVC_EINVAL);
    CHECK_EQ(svc_jwt_sign(&ed, long_sub, NULL, NULL, 60, &tok), SVC_EINVAL);
    CHECK_EQ(svc_jwt_sign(&ed, "1", NULL, "a-role-name-of-32-bytes-or-more!", 60, &tok),
             SVC_EINVAL);
    CHECK_EQ(svc_jwt_sign(&ed, "1", NULL, NULL, 0, &tok), SVC_EINVAL);
    CHECK_EQ(svc_jwt_sign(&ed, "1", "\xff\xfe", NULL, 60, &tok), SVC_EINVAL); /* not UTF-8 */
    CHECK_EQ(tok.len, 0);
    long_sub[127] = '\0';
    CHECK_EQ(svc_jwt_sign(&ed, long_sub, NULL, NULL, 60, &tok), SVC_OK);
    svc_buf_free(&tok);
}

TEST(sign_escapes_claims) {
    setup();
    svc_jwt_keyset *ks = keyset_of(&ed, NULL);
    svc_buf tok = {0};
    REQUIRE(svc_jwt_sign(&ed, "a\"b\\c", "Zoë \"Z\"\n", "user", 60, &tok) == SVC_OK);
    svc_claims c;
    CHECK_EQ(svc_jwt_verify(ks, tok.data, tok.len, NULL, &c, NULL, 0), SVC_OK);
    CHECK_STR(c.sub, "a\"b\\c");
    CHECK_STR(c.name, "Zoë \"Z\"\n");
    svc_buf_free(&tok);
    svc_jwt_keyset_free(ks);
}

TEST(sign_payload_signs_verbatim) {
    setup();
    headers();
    svc_jwt_keyset *ks = keyset_of(&ed, &hs);
    char *p = payload_with(NULL);
    svc_buf tok = {0};
    REQUIRE(svc_jwt_sign_payload(&hs, p, strlen(p), &tok) == SVC_OK);
    char *expect = craft(hdr_hs, p, SIG_KEY, &hs, NULL, 0);
    CHECK_STR(tok.data, expect);
    char why[64];
    CHECK_EQ(verify(ks, tok.data, why, sizeof why), SVC_OK);
    svc_buf bad = {0};
    CHECK_EQ(svc_jwt_sign_payload(&ed, "[1]", 3, &bad), SVC_EINVAL);
    CHECK_EQ(svc_jwt_sign_payload(&ed, "{\"a\":", 5, &bad), SVC_EINVAL);
    free(expect);
    free(p);
    svc_buf_free(&tok);
    svc_jwt_keyset_free(ks);
}

TEST(alg_none_in_every_spelling_fails) {
    setup();
    svc_jwt_keyset *ks = keyset_of(&ed, NULL);
    const char *spellings[] = {"none", "None", "NONE", "nOnE"};
    char *p = payload_with(NULL);
    for (int i = 0; i < 4; i++) {
        char hdr[200], why[64];
        snprintf(hdr, sizeof hdr, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", spellings[i]);
        char *t = craft(hdr, p, SIG_EMPTY, NULL, NULL, 0);
        CHECK_EQ(verify(ks, t, why, sizeof why), SVC_EAUTH);
        CHECK_STR(why, "algorithm not allowed");
        free(t);
        snprintf(hdr, sizeof hdr, "{\"alg\":\"%s\",\"kid\":\"%s\"}", spellings[i], ed.kid);
        t = craft(hdr, p, SIG_EMPTY, NULL, NULL, 0);
        CHECK_EQ(verify(ks, t, why, sizeof why), SVC_EAUTH);
        free(t);
        /* Even with a real signature appended. */
        t = craft(hdr, p, SIG_KEY, &ed, NULL, 0);
        CHECK_EQ(verify(ks, t, why, sizeof why), SVC_EAUTH);
        free(t);
    }
    /* Other algorithms and case variants of the real ones are unknown too. */
    const char *others[] = {"eddsa", "EDDSA", "hs256", "HS384", "RS256", "ES256", "Ed25519", ""};
    for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
        char hdr[200];
        snprintf(hdr, sizeof hdr, "{\"alg\":\"%s\"}", others[i]);
        char *t = craft(hdr, p, SIG_KEY, &ed, NULL, 0);
        CHECK_EQ(verify(ks, t, NULL, 0), SVC_EAUTH);
        free(t);
    }
    free(p);
    svc_jwt_keyset_free(ks);
}

TEST(hs256_with_the_ed25519_public_key_as_secret_fails) {
    setup();
    svc_jwt_keyset *ks = keyset_of(&ed, NULL);
    char *p = payload_with(NULL);
    char x[64];
    svc__b64url_encode_str(x, ed.pub, 32);
    const void *secrets[] = {ed.pub, x};
    size_t lens[] = {32, strlen(x)};
    for (int i = 0; i < 2; i++) {
        char hdr[200], why[80];
        /* Naming the Ed25519 key ... */
        snprintf(hdr, sizeof hdr, "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", ed.kid);
        char *t = craft(hdr, p, SIG_HMAC_RAW, NULL, secrets[i], lens[i]);
        CHECK_EQ(verify(ks, t, why, sizeof why), SVC_EAUTH);
        CHECK_STR(why, "algorithm not allowed for this key");
        free(t);
        /* ... or no key at all (the set's only key is taken). */
        t = craft("{\"alg\":\"HS256\"}", p, SIG_HMAC_RAW, NULL, secrets[i], lens[i]);
        CHECK_EQ(verify(ks, t, why, sizeof why), SVC_EAUTH);
        CHECK_STR(why, "algorithm not allowed for this key");
        free(t);
    }
    free(p);
    svc_jwt_keyset_free(ks);
}

TEST(kid_of_the_other_algorithm_fails) {
    setup();
    svc_jwt_keyset *ks = keyset_of(&ed, &hs);
    char *p = payload_with(NULL);
    char hdr[200], why[80];
    /* An EdDSA token, properly signed, that names the HS256 key. */
    snprintf(hdr, sizeof hdr, "{\"alg\":\"EdDSA\",\"kid\":\"%s\"}", hs.kid);
    char *t = craft(hdr, p, SIG_KEY, &ed, NULL, 0);
    CHECK_EQ(verify(ks, t, why, sizeof why), SVC_EAUTH);
    CHECK_STR(why, "algorithm not allowed for this key");
    free(t);
    /* An HS256 token, properly MACed, that names the Ed25519 key. */
    snprintf(hdr, sizeof hdr, "{\"alg\":\"HS256\",\"kid\":\"%s\"}", ed.kid);
    t = craft(hdr, p, SIG_KEY, &hs, NULL, 0);
    CHECK_EQ(verify(ks, t, why, sizeof why), SVC_EAUTH);
    CHECK_STR(why, "algorithm not allowed for this key");
    free(t);
    free(p);
    svc_jwt_keyset_free(ks);
}

TEST(key_choice_by_kid_or_single_key) {
    setup();
    headers();
    char *p = payload_with(NULL);
    char why[64];
    svc_jwt_keyset *one = keyset_of(&ed, NULL), *two = keyset_of(&ed, &ed2),
                   *none = keyset_of(NULL, NULL);
    char *with_kid = craft(hdr_ed, p, SIG_KEY, &ed, NULL, 0);
    char *no_kid = craft("{\"alg\":\"EdDSA\"}", p, SIG_KEY, &ed, NULL, 0);
    char *by_ed2 = craft(hdr_ed, p, SIG_KEY, &ed2, NULL, 0); /* names ed, signed by ed2 */
    CHECK_EQ(verify(one, with_kid, why, sizeof why), SVC_OK);
    CHECK_EQ(verify(one, no_kid, why, sizeof why), SVC_OK);
    CHECK_EQ(verify(two, with_kid, why, sizeof why), SVC_OK);
    CHECK_EQ(verify(two, no_kid, why, sizeof why), SVC_EAUTH);
    CHECK_STR(why, "token has no kid");
    CHECK_EQ(verify(two, by_ed2, why, sizeof why), SVC_EAUTH);
    CHECK_STR(why, "bad signature");
    CHECK_EQ(verify(none, with_kid, why, sizeof why), SVC_ENOTFOUND);
    CHECK_EQ(verify(none, no_kid, why, sizeof why), SVC_ENOTFOUND);
    CHECK_EQ(svc_jwt_verify(NULL, with_kid, strlen(with_kid), &pol, NULL, NULL, 0),
             SVC_ENOTFOUND);
    /* Unknown kid: SVC_ENOTFOUND, so the caller can refresh its JWKS. */
    char hdr[100];
    snprintf(hdr, sizeof hdr, "{\"alg\":\"EdDSA\",\"kid\":\"%s\"}", ed2.kid);
    char *unknown = craft(hdr, p, SIG_KEY, &ed2, NULL, 0);
    CHECK_EQ(verify(one, unknown, why, sizeof why), SVC_ENOTFOUND);
    CHECK_STR(why, "unknown key id");
    /* A kid that no key could have is malformed, not unknown. */
    const char *bad_kids[] = {"\"\"", "7", "\"a b\"", "\"0123456789012345678901234567890123456789012345678901234567890123\""};
    for (int i = 0; i < 4; i++) {
        snprintf(hdr, sizeof hdr, "{\"alg\":\"EdDSA\",\"kid\":%s}", bad_kids[i]);
        char *t = craft(hdr, p, SIG_KEY, &ed, NULL, 0);
        CHECK_EQ(verify(one, t, why, sizeof why), SVC_EAUTH);
        CHECK_STR(why, "bad kid");
        free(t);
    }
    free(unknown);
    free(with_kid);
    free(no_kid);
    free(by_ed2);
    free(p);
    svc_jwt_keyset_free(one);
    svc_jwt_keyset_free(two);
    svc_jwt_keyset_free(none);
}

TEST(bad_signatures_fail) {
    setup();
    headers();
    svc_jwt_keyset *ks = keyset_of(&ed, &hs);
    char *p = payload_with(NULL);
    char why[64];
    char *good = craft(hdr_ed, p, SIG_KEY, &ed, NULL, 0);
    REQUIRE(verify(ks, good, why, sizeof why) == SVC_OK);
    size_t len = strlen(good);
    /* Truncated by one (85 chars: not base64) and by two (63 bytes). */
    for (size_t cut = 1; cut <= 4; cut++) {
        char *t = strndup(good, len - cut);
        CHECK_EQ(verify(ks, t, why, sizeof why), SVC_EAUTH);
        free(t);
    }
    char *empty = craft(hdr_ed, p, SIG_EMPTY, NULL, NULL, 0);
    CHECK_EQ(verify(ks, empty, why, sizeof why), SVC_EAUTH);
    CHECK_STR(why, "malformed signature");
    /* A flipped bit in the last byte of the signature. */
    char *flip = strdup(good);
    flip[len - 2] = flip[len - 2] == 'A' ? 'B' : 'A';
    CHECK_EQ(verify(ks, flip, why, sizeof why), SVC_EAUTH);
    CHECK_STR(why, "bad signature");
    /* A 64-byte signature on an HS256 token, a 32-byte one on EdDSA. */
    char *hs_long = craft(hdr_hs, p, SIG_LITERAL, NULL, strrchr(good, '.') + 1, 0);
    CHECK_EQ(verify(ks, hs_long, why, sizeof why), SVC_EAUTH);
    char *hs_good = craft(hdr_hs, p, SIG_KEY, &hs, NULL, 0);
    CHECK_EQ(verify(ks, hs_good, why, sizeof why), SVC_OK);
    char *ed_short = craft(hdr_ed, p, SIG_LITERAL, NULL, strrchr(hs_good, '.') + 1, 0);
    CHECK_EQ(verify(ks, ed_short, why, sizeof why), SVC_EAUTH);
    /* HS256 with a wrong secret. */
    char *hs_wrong = craft(hdr_hs, p, SIG_HMAC_RAW, NULL, "x-wrong-secret-of-thirty-two-bytes!", 35);
    CHECK_EQ(verify(ks, hs_wrong, why, sizeof why), SVC_EAUTH);
    CHECK_STR(why, "bad signature");
    free(good);
    free(empty);
    free(flip);
    free(hs_long);
    free(hs_good);
    free(ed_short);
    free(hs_wrong);
    free(p);
    svc_jwt_keyset_free(ks);
}

TEST(wrong_number_of_parts_fails) {
    setup();
    headers();
    svc_jwt_keyset *ks = keyset_of(&ed, NULL);
    char *p = payload_with(NULL);
    char *good = craft(hdr_ed, p, SIG_KEY, &ed, NULL, 0);
    char buf[2048], why[64];
    const char *d1 = strchr(good, '.'), *d2 = strrchr(good, '.');
    snprintf(buf, sizeof buf, "%s.", good);
    CHECK_EQ(verify(ks, buf, why, sizeof why), SVC_EAUTH);
    snprintf(buf, sizeof buf, "%s.AAAA", good);
    CHECK_EQ(verify(ks, buf, why, sizeof why), SVC_EAUTH);
    CHECK_STR(why, "malformed token");
    snprintf(buf, sizeof buf, "%.*s", (int)(d2 - good), good); /* two parts */
    CHECK_EQ(verify(ks, buf, why, sizeof why), SVC_EAUTH);
    snprintf(buf, sizeof buf, "%.*s.%s", (int)(d1 - good), good, d2); /* h..s */
    CHECK_EQ(verify(ks, buf, why, sizeof why), SVC_EAUTH);
    snprintf(buf, sizeof buf, "%s", d1); /* .p.s */
    CHECK_EQ(verify(ks, buf, why, sizeof why), SVC_EAUTH);
    CHECK_EQ(verify(ks, "..", why, sizeof why), SVC_EAUTH);
    CHECK_EQ(verify(ks, "", why, sizeof why), SVC_EAUTH);
    CHECK_EQ(svc_jwt_verify(ks, NULL, 0, &pol, NULL, why, sizeof why), SVC_EAUTH);
    /* A NUL inside the given length. */
    snprintf(buf, sizeof buf, "%s", good);
    buf[5] = '\0';
    CHECK_EQ(svc_jwt_verify(ks, buf, strlen(good), &pol, NULL, why, sizeof why), SVC_EAUTH);
    free(good);
    free(p);
    svc_jwt_keyset_free(ks);
}

TEST(key_carrying_and_critical_headers_fail) {
    setup();
    svc_jwt_keyset *ks = keyset_of(&ed, NULL);
    char *p = payload_with(NULL);
    char x[64];
    svc__b64url_encode_str(x, ed.pub, 32);
    char extra[5][300];
    snprintf(extra[0], 300, "\"jku\":\"http://127.0.0.1:1/jwks.json\"");
    snprintf(extra[1], 300, "\"x5u\":\"http://127.0.0.1:1/cert.pem\"");
    snprintf(extra[2], 300, "\"jwk\":{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"}", x);
    snprintf(extra[3], 300, "\"x5c\":[\"MIIB\"]");
    snprintf(extra[4], 300, "\"crit\":[\"exp\"]");
    for (int i = 0; i < 5; i++) {
        char hdr[2000], why[64];
        /* Each is validly signed by the trusted key: the header alone fails it. */
        snprintf(hdr, sizeof hdr, "{\"alg\":\"EdDSA\",\"kid\":\"%s\",%s}", ed.kid, extra[i]);
        char *t = craft(hdr, p, SIG_KEY, &ed, NULL, 0);
        CHECK_EQ(verify(ks, t, why, sizeof why), SVC_EAUTH);
        CHECK_STR(why, "header parameter not allowed");
        free(t);
    }
    free(p);
    svc_jwt_keyset_free(ks);
}

TEST(header_rules) {
    setup();
    svc_jwt_keyset *ks = keyset_of(&ed, NULL);
    char *p = payload_with(NULL);
    struct {
        const char *hdr;
        int ok;
    } cases[] = {
        {"{\"alg\":\"EdDSA\"}", 1},
        {"{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}", 1},
        {"{\"alg\":\"EdDSA\",\"typ\":\"jwt\"}", 1},
        {"{\"alg\":\"EdDSA\",\"typ\":\"application/jwt\"}", 1},
        {"{\"alg\":\"EdDSA\",\"x5t\":\"abc\",\"cty\":\"x\"}", 1},
        {"{\"alg\":\"EdDSA\",\"typ\":\"JOSE\"}", 0},
        {"{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\"}", 0},
        {"{\"alg\":\"EdDSA\",\"typ\":1}", 0},
        {"{\"typ\":\"JWT\"}", 0},
        {"{\"alg\":null}", 0},
        {"{\"alg\":[\"EdDSA\"]}", 0},
        {"{\"alg\":\"EdDSA\",\"alg\":\"none\"}", 0}, /* duplicate member */
        {"{\"alg\":\"EdDSA\\u0000\"}", 0},
        {"[\"EdDSA\"]", 0},
        {"\"EdDSA\"", 0},
        {"{\"alg\":\"EdDSA\"", 0},
        {"{\"alg\":\"EdDSA\"} x", 0},
        {"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *t = craft(cases[i].hdr, p, SIG_KEY, &ed, NULL, 0);
        int rc = verify(ks, t, NULL, 0);
        if ((rc == SVC_OK) != cases[i].ok)
            test_fail(__FILE__, __LINE__, "header %s: rc %d", cases[i].hdr, rc);
        free(t);
    }
    free(p);
    svc_jwt_keyset_free(ks);
}

TEST(times_with_leeway_boundaries) {
    setup();
    headers();
    char why[64];
    struct {
        const char *before; /* members before the time, which is followed by after */
        long long t;
        const char *after;
        int ok;
        const char *why;
    } cases[] = {
        {"\"exp\":", NOW - 30, "", 1, ""},
        {"\"exp\":", NOW - 31, "", 0, "token expired"},
        {"\"exp\":", NOW - 100000, "", 0, "token expired"},
        {"\"exp\":", NOW + 30, ",\"nbf\":1", 1, ""},
        {"\"exp\":" LATER ",\"nbf\":", NOW + 30, "", 1, ""},
        {"\"exp\":" LATER ",\"nbf\":", NOW + 31, "", 0, "token not yet valid"},
        {"\"exp\":" LATER ",\"iat\":", NOW + 30, "", 1, ""},
        {"\"exp\":" LATER ",\"iat\":", NOW + 31, "", 0, "token issued in the future"},
        {"\"exp\":", NOW - 31, ".9", 0, "token expired"},
        {"\"exp\":", NOW, ".0", 1, ""},
        {"\"exp\":", NOW, ",\"nbf\":\"0\"", 0, "nbf is not a number"},
        {"\"exp\":", NOW, ",\"iat\":null", 0, "iat is not a number"},
    };
    svc_jwt_keyset *ks = keyset_of(&ed, NULL);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char payload[400];
        snprintf(payload, sizeof payload,
                 "{\"iss\":\"svckit-auth\",\"sub\":\"1\",\"aud\":\"svckit\",%s%lld%s}",
                 cases[i].before, cases[i].t, cases[i].after);
        char *t = craft(hdr_ed, payload, SIG_KEY, &ed, NULL, 0);
        int rc = verify(ks, t, why, sizeof why);
        if ((rc == SVC_OK) != cases[i].ok || (!cases[i].ok && strcmp(why, cases[i].why) != 0))
            test_fail(__FILE__, __LINE__, "%s: rc %d (%s)", payload, rc, why);
        free(t);
    }
    /* Leeway 0: exp == now passes, exp == now - 1 fails. */
    svc_jwt_policy strict = {.now = NOW, .leeway_s = 0};
    char payload[300];
    snprintf(payload, sizeof payload,
             "{\"iss\":\"svckit-auth\",\"sub\":\"1\",\"aud\":\"svckit\",\"exp\":%lld}", NOW);
    char *t = craft(hdr_ed, payload, SIG_KEY, &ed, NULL, 0);
    CHECK_EQ(svc_jwt_verify(ks, t, strlen(t), &strict, NULL, NULL, 0), SVC_OK);
    strict.now = NOW + 1;
    CHECK_EQ(svc_jwt_verify(ks, t, strlen(t), &strict, NULL, why, sizeof why), SVC_EAUTH);
    CHECK_STR(why, "token expired");
    free(t);
    svc_jwt_keyset_free(ks);
}

TEST(exp_required_and_numeric) {
    setup();
    headers();
    char why[64];
    const char *base = "\"iss\":\"svckit-auth\",\"sub\":\"1\",\"aud\":\"svckit\"";
    char payload[300];
    snprintf(payload, sizeof payload, "{%s}", base);
    CHECK_EQ(verify_payload(payload, why, sizeof why), SVC_EAUTH);
    CHECK_STR(why, "token has no exp");
    snprintf(payload, sizeof payload, "{%s,\"exp\":\"%lld\"}", base, NOW + 60);
    CHECK_EQ(verify_payload(payload, why, sizeof why), SVC_EAUTH);
    CHECK_STR(why, "exp is not a number");
    snprintf(payload, sizeof payload, "{%s,\"exp\":true}", base);
    CHECK_EQ(verify_payload(payload, why, sizeof why), SVC_EAUTH);
    snprintf(payload, sizeof payload, "{%s,\"exp\":%lld.5}", base, NOW + 60);
    CHECK_EQ(verify_payload(payload, why, sizeof why), SVC_OK);
    snprintf(payload, sizeof payload, "{%s,\"exp\":-1e300}", base);
    CHECK_EQ(verify_payload(payload, why, sizeof why), SVC_EAUTH);
    snprintf(payload, sizeof payload, "{%s,\"exp\":99999999999999999999999}", base);
    CHECK_EQ(verify_payload(payload, why, sizeof why), SVC_EAUTH); /* not parsable */
}

/* The finding: a validly signed token with exp 1e300 never expired. */
TEST(exp_is_bounded_by_the_max_lifetime) {
    setup();
    headers();
    char why[64], payload[300];
    const char *base = "\"iss\":\"svckit-auth\",\"sub\":\"1\",\"aud\":\"svckit\"";
    const char *far[] = {"1e300", "1e19", "9223372036854775807", "4611686018427387904", "9999999999"};
    for (size_t i = 0; i < sizeof far / sizeof *far; i++) {
        snprintf(payload, sizeof payload, "{%s,\"exp\":%s}", base, far[i]);
        CHECK_EQ(verify_payload(payload, why, sizeof why), SVC_EAUTH);
        CHECK_STR(why, "exp is too far in the future");
        snprintf(payload, sizeof payload, "{%s,\"iat\":%lld,\"exp\":%s}", base, NOW, far[i]);
        CHECK_EQ(verify_payload(payload, why, sizeof why), SVC_EAUTH);
    }
    /* The default bound: exp up to now + 24 h (+ leeway) and iat + 24 h. */
    long long max = SVC_JWT_MAX_LIFETIME_S, leeway = SVC_JWT_LEEWAY_S;
    struct {
        const char *before; /* members before a number, which is followed by after */
        long long t;
        const char *after;
        int ok;
        const char *why;
    } cases[] = {
        {"\"exp\":", NOW + max + leeway, "", 1, ""},
        {"\"exp\":", NOW + max + leeway + 1, "", 0, "exp is too far in the future"},
        {"\"exp\":", NOW + max + leeway, ".5", 1, ""}, /* rounded down */
        {"\"iat\":" NOW_S ",\"exp\":", NOW + max, "", 1, ""},
        {"\"iat\":" NOW_S ",\"exp\":", NOW + max + 1, "", 0, "token lifetime too long"},
        {"\"iat\":1699999900,\"exp\":", NOW + max, "", 0, "token lifetime too long"},
        {"\"iat\":1699999999.5,\"exp\":", NOW + max, "", 1, ""}, /* iat rounded up */
        /* Huge or tiny iat, nbf: clamped, no overflow, the right verdict. */
        {"\"iat\":-1e300,\"exp\":", NOW + 60, "", 0, "token lifetime too long"},
        {"\"iat\":-9223372036854775807,\"exp\":", NOW + 60, "", 0, "token lifetime too long"},
        {"\"iat\":1e300,\"exp\":", NOW + 60, "", 0, "token issued in the future"},
        {"\"nbf\":1e300,\"exp\":", NOW + 60, "", 0, "token not yet valid"},
        {"\"nbf\":-1e300,\"exp\":", NOW + 60, "", 1, ""},
        {"\"nbf\":-9223372036854775808,\"exp\":", NOW + 60, "", 1, ""},
        {"\"nbf\":1e400,\"exp\":", NOW + 60, "", 0, "payload is not a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(payload, sizeof payload, "{%s,%s%lld%s}", base, cases[i].before, cases[i].t, cases[i].after);
        int rc = verify_payload(payload, why, sizeof why);
        if ((rc == SVC_OK) != cases[i].ok || (!cases[i].ok && strcmp(why, cases[i].why) != 0))
            test_fail(__FILE__, __LINE__, "%s: rc %d (%s)", payload, rc, why);
    }
    /* A policy's own bound, and one too large to add to anything. */
    svc_jwt_keyset *ks = keyset_of(&ed, NULL);
    snprintf(payload, sizeof payload, "{%s,\"iat\":%lld,\"exp\":%lld}", base, NOW, NOW + 7200);
    char *t = craft(hdr_ed, payload, SIG_KEY, &ed, NULL, 0);
    svc_jwt_policy hour = {.now = NOW, .leeway_s = -1, .max_lifetime_s = 3600};
    CHECK_EQ(svc_jwt_verify(ks, t, strlen(t), &hour, NULL, why, sizeof why), SVC_EAUTH);
    CHECK_STR(why, "exp is too far in the future");
    hour.max_lifetime_s = 7200;
    CHECK_EQ(svc_jwt_verify(ks, t, strlen(t), &hour, NULL, NULL, 0), SVC_OK);
    free(t);
    snprintf(payload, sizeof payload, "{%s,\"iat\":1e300,\"exp\":1e300}", base);
    t = craft(hdr_ed, payload, SIG_KEY, &ed, NULL, 0);
    /* Extreme policies are clamped as the claims are: no overflow (UBSan
     * watches), and still a verdict. */
    svc_jwt_policy huge = {.now = INT64_MAX, .leeway_s = INT32_MAX, .max_lifetime_s = INT64_MAX};
    CHECK_EQ(svc_jwt_verify(ks, t, strlen(t), &huge, NULL, why, sizeof why), SVC_EAUTH);
    CHECK_STR(why, "exp is too far in the future");
    huge.now = INT64_MIN + 1;
    CHECK_EQ(svc_jwt_verify(ks, t, strlen(t), &huge, NULL, why, sizeof why), SVC_EAUTH);
    CHECK_STR(why, "exp is too far in the future");
    free(t);
    svc_jwt_keyset_free(ks);
}

TEST(issuer_and_audience) {
    setup();
    headers();
    char why[64];
    struct {
        const char *members;
        int ok;
        const char *why;
    } cases[] = {
        {"\"iss\":\"svckit-auth\",\"aud\":\"svckit\"", 1, ""},
        {"\"iss\":\"svckit-auth\",\"aud\":[\"other\",\"svckit\"]", 1, ""},
        {"\"iss\":\"svckit-auth\",\"aud\":[\"svckit\"]", 1, ""},
        {"\"iss\":\"svckit-auth\",\"aud\":\"other\"", 0, "wrong audience"},
        {"\"iss\":\"svckit-auth\",\"aud\":\"Svckit\"", 0, "wrong audience"},
        {"\"iss\":\"svckit-auth\",\"aud\":[\"other\"]", 0, "wrong audience"},
        {"\"iss\":\"svckit-auth\",\"aud\":[]", 0, "wrong audience"},
        {"\"iss\":\"svckit-auth\",\"aud\":[\"svckit\",7]", 0, "wrong audience"},
        {"\"iss\":\"svckit-auth\",\"aud\":[[\"svckit\"]]", 0, "wrong audience"},
        {"\"iss\":\"svckit-auth\",\"aud\":null", 0, "wrong audience"},
        {"\"iss\":\"svckit-auth\"", 0, "wrong audience"},
        {"\"iss\":\"evil\",\"aud\":\"svckit\"", 0, "wrong issuer"},
        {"\"iss\":\"svckit-auth \",\"aud\":\"svckit\"", 0, "wrong issuer"},
        {"\"iss\":[\"svckit-auth\"],\"aud\":\"svckit\"", 0, "wrong issuer"},
        {"\"aud\":\"svckit\"", 0, "wrong issuer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char payload[400];
        snprintf(payload, sizeof payload, "{\"sub\":\"1\",\"exp\":%lld,%s}", NOW + 60,
                 cases[i].members);
        int rc = verify_payload(payload, why, sizeof why);
        if ((rc == SVC_OK) != cases[i].ok || (!cases[i].ok && strcmp(why, cases[i].why) != 0))
            test_fail(__FILE__, __LINE__, "%s: rc %d (%s)", payload, rc, why);
    }
    /* A policy with its own issuer and audience. */
    svc_jwt_keyset *ks = keyset_of(&ed, NULL);
    char payload[300];
    snprintf(payload, sizeof payload,
             "{\"sub\":\"1\",\"exp\":%lld,\"iss\":\"me\",\"aud\":[\"a\",\"b\"]}", NOW + 60);
    char *t = craft(hdr_ed, payload, SIG_KEY, &ed, NULL, 0);
    svc_jwt_policy mine = {.issuer = "me", .audience = "b", .now = NOW, .leeway_s = -1};
    CHECK_EQ(svc_jwt_verify(ks, t, strlen(t), &mine, NULL, NULL, 0), SVC_OK);
    CHECK_EQ(svc_jwt_verify(ks, t, strlen(t), &pol, NULL, NULL, 0), SVC_EAUTH);
    free(t);
    svc_jwt_keyset_free(ks);
}

TEST(string_claims_are_checked_not_truncated) {
    setup();
    headers();
    char why[64], payload[1200], big[300];
    const char *base = "\"iss\":\"svckit-auth\",\"aud\":\"svckit\",\"exp\":" LATER;
    memset(big, 'x', sizeof big);
    struct {
        const char *name;
        int max; /* longest accepted */
    } fields[] = {{"sub", 127}, {"name", 127}, {"role", 31}, {"jti", 63}};
    for (int f = 0; f < 4; f++) {
        for (int extra = 0; extra <= 1; extra++) {
            int n = fields[f].max + extra;
            if (f == 0)
                snprintf(payload, sizeof payload, "{%s,\"sub\":\"%.*s\"}", base, n, big);
            else
                snprintf(payload, sizeof payload, "{%s,\"sub\":\"1\",\"%s\":\"%.*s\"}", base,
                         fields[f].name, n, big);
            int rc = verify_payload(payload, why, sizeof why);
            if ((rc == SVC_OK) != !extra)
                test_fail(__FILE__, __LINE__, "%s of %d bytes: rc %d", fields[f].name, n, rc);
        }
    }
    snprintf(payload, sizeof payload, "{%s}", base);
    CHECK_EQ(verify_payload(payload, why, sizeof why), SVC_EAUTH);
    CHECK_STR(why, "bad sub");
    snprintf(payload, sizeof payload, "{%s,\"sub\":\"\"}", base);
    CHECK_EQ(verify_payload(payload, why, sizeof why), SVC_EAUTH);
    snprintf(payload, sizeof payload, "{%s,\"sub\":42}", base);
    CHECK_EQ(verify_payload(payload, why, sizeof why), SVC_EAUTH);
    snprintf(payload, sizeof payload, "{%s,\"sub\":\"1\",\"role\":[\"admin\"]}", base);
    CHECK_EQ(verify_payload(payload, why, sizeof why), SVC_EAUTH);
    CHECK_STR(why, "bad role");
    snprintf(payload, sizeof payload, "{%s,\"sub\":\"1\",\"name\":null}", base);
    CHECK_EQ(verify_payload(payload, why, sizeof why), SVC_EAUTH);
}

TEST(payload_must_be_an_object) {
    setup();
    headers();
    char why[64];
    const char *bad[] = {"[]", "\"svckit\"", "123", "null", "{", "{\"sub\":\"1\"} {}",
                         "{\"sub\":\"1\",\"sub\":\"2\",\"iss\":\"svckit-auth\","
                         "\"aud\":\"svckit\",\"exp\":" LATER "}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = verify_payload(bad[i], why, sizeof why);
        CHECK_EQ(rc, SVC_EAUTH);
        if (strcmp(why, "payload is not a JSON object") != 0)
            test_fail(__FILE__, __LINE__, "payload %s: %s", bad[i], why);
    }
}

TEST(base64_must_be_strict) {
    setup();
    headers();
    svc_jwt_keyset *ks = keyset_of(&ed, NULL);
    char *p = payload_with(NULL);
    char *good = craft(hdr_ed, p, SIG_KEY, &ed, NULL, 0);
    REQUIRE(verify(ks, good, NULL, 0) == SVC_OK);
    const char *d1 = strchr(good, '.'), *d2 = strrchr(good, '.');
    char buf[2048], why[64];
    /* Padding on each part. */
    snprintf(buf, sizeof buf, "%.*s=%s", (int)(d1 - good), good, d1);
    CHECK_EQ(verify(ks, buf, why, sizeof why), SVC_EAUTH);
    snprintf(buf, sizeof buf, "%.*s==%s", (int)(d2 - good), good, d2);
    CHECK_EQ(verify(ks, buf, why, sizeof why), SVC_EAUTH);
    snprintf(buf, sizeof buf, "%s==", good);
    CHECK_EQ(verify(ks, buf, why, sizeof why), SVC_EAUTH);
    /* The standard alphabet, whitespace, and other bytes. */
    const char bad_chars[] = {'+', '/', ' ', '\n', '\t', '=', '"', '%', '\x80'};
    for (size_t i = 0; i < sizeof bad_chars; i++) {
        for (size_t at = 0; at < 3; at++) {
            snprintf(buf, sizeof buf, "%s", good);
            size_t pos = at == 0 ? 2 : at == 1 ? (size_t)(d1 - good) + 2 : (size_t)(d2 - good) + 2;
            buf[pos] = bad_chars[i];
            CHECK_EQ(verify(ks, buf, why, sizeof why), SVC_EAUTH);
        }
    }
    snprintf(buf, sizeof buf, " %s", good);
    CHECK_EQ(verify(ks, buf, why, sizeof why), SVC_EAUTH);
    snprintf(buf, sizeof buf, "%s ", good);
    CHECK_EQ(verify(ks, buf, why, sizeof why), SVC_EAUTH);
    /* A non-canonical last character (the same bytes, spelled differently). */
    snprintf(buf, sizeof buf, "%s", good);
    size_t last = strlen(buf) - 1; /* 86 chars: the last carries 2 unused bits */
    char alt = buf[last] == 'A' ? 'B' : buf[last] + 1;
    buf[last] = alt;
    CHECK_EQ(verify(ks, buf, why, sizeof why), SVC_EAUTH);
    free(good);
    free(p);
    svc_jwt_keyset_free(ks);
}

TEST(oversize_token_fails) {
    setup();
    headers();
    svc_jwt_keyset *ks = keyset_of(&ed, NULL);
    char why[64];
    /* A validly signed token just over the limit, and one just under. */
    for (int over = 0; over <= 1; over++) {
        size_t fill = 1;
        char *t = NULL;
        for (;;) {
            svc_buf pl = {0};
            char *pad = malloc(fill + 1);
            memset(pad, 'x', fill);
            pad[fill] = '\0';
            svc_buf_printf(&pl, "\"pad\":\"%s\"", pad);
            free(pad);
            char *p = payload_with(pl.data);
            svc_buf_free(&pl);
            free(t);
            t = craft(hdr_ed, p, SIG_KEY, &ed, NULL, 0);
            free(p);
            size_t len = strlen(t);
            if (over ? len > SVC_JWT_MAX_TOKEN : len + 4 > SVC_JWT_MAX_TOKEN) break;
            fill += len + 64 < SVC_JWT_MAX_TOKEN ? 48 : 1;
        }
        int rc = verify(ks, t, why, sizeof why);
        if (over) {
            CHECK_EQ(rc, SVC_EAUTH);
            CHECK_STR(why, "token too large");
        } else {
            CHECK_EQ(rc, SVC_OK);
        }
        free(t);
    }
    /* Size is checked before anything is read. */
    char *huge = malloc(100000);
    memset(huge, 'A', 100000);
    CHECK_EQ(svc_jwt_verify(ks, huge, 100000, &pol, NULL, why, sizeof why), SVC_EAUTH);
    free(huge);
    svc_jwt_keyset_free(ks);
}

TEST(reason_never_echoes_the_token) {
    setup();
    svc_jwt_keyset *ks = keyset_of(&ed, NULL);
    char why[256];
    const char *t = "eyJzZWNyZXQiOiJ0b2tlbiJ9.c2VjcmV0.c2ln";
    CHECK_EQ(svc_jwt_verify(ks, t, strlen(t), &pol, NULL, why, sizeof why), SVC_EAUTH);
    CHECK(why[0] != '\0');
    CHECK(strstr(why, "eyJ") == NULL && strstr(why, "secret") == NULL);
    /* A tiny reason buffer is truncated, not overrun. */
    char tiny[4];
    CHECK_EQ(svc_jwt_verify(ks, "a.b.c", 5, &pol, NULL, tiny, sizeof tiny), SVC_EAUTH);
    CHECK_EQ(strlen(tiny), 3);
    svc_jwt_keyset_free(ks);
}

TEST(hs256_long_secret_matches_rfc2104) {
    setup();
    headers();
    unsigned char secret[100];
    for (size_t i = 0; i < sizeof secret; i++) secret[i] = (unsigned char)i;
    svc_jwt_key k;
    REQUIRE(svc_jwt_key_hs256(&k, secret, sizeof secret) == SVC_OK);
    CHECK_EQ(k.hmac_len, 32);
    svc_jwt_keyset *ks = keyset_of(&k, NULL);
    char *p = payload_with(NULL);
    /* MACed with the full 100-byte secret by libsodium's own HMAC. */
    char *t = craft(hdr_hs, p, SIG_HMAC_RAW, NULL, secret, sizeof secret);
    CHECK_EQ(verify(ks, t, NULL, 0), SVC_OK);
    /* And a token we sign verifies with the full secret. */
    svc_buf tok = {0};
    REQUIRE(svc_jwt_sign_payload(&k, p, strlen(p), &tok) == SVC_OK);
    CHECK_STR(tok.data, t);
    svc_buf_free(&tok);
    free(t);
    free(p);
    svc_jwt_keyset_free(ks);
}

TEST(hs256_secret_length_limits) {
    svc_jwt_key k;
    char s[64] = "0123456789012345678901234567890123456789";
    CHECK_EQ(svc_jwt_key_hs256(&k, s, SVC_JWT_MIN_SECRET - 1), SVC_EINVAL);
    CHECK_EQ(svc_jwt_key_hs256(&k, s, SVC_JWT_MIN_SECRET), SVC_OK);
    CHECK_STR(k.kid, SVC_JWT_HS256_KID);
    CHECK_EQ(k.alg, SVC_JWT_HS256);
    CHECK_EQ(svc_jwt_key_hs256(&k, NULL, 40), SVC_EINVAL);
    /* A key edited to a short secret is refused by the key set. */
    REQUIRE(svc_jwt_key_hs256(&k, s, 40) == SVC_OK);
    k.hmac_len = 16;
    svc_jwt_keyset *ks = keyset_of(NULL, NULL);
    CHECK_EQ(svc_jwt_keyset_add(ks, &k), SVC_EINVAL);
    svc_jwt_keyset_free(ks);
}
