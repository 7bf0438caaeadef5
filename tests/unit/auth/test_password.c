/* Password hashing (Argon2id) and the dummy verification for unknown users. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "auth/internal.h"
#include "svckit/auth.h"
#include "svckit/obs.h"
#include "../test.h"

static double ms_since(uint64_t t0) { return (double)(svc_now_ns() - t0) / 1e6; }

TEST(hash_and_verify) {
    char h[SVC_PASSWORD_HASH_MAX], h2[SVC_PASSWORD_HASH_MAX];
    const char *pw = "correct horse battery staple";
    uint64_t t0 = svc_now_ns();
    REQUIRE(svc_password_hash(pw, strlen(pw), h, sizeof h) == SVC_OK);
    printf("# argon2id hash: %.1f ms (%s)\n", ms_since(t0), h);
    CHECK(strncmp(h, "$argon2id$v=19$m=19456,t=2,p=1$", 31) == 0);
    CHECK_EQ(svc_password_verify(h, pw, strlen(pw)), SVC_OK);
    CHECK_EQ(svc_password_verify(h, pw, strlen(pw) - 1), SVC_EAUTH);
    CHECK_EQ(svc_password_verify(h, "Correct horse battery staple", strlen(pw)), SVC_EAUTH);
    /* A fresh salt every time. */
    REQUIRE(svc_password_hash(pw, strlen(pw), h2, sizeof h2) == SVC_OK);
    CHECK(strcmp(h, h2) != 0);
    CHECK_EQ(svc_password_verify(h2, pw, strlen(pw)), SVC_OK);
    CHECK_EQ(svc_password_needs_rehash(h), 0);
}

TEST(passwords_are_bytes_with_a_length) {
    char h[SVC_PASSWORD_HASH_MAX];
    const char pw[] = "pass\0word";
    REQUIRE(svc_password_hash(pw, sizeof pw - 1, h, sizeof h) == SVC_OK);
    CHECK_EQ(svc_password_verify(h, pw, sizeof pw - 1), SVC_OK);
    CHECK_EQ(svc_password_verify(h, "pass", 4), SVC_EAUTH);
    REQUIRE(svc_password_hash("", 0, h, sizeof h) == SVC_OK);
    CHECK_EQ(svc_password_verify(h, "", 0), SVC_OK);
}

TEST(length_limits) {
    char h[SVC_PASSWORD_HASH_MAX], pw[SVC_PASSWORD_MAX + 1];
    memset(pw, 'p', sizeof pw);
    CHECK_EQ(svc_password_hash(pw, SVC_PASSWORD_MAX + 1, h, sizeof h), SVC_ERANGE);
    REQUIRE(svc_password_hash(pw, SVC_PASSWORD_MAX, h, sizeof h) == SVC_OK);
    CHECK_EQ(svc_password_verify(h, pw, SVC_PASSWORD_MAX), SVC_OK);
    CHECK_EQ(svc_password_verify(h, pw, SVC_PASSWORD_MAX + 1), SVC_EAUTH);
    CHECK_EQ(svc_password_hash("x", 1, h, SVC_PASSWORD_HASH_MAX - 1), SVC_EINVAL);
    CHECK_EQ(svc_password_hash(NULL, 1, h, sizeof h), SVC_EINVAL);
}

TEST(malformed_hashes) {
    const char *bad[] = {"", "plain", "$argon2i$v=19$m=65536,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
                         "$2b$12$abcdefghijklmnopqrstuu", NULL};
    for (int i = 0; bad[i]; i++) {
        CHECK_EQ(svc_password_verify(bad[i], "x", 1), SVC_EINVAL);
        CHECK_EQ(svc_password_needs_rehash(bad[i]), SVC_EINVAL);
    }
    CHECK_EQ(svc_password_verify(NULL, "x", 1), SVC_EINVAL);
    /* Right prefix, broken body: no match. */
    CHECK_EQ(svc_password_verify("$argon2id$v=19$m=19456,t=2,p=1$!!$!!", "x", 1), SVC_EAUTH);
    char longh[300];
    memset(longh, 'a', sizeof longh);
    memcpy(longh, "$argon2id$", 10);
    longh[299] = '\0';
    CHECK_EQ(svc_password_verify(longh, "x", 1), SVC_EINVAL);
}

TEST(old_parameters_need_rehash_but_still_verify) {
    char h[crypto_pwhash_STRBYTES];
    REQUIRE(crypto_pwhash_str_alg(h, "pw", 2, 1, 8u << 20, crypto_pwhash_ALG_ARGON2ID13) == 0);
    CHECK_EQ(svc_password_needs_rehash(h), 1);
    CHECK_EQ(svc_password_verify(h, "pw", 2), SVC_OK);
}

/* Argon2id computations so far, by op, from the registry. */
static double computations(const char *op) {
    static const char *const label[] = {"op"};
    const char *const value[] = {op};
    return svc_series_value(svc_metric_with(svc_metric_counter(SVC_PASSWORD_METRIC, NULL, 1, label), value));
}

TEST(every_computation_is_counted) {
    char h[SVC_PASSWORD_HASH_MAX], pw[SVC_PASSWORD_MAX + 1];
    memset(pw, 'p', sizeof pw);
    double hashes = computations("hash"), verifies = computations("verify");
    REQUIRE(svc_password_hash("secret-pw", 9, h, sizeof h) == SVC_OK);
    CHECK_EQ(computations("hash"), hashes + 1);
    CHECK_EQ(svc_password_verify(h, "secret-pw", 9), SVC_OK);
    CHECK_EQ(svc_password_verify(h, "wrong-pw", 8), SVC_EAUTH);
    CHECK_EQ(computations("verify"), verifies + 2);
    /* What is refused before any work costs none. */
    CHECK_EQ(svc_password_hash(pw, sizeof pw, h, sizeof h), SVC_ERANGE);
    CHECK_EQ(svc_password_verify(h, pw, sizeof pw), SVC_EAUTH);
    CHECK_EQ(svc_password_verify("plain", "x", 1), SVC_EINVAL);
    CHECK_EQ(computations("hash"), hashes + 1);
    CHECK_EQ(computations("verify"), verifies + 2);
}

TEST(dummy_verify_costs_what_a_real_one_costs) {
    /* The property, counted: an unknown user costs exactly one Argon2id
     * verification, the first one too, as a wrong password does; and the
     * dummy hash has the current parameters, so that verification is as
     * long as a real one (the stopwatch comparison is in bench/, group
     * auth-timing). */
    double hashes = computations("hash"), verifies = computations("verify");
    CHECK_EQ(svc_password_dummy_verify("wrong-pw", 8), SVC_EAUTH);
    CHECK_EQ(computations("verify"), verifies + 1);
    CHECK_EQ(computations("hash"), hashes);
    CHECK_EQ(svc_password_dummy_verify("another", 7), SVC_EAUTH);
    CHECK_EQ(computations("verify"), verifies + 2);
    CHECK_EQ(svc_password_dummy_verify(NULL, 0), SVC_EAUTH);
    CHECK_EQ(computations("verify"), verifies + 2);

    const char *dummy = svc__password_dummy_hash();
    char real[SVC_PASSWORD_HASH_MAX];
    REQUIRE(svc_password_hash("secret-pw", 9, real, sizeof real) == SVC_OK);
    CHECK_EQ(svc_password_needs_rehash(dummy), 0);
    CHECK_EQ(crypto_pwhash_str_needs_rehash(dummy, SVC_PASSWORD_OPSLIMIT, SVC_PASSWORD_MEMLIMIT), 0);
    /* The same shape as a real hash: parameters, salt and digest lengths. */
    CHECK_EQ(strlen(dummy), strlen(real));
    const char *params = "$argon2id$v=19$m=19456,t=2,p=1$";
    CHECK(strncmp(dummy, params, strlen(params)) == 0);
    CHECK_EQ(strchr(dummy + strlen(params), '$') - dummy, strchr(real + strlen(params), '$') - real);
    /* Nothing verifies against it, as a real hash it is merely wrong. */
    CHECK_EQ(svc_password_verify(dummy, "secret-pw", 9), SVC_EAUTH);
    CHECK_EQ(svc_password_verify(dummy, "", 0), SVC_EAUTH);
}
