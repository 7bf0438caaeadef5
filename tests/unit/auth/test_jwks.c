/* Key sets, JWK and JWKS documents, key files. */
#include <dirent.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/internal.h"
#include "svckit/auth.h"
#include "../test.h"

static char *x_of(const svc_jwt_key *k) {
    static char x[64];
    svc__b64url_encode_str(x, k->pub, 32);
    return x;
}

static int load(svc_jwt_keyset *ks, const char *doc) {
    return svc_jwt_keyset_load_jwks(ks, doc, strlen(doc));
}

static int verifies(svc_jwt_keyset *ks, const svc_jwt_key *signer) {
    svc_buf tok = {0};
    if (svc_jwt_sign(signer, "1", NULL, NULL, 60, &tok) != SVC_OK) return -100;
    int rc = svc_jwt_verify(ks, tok.data, tok.len, NULL, NULL, NULL, 0);
    svc_buf_free(&tok);
    return rc;
}

TEST(keyset_add_rules) {
    svc_jwt_keyset *ks = svc_jwt_keyset_new();
    REQUIRE(ks);
    svc_jwt_key k, hs;
    REQUIRE(svc_jwt_key_generate(&k) == SVC_OK);
    CHECK_EQ(strlen(k.kid), 16);
    CHECK_EQ(svc_jwt_keyset_count(ks), 0);
    CHECK_EQ(svc_jwt_keyset_add(ks, &k), SVC_OK);
    CHECK_EQ(svc_jwt_keyset_add(ks, &k), SVC_EEXIST);
    CHECK(svc_jwt_keyset_has(ks, k.kid));
    CHECK(!svc_jwt_keyset_has(ks, "nope"));
    CHECK(!svc_jwt_keyset_has(ks, NULL));
    REQUIRE(svc_jwt_key_hs256(&hs, "0123456789abcdef0123456789abcdef", 32) == SVC_OK);
    CHECK_EQ(svc_jwt_keyset_add(ks, &hs), SVC_OK);
    for (int i = 2; i < SVC_JWT_MAX_KEYS; i++) {
        svc_jwt_key n;
        REQUIRE(svc_jwt_key_generate(&n) == SVC_OK);
        CHECK_EQ(svc_jwt_keyset_add(ks, &n), SVC_OK);
    }
    CHECK_EQ(svc_jwt_keyset_count(ks), SVC_JWT_MAX_KEYS);
    svc_jwt_key more;
    REQUIRE(svc_jwt_key_generate(&more) == SVC_OK);
    CHECK_EQ(svc_jwt_keyset_add(ks, &more), SVC_ERANGE);
    svc_jwt_keyset_free(ks);

    ks = svc_jwt_keyset_new();
    svc_jwt_key bad = k;
    bad.kid[0] = '\0';
    CHECK_EQ(svc_jwt_keyset_add(ks, &bad), SVC_EINVAL);
    bad = k;
    strcpy(bad.kid, "has space");
    CHECK_EQ(svc_jwt_keyset_add(ks, &bad), SVC_EINVAL);
    bad = k;
    bad.alg = (svc_jwt_alg)7;
    CHECK_EQ(svc_jwt_keyset_add(ks, &bad), SVC_EINVAL);
    bad = k;
    bad.pub[0] ^= 1; /* no longer the public half of sec */
    CHECK_EQ(svc_jwt_keyset_add(ks, &bad), SVC_EINVAL);
    CHECK_EQ(svc_jwt_keyset_add(ks, NULL), SVC_EINVAL);
    CHECK_EQ(svc_jwt_keyset_add(NULL, &k), SVC_EINVAL);
    CHECK_EQ(svc_jwt_keyset_count(ks), 0);
    svc_jwt_keyset_free(ks);
    svc_jwt_keyset_free(NULL);
}

TEST(jwks_round_trip_publishes_only_public_eddsa_keys) {
    svc_jwt_key a, b, hs;
    REQUIRE(svc_jwt_key_generate(&a) == SVC_OK && svc_jwt_key_generate(&b) == SVC_OK);
    REQUIRE(svc_jwt_key_hs256(&hs, "0123456789abcdef0123456789abcdef", 32) == SVC_OK);
    svc_jwt_keyset *signer = svc_jwt_keyset_new();
    REQUIRE(svc_jwt_keyset_add(signer, &a) == SVC_OK);
    REQUIRE(svc_jwt_keyset_add(signer, &hs) == SVC_OK);
    REQUIRE(svc_jwt_keyset_add(signer, &b) == SVC_OK);
    svc_buf doc = {0};
    REQUIRE(svc_jwt_keyset_jwks(signer, &doc) == SVC_OK);
    char want[600];
    snprintf(want, sizeof want,
             "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"%s\","
             "\"alg\":\"EdDSA\",\"use\":\"sig\"},",
             x_of(&a), a.kid);
    CHECK(strncmp(doc.data, want, strlen(want)) == 0);
    CHECK(strstr(doc.data, "\"d\"") == NULL);
    CHECK(strstr(doc.data, "oct") == NULL && strstr(doc.data, "HS256") == NULL);

    svc_jwt_keyset *v = svc_jwt_keyset_new();
    CHECK_EQ(svc_jwt_keyset_load_jwks(v, doc.data, doc.len), SVC_OK);
    CHECK_EQ(svc_jwt_keyset_count(v), 2);
    CHECK(svc_jwt_keyset_has(v, a.kid) && svc_jwt_keyset_has(v, b.kid));
    CHECK_EQ(verifies(v, &a), SVC_OK);
    CHECK_EQ(verifies(v, &b), SVC_OK);
    CHECK_EQ(verifies(v, &hs), SVC_ENOTFOUND);
    /* A verifier never holds secret material from a JWKS. */
    svc_jwt_key got;
    REQUIRE(svc__keyset_pick(v, a.kid, &got) == SVC_OK);
    CHECK_EQ(got.has_sec, 0);
    CHECK_EQ(got.alg, SVC_JWT_EDDSA);
    svc_buf_free(&doc);
    svc_jwt_keyset_free(signer);
    svc_jwt_keyset_free(v);
}

TEST(jwks_empty_set) {
    svc_jwt_keyset *ks = svc_jwt_keyset_new();
    svc_buf doc = {0};
    REQUIRE(svc_jwt_keyset_jwks(ks, &doc) == SVC_OK);
    CHECK_STR(doc.data, "{\"keys\":[]}");
    CHECK_EQ(load(ks, doc.data), SVC_OK);
    CHECK_EQ(svc_jwt_keyset_count(ks), 0);
    svc_buf_free(&doc);
    svc_jwt_keyset_free(ks);
}

TEST(jwks_skips_other_keys_and_ignores_private_d) {
    svc_jwt_key a;
    REQUIRE(svc_jwt_key_generate(&a) == SVC_OK);
    char d[64], doc[4096];
    svc__b64url_encode_str(d, a.sec, 32);
    snprintf(doc, sizeof doc,
             "{\"keys\":["
             "{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\",\"kid\":\"rsa\"},"
             "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"},"
             "{\"kty\":\"oct\",\"k\":\"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\",\"kid\":\"hs\"},"
             "{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"%s\",\"kid\":\"ecdh\"},"
             "{\"kty\":\"OKP\",\"crv\":\"Ed448\",\"x\":\"AA\",\"kid\":\"448\"},"
             "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"enc\",\"use\":\"enc\"},"
             "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"rs\",\"alg\":\"RS256\"},"
             "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"%s\",\"d\":\"%s\","
             "\"extra\":{\"nested\":[1,2]}}"
             "],\"other\":1}",
             x_of(&a), x_of(&a), x_of(&a), x_of(&a), a.kid, d);
    svc_jwt_keyset *ks = svc_jwt_keyset_new();
    CHECK_EQ(load(ks, doc), SVC_OK);
    CHECK_EQ(svc_jwt_keyset_count(ks), 1);
    CHECK(svc_jwt_keyset_has(ks, a.kid));
    svc_jwt_key got;
    REQUIRE(svc__keyset_pick(ks, a.kid, &got) == SVC_OK);
    CHECK_EQ(got.has_sec, 0);
    unsigned char zero[64] = {0};
    CHECK(memcmp(got.sec, zero, 64) == 0);
    CHECK_EQ(verifies(ks, &a), SVC_OK);
    svc_jwt_keyset_free(ks);
}

TEST(jwks_malformed_documents_are_rejected_and_change_nothing) {
    svc_jwt_key a, b;
    REQUIRE(svc_jwt_key_generate(&a) == SVC_OK && svc_jwt_key_generate(&b) == SVC_OK);
    svc_jwt_keyset *ks = svc_jwt_keyset_new();
    REQUIRE(svc_jwt_keyset_add(ks, &a) == SVC_OK);
    uint64_t gen = svc__keyset_generation(ks);
    char x[64], x31[64], docs[20][700];
    strcpy(x, x_of(&b));
    unsigned char small[31] = {1};
    svc__b64url_encode_str(x31, small, sizeof small);
    int n = 0;
#define DOC(...) snprintf(docs[n++], sizeof docs[0], __VA_ARGS__)
    DOC("not json");
    DOC("[]");
    DOC("{}");
    DOC("{\"keys\":{}}");
    DOC("{\"keys\":[1]}");
    DOC("{\"keys\":[{\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"k\"}]}", x);
    DOC("{\"keys\":[{\"kty\":\"OKP\",\"x\":\"%s\",\"kid\":\"k\"}]}", x);
    DOC("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"}]}", x);
    DOC("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"\"}]}", x);
    DOC("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":5}]}", x);
    DOC("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"k\"}]}", x31);
    DOC("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s=\",\"kid\":\"k\"}]}", x);
    DOC("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"k\"}]}");
    /* The all-zero encoding is a point of small order. */
    DOC("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"k\"}]}",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    DOC("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"k\",\"alg\":1}]}", x);
    DOC("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"k\"},"
        "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"k\"}]}", x, x);
    DOC("{\"keys\":[],\"keys\":[]}");
    DOC("{\"keys\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}");
#undef DOC
    for (int i = 0; i < n; i++) {
        int rc = load(ks, docs[i]);
        if (rc != SVC_EINVAL) test_fail(__FILE__, __LINE__, "doc %d %s: rc %d", i, docs[i], rc);
    }
    CHECK_EQ(svc_jwt_keyset_load_jwks(ks, NULL, 0), SVC_EINVAL);
    CHECK_EQ(svc_jwt_keyset_count(ks), 1);
    CHECK(svc_jwt_keyset_has(ks, a.kid));
    CHECK_EQ(svc__keyset_generation(ks), gen);
    svc_jwt_keyset_free(ks);
}

TEST(jwks_limits) {
    svc_jwt_keyset *ks = svc_jwt_keyset_new();
    svc_buf doc = {0};
    svc_buf_puts(&doc, "{\"keys\":[");
    for (int i = 0; i <= SVC_JWT_MAX_KEYS; i++) {
        svc_jwt_key k;
        REQUIRE(svc_jwt_key_generate(&k) == SVC_OK);
        if (i) svc_buf_putc(&doc, ',');
        REQUIRE(svc_jwt_key_jwk(&k, 0, &doc) == SVC_OK);
        if (i == SVC_JWT_MAX_KEYS - 1) {
            svc_buf ok = doc;
            ok.data = strndup(doc.data, doc.len);
            ok.cap = ok.len + 1;
            svc_buf_puts(&ok, "]}");
            CHECK_EQ(load(ks, ok.data), SVC_OK);
            CHECK_EQ(svc_jwt_keyset_count(ks), SVC_JWT_MAX_KEYS);
            svc_buf_free(&ok);
        }
    }
    svc_buf_puts(&doc, "]}");
    CHECK_EQ(load(ks, doc.data), SVC_ERANGE);
    CHECK_EQ(svc_jwt_keyset_count(ks), SVC_JWT_MAX_KEYS);
    /* Over SVC_JWT_MAX_JWKS bytes, even if well-formed. */
    svc_buf big = {0};
    svc_buf_puts(&big, "{\"keys\":[],\"pad\":\"");
    for (int i = 0; i < SVC_JWT_MAX_JWKS; i++) svc_buf_putc(&big, 'x');
    svc_buf_puts(&big, "\"}");
    CHECK_EQ(load(ks, big.data), SVC_EINVAL);
    svc_buf_free(&big);
    svc_buf_free(&doc);
    svc_jwt_keyset_free(ks);
}

TEST(jwks_replaces_every_key) {
    svc_jwt_key a, b, hs;
    REQUIRE(svc_jwt_key_generate(&a) == SVC_OK && svc_jwt_key_generate(&b) == SVC_OK);
    REQUIRE(svc_jwt_key_hs256(&hs, "0123456789abcdef0123456789abcdef", 32) == SVC_OK);
    svc_jwt_keyset *ks = svc_jwt_keyset_new();
    REQUIRE(svc_jwt_keyset_add(ks, &a) == SVC_OK && svc_jwt_keyset_add(ks, &hs) == SVC_OK);
    uint64_t gen = svc__keyset_generation(ks);
    svc_buf doc = {0};
    svc_buf_puts(&doc, "{\"keys\":[");
    REQUIRE(svc_jwt_key_jwk(&b, 0, &doc) == SVC_OK);
    svc_buf_puts(&doc, "]}");
    CHECK_EQ(load(ks, doc.data), SVC_OK);
    CHECK(svc__keyset_generation(ks) > gen);
    CHECK_EQ(svc_jwt_keyset_count(ks), 1);
    CHECK_EQ(verifies(ks, &b), SVC_OK);
    CHECK_EQ(verifies(ks, &a), SVC_ENOTFOUND);
    CHECK_EQ(verifies(ks, &hs), SVC_ENOTFOUND);
    svc_buf_free(&doc);
    svc_jwt_keyset_free(ks);
}

TEST(jwk_round_trips) {
    svc_jwt_key a, back, hs;
    REQUIRE(svc_jwt_key_generate(&a) == SVC_OK);
    svc_buf doc = {0};
    REQUIRE(svc_jwt_key_jwk(&a, 1, &doc) == SVC_OK);
    CHECK(strstr(doc.data, "\"d\":\"") != NULL);
    CHECK_EQ(svc_jwt_key_from_jwk(&back, doc.data, doc.len), SVC_OK);
    CHECK_EQ(back.alg, SVC_JWT_EDDSA);
    CHECK_EQ(back.has_sec, 1);
    CHECK_STR(back.kid, a.kid);
    CHECK(memcmp(back.sec, a.sec, 64) == 0 && memcmp(back.pub, a.pub, 32) == 0);
    svc_buf_reset(&doc);
    REQUIRE(svc_jwt_key_jwk(&a, 0, &doc) == SVC_OK);
    CHECK(strstr(doc.data, "\"d\"") == NULL);
    CHECK_EQ(svc_jwt_key_from_jwk(&back, doc.data, doc.len), SVC_OK);
    CHECK_EQ(back.has_sec, 0);

    const char *secret = "a-shared-secret-of-at-least-32-bytes!";
    REQUIRE(svc_jwt_key_hs256(&hs, secret, strlen(secret)) == SVC_OK);
    svc_buf_reset(&doc);
    CHECK_EQ(svc_jwt_key_jwk(&hs, 0, &doc), SVC_EINVAL);
    REQUIRE(svc_jwt_key_jwk(&hs, 1, &doc) == SVC_OK);
    CHECK_EQ(svc_jwt_key_from_jwk(&back, doc.data, doc.len), SVC_OK);
    CHECK_EQ(back.alg, SVC_JWT_HS256);
    CHECK_EQ(back.hmac_len, strlen(secret));
    CHECK(memcmp(back.hmac, secret, back.hmac_len) == 0);
    CHECK_STR(back.kid, "hs256");
    svc_buf_free(&doc);
    /* oct with its own kid, and with no kid. */
    const char *j = "{\"kty\":\"oct\",\"k\":\"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\",\"kid\":\"mine\"}";
    CHECK_EQ(svc_jwt_key_from_jwk(&back, j, strlen(j)), SVC_OK);
    CHECK_STR(back.kid, "mine");
}

TEST(jwk_rejects_bad_keys) {
    svc_jwt_key a, b, k;
    REQUIRE(svc_jwt_key_generate(&a) == SVC_OK && svc_jwt_key_generate(&b) == SVC_OK);
    char xa[64], db[64], j[600];
    strcpy(xa, x_of(&a));
    svc__b64url_encode_str(db, b.sec, 32);
    /* A private half that does not belong to x. */
    snprintf(j, sizeof j, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"d\":\"%s\",\"kid\":\"k\"}", xa, db);
    CHECK_EQ(svc_jwt_key_from_jwk(&k, j, strlen(j)), SVC_EINVAL);
    snprintf(j, sizeof j, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"d\":\"AA\",\"kid\":\"k\"}", xa);
    CHECK_EQ(svc_jwt_key_from_jwk(&k, j, strlen(j)), SVC_EINVAL);
    snprintf(j, sizeof j, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"k\",\"alg\":\"HS256\"}", xa);
    CHECK_EQ(svc_jwt_key_from_jwk(&k, j, strlen(j)), SVC_EINVAL);
    const char *bad[] = {
        "{\"kty\":\"oct\",\"k\":\"c2hvcnQ\"}",                    /* "short" */
        "{\"kty\":\"oct\",\"k\":\"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\",\"alg\":\"EdDSA\"}",
        "{\"kty\":\"oct\",\"k\":\"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\",\"kid\":\"a b\"}",
        "{\"kty\":\"oct\"}",
        "{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}",
        "{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"AA\"}",
        "{}",
        "[]",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (svc_jwt_key_from_jwk(&k, bad[i], strlen(bad[i])) != SVC_EINVAL)
            test_fail(__FILE__, __LINE__, "accepted %s", bad[i]);
}

/* ---- key files ------------------------------------------------------------- */

static char dir[64];

static void tmpdir(void) {
    strcpy(dir, "/tmp/svckit-keys-XXXXXX");
    if (!mkdtemp(dir)) abort();
}

static int files_in_dir(void) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static void rm_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) abort();
}

TEST(key_file_save_and_load) {
    tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/jwt.key", dir);
    svc_jwt_key a, back;
    REQUIRE(svc_jwt_key_generate(&a) == SVC_OK);
    CHECK_EQ(svc_jwt_key_load(&back, path), SVC_ENOTFOUND);
    umask(0); /* the file must still be 0600 */
    CHECK_EQ(svc_jwt_key_save(&a, path), SVC_OK);
    struct stat st;
    REQUIRE(stat(path, &st) == 0);
    CHECK_EQ(st.st_mode & 0777, 0600);
    CHECK_EQ(files_in_dir(), 1); /* no temporary left behind */
    CHECK_EQ(svc_jwt_key_load(&back, path), SVC_OK);
    CHECK(memcmp(back.sec, a.sec, 64) == 0);
    CHECK_STR(back.kid, a.kid);
    /* Never replaces an existing key. */
    svc_jwt_key b;
    REQUIRE(svc_jwt_key_generate(&b) == SVC_OK);
    CHECK_EQ(svc_jwt_key_save(&b, path), SVC_EEXIST);
    CHECK_EQ(files_in_dir(), 1);
    CHECK_EQ(svc_jwt_key_load(&back, path), SVC_OK);
    CHECK_STR(back.kid, a.kid);
    /* Only signing keys are saved. */
    svc_jwt_key pub = a, hs;
    pub.has_sec = 0;
    REQUIRE(svc_jwt_key_hs256(&hs, "0123456789abcdef0123456789abcdef", 32) == SVC_OK);
    snprintf(path, sizeof path, "%s/other.key", dir);
    CHECK_EQ(svc_jwt_key_save(&pub, path), SVC_EINVAL);
    CHECK_EQ(svc_jwt_key_save(&hs, path), SVC_EINVAL);
    CHECK_EQ(files_in_dir(), 1);
    /* A folder that does not exist. */
    snprintf(path, sizeof path, "%s/no/such.key", dir);
    CHECK_EQ(svc_jwt_key_save(&a, path), SVC_EIO);
    rm_dir();
}

TEST(key_file_refuses_loose_modes_and_bad_content) {
    tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/jwt.key", dir);
    svc_jwt_key a, back;
    REQUIRE(svc_jwt_key_generate(&a) == SVC_OK);
    REQUIRE(svc_jwt_key_save(&a, path) == SVC_OK);
    const mode_t loose[] = {0640, 0604, 0660, 0644, 0610, 0601};
    for (size_t i = 0; i < sizeof loose / sizeof *loose; i++) {
        REQUIRE(chmod(path, loose[i]) == 0);
        if (svc_jwt_key_load(&back, path) != SVC_EINVAL)
            test_fail(__FILE__, __LINE__, "loaded with mode %o", (unsigned)loose[i]);
    }
    REQUIRE(chmod(path, 0400) == 0);
    CHECK_EQ(svc_jwt_key_load(&back, path), SVC_OK);
    /* A folder, a public-only JWK, garbage, an empty file. */
    CHECK_EQ(svc_jwt_key_load(&back, dir), SVC_EINVAL);
    const char *contents[] = {"", "garbage", "{\"kty\":\"oct\",\"k\":\"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\"}", NULL};
    svc_buf pubjwk = {0};
    REQUIRE(svc_jwt_key_jwk(&a, 0, &pubjwk) == SVC_OK);
    contents[3] = pubjwk.data;
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/bad%d.key", dir, i);
        FILE *f = fopen(path, "w");
        fputs(contents[i], f);
        fclose(f);
        REQUIRE(chmod(path, 0600) == 0);
        if (svc_jwt_key_load(&back, path) != SVC_EINVAL)
            test_fail(__FILE__, __LINE__, "loaded %s", contents[i]);
    }
    svc_buf_free(&pubjwk);
    rm_dir();
}

TEST(key_file_load_or_create_is_stable) {
    tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/jwt.key", dir);
    svc_jwt_key a, b;
    CHECK_EQ(svc_jwt_key_load_or_create(&a, path), SVC_OK);
    CHECK_EQ(a.has_sec, 1);
    CHECK_EQ(svc_jwt_key_load_or_create(&b, path), SVC_OK);
    CHECK_STR(a.kid, b.kid);
    CHECK(memcmp(a.sec, b.sec, 64) == 0);
    REQUIRE(chmod(path, 0644) == 0);
    CHECK_EQ(svc_jwt_key_load_or_create(&b, path), SVC_EINVAL);
    rm_dir();
}
