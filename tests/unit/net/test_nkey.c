/* NKEY seeds and .creds files (src/net/nkey.c): the encoding against a
 * vector computed by an independent implementation (tests/integration/
 * nkey_support.py, from seed bytes 1..32), every one-character corruption,
 * the other key types, the .creds format and its checks, and the file
 * checks. Keys are made here from fixed bytes; none is stored. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/nkey.h"
#include "svckit/core.h"
#include "../test.h"

/* Seed bytes 1..32 as a user key: its public key and its signature of
 * "nonce-1" (base64url), as nkey_support.py computes them. */
#define VECTOR_PUBLIC "UB43KVROR7TFJ6KAPCYRF2FJROTZAH4FHLTJLPWX4DRZCC5NASLGJBFE"
#define VECTOR_SIG "HVoVIRLVlBbwICcujvUoT6PAblVuS55H_WrZaAHGnwfuDBirX0NmyK2x3E1KiPGAl2AyS91d79FtbM1Tmys1Bw"

static void fixed_seed(int type, char out[SVC_NKEY_SEED_LEN + 1]) {
    unsigned char raw[32];
    for (int i = 0; i < 32; i++) raw[i] = (unsigned char)(i + 1);
    svc__nkey_encode(type, 1, raw, out);
}

static svc_nkey_creds creds;
static char err[200];

TEST(seed_decodes_to_the_vector) {
    char seed[SVC_NKEY_SEED_LEN + 1];
    fixed_seed(SVC_NKEY_USER, seed);
    CHECK_EQ(strlen(seed), SVC_NKEY_SEED_LEN);
    CHECK(strncmp(seed, "SU", 2) == 0);
    char padded[80];
    snprintf(padded, sizeof padded, "  %s\r\n", seed);
    CHECK_EQ(svc__nkey_parse_seed(padded, strlen(padded), &creds, err, sizeof err), SVC_OK);
    CHECK_STR(creds.pub, VECTOR_PUBLIC);
    CHECK_STR(creds.jwt, "");
    char sig[SVC_NKEY_SIG_LEN + 1];
    svc__nkey_sign(&creds, "nonce-1", 7, sig);
    CHECK_STR(sig, VECTOR_SIG);
    svc__nkey_wipe(&creds);
    CHECK_EQ(creds.sk[0] | creds.sk[63] | creds.pub[0], 0);
}

TEST(signature_verifies) {
    char seed[SVC_NKEY_SEED_LEN + 1], sig[SVC_NKEY_SIG_LEN + 1];
    unsigned char raw[32], bin[64], pk[32], sk[64];
    randombytes_buf(raw, sizeof raw);
    svc__nkey_encode(SVC_NKEY_USER, 1, raw, seed);
    CHECK_EQ(svc__nkey_parse_seed(seed, strlen(seed), &creds, err, sizeof err), SVC_OK);
    crypto_sign_seed_keypair(pk, sk, raw);
    char pub[SVC_NKEY_PUBLIC_LEN + 1];
    svc__nkey_encode(SVC_NKEY_USER, 0, pk, pub);
    CHECK_STR(creds.pub, pub);
    svc__nkey_sign(&creds, "abc", 3, sig);
    size_t n = 0;
    CHECK_EQ(sodium_base642bin(bin, sizeof bin, sig, strlen(sig), NULL, &n, NULL,
                               sodium_base64_VARIANT_URLSAFE_NO_PADDING), 0);
    CHECK_EQ(n, 64);
    CHECK_EQ(crypto_sign_verify_detached(bin, (const unsigned char *)"abc", 3, pk), 0);
    CHECK(crypto_sign_verify_detached(bin, (const unsigned char *)"abd", 3, pk) != 0);
}

TEST(generate_gives_a_seed_that_signs_in_as_its_public_key) {
    char seed[SVC_NKEY_SEED_LEN + 1], pub[SVC_NKEY_PUBLIC_LEN + 1], seed2[SVC_NKEY_SEED_LEN + 1];
    CHECK_EQ(svc__nkey_generate(seed, pub), SVC_OK);
    CHECK_EQ(strncmp(seed, "SU", 2), 0);
    CHECK_EQ(pub[0], 'U');
    CHECK_EQ(svc__nkey_parse_seed(seed, strlen(seed), &creds, err, sizeof err), SVC_OK);
    CHECK_STR(creds.pub, pub);
    CHECK_EQ(svc__nkey_generate(seed2, pub), SVC_OK);
    CHECK(strcmp(seed, seed2) != 0);
    CHECK(strcmp(creds.pub, pub) != 0);
}

TEST(every_one_character_change_is_refused) {
    static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    char seed[SVC_NKEY_SEED_LEN + 1];
    fixed_seed(SVC_NKEY_USER, seed);
    int accepted = 0;
    for (int i = 0; i < SVC_NKEY_SEED_LEN; i++)
        for (int c = 0; c < 32; c++) {
            char bad[SVC_NKEY_SEED_LEN + 1];
            memcpy(bad, seed, sizeof bad);
            if (bad[i] == b32[c]) continue;
            bad[i] = b32[c];
            if (svc__nkey_parse_seed(bad, SVC_NKEY_SEED_LEN, &creds, err, sizeof err) == SVC_OK) accepted++;
        }
    CHECK_EQ(accepted, 0);
}

TEST(other_keys_and_garbage_are_refused) {
    char seed[SVC_NKEY_SEED_LEN + 1], pub[SVC_NKEY_PUBLIC_LEN + 1];
    unsigned char raw[32] = {7};
    fixed_seed(SVC_NKEY_ACCOUNT, seed);
    CHECK_EQ(svc__nkey_parse_seed(seed, strlen(seed), &creds, err, sizeof err), SVC_EINVAL);
    CHECK(strstr(err, "not a user seed"));
    fixed_seed(SVC_NKEY_OPERATOR, seed);
    CHECK_EQ(svc__nkey_parse_seed(seed, strlen(seed), &creds, err, sizeof err), SVC_EINVAL);
    CHECK(strstr(err, "not a user seed"));
    svc__nkey_encode(SVC_NKEY_USER, 0, raw, pub);
    CHECK_EQ(svc__nkey_parse_seed(pub, strlen(pub), &creds, err, sizeof err), SVC_EINVAL);
    /* A public key padded to a seed's length: the right size, not a seed. */
    char padded[SVC_NKEY_SEED_LEN + 1];
    snprintf(padded, sizeof padded, "%sAA", pub);
    CHECK_EQ(svc__nkey_parse_seed(padded, strlen(padded), &creds, err, sizeof err), SVC_EINVAL);
    fixed_seed(SVC_NKEY_USER, seed);
    CHECK_EQ(svc__nkey_parse_seed(seed, SVC_NKEY_SEED_LEN - 1, &creds, err, sizeof err), SVC_EINVAL);
    seed[10] = 'a'; /* lower case is not in the alphabet */
    CHECK_EQ(svc__nkey_parse_seed(seed, SVC_NKEY_SEED_LEN, &creds, err, sizeof err), SVC_EINVAL);
    CHECK_EQ(svc__nkey_parse_seed("", 0, &creds, err, sizeof err), SVC_EINVAL);
    char nul[SVC_NKEY_SEED_LEN] = {0};
    CHECK_EQ(svc__nkey_parse_seed(nul, sizeof nul, &creds, err, sizeof err), SVC_EINVAL);
}

/* A .creds text for the fixed seed, with the given claims in its JWT. */
static void make_creds(char *out, size_t cap, const char *claims, const char *eol) {
    char seed[SVC_NKEY_SEED_LEN + 1], b64[1024];
    fixed_seed(SVC_NKEY_USER, seed);
    sodium_bin2base64(b64, sizeof b64, (const unsigned char *)claims, strlen(claims),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    snprintf(out, cap,
             "-----BEGIN NATS USER JWT-----%s"
             "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.%s.c2ln%s"
             "------END NATS USER JWT------%s%s"
             "************************* IMPORTANT *************************%s"
             "NKEY Seed printed below can be used to sign and prove identity.%s%s"
             "-----BEGIN USER NKEY SEED-----%s%s%s------END USER NKEY SEED------%s",
             eol, b64, eol, eol, eol, eol, eol, eol, eol, seed, eol, eol);
}

static int parse(const char *claims, const char *eol) {
    char text[4096];
    make_creds(text, sizeof text, claims, eol);
    return svc__nkey_parse_creds(text, strlen(text), 1700000000, &creds, err, sizeof err);
}

TEST(creds_parse_and_check_the_jwt) {
    CHECK_EQ(parse("{\"sub\":\"" VECTOR_PUBLIC "\",\"nats\":{\"type\":\"user\"}}", "\n"), SVC_OK);
    CHECK_STR(creds.pub, VECTOR_PUBLIC);
    CHECK(strncmp(creds.jwt, "eyJ0eXAi", 8) == 0 && strstr(creds.jwt, ".c2ln"));
    CHECK_EQ(parse("{\"sub\":\"" VECTOR_PUBLIC "\",\"exp\":1800000000}", "\r\n"), SVC_OK);
    CHECK_EQ(parse("{\"sub\":\"" VECTOR_PUBLIC "\",\"exp\":1600000000}", "\n"), SVC_EINVAL);
    CHECK(strstr(err, "expired"));
    CHECK_EQ(parse("{\"sub\":\"UOTHER\"}", "\n"), SVC_EINVAL);
    CHECK(strstr(err, "not for this seed"));
    CHECK_STR(creds.pub, ""); /* wiped on failure */
    CHECK_EQ(parse("{\"sub\":\"" VECTOR_PUBLIC "\",\"nats\":{\"type\":\"account\"}}", "\n"), SVC_EINVAL);
    CHECK(strstr(err, "not a user JWT"));
    CHECK_EQ(parse("[1,2]", "\n"), SVC_EINVAL);
    CHECK_EQ(parse("{\"sub\":\"" VECTOR_PUBLIC "\",\"sub\":\"x\"}", "\n"), SVC_EINVAL);
}

TEST(creds_structure_is_required) {
    char seed[SVC_NKEY_SEED_LEN + 1], text[512];
    fixed_seed(SVC_NKEY_USER, seed);
    CHECK_EQ(svc__nkey_parse_creds(seed, strlen(seed), 0, &creds, err, sizeof err), SVC_EINVAL);
    CHECK(strstr(err, "not a .creds file"));
    /* A JWT block without its end line swallows the seed block. */
    snprintf(text, sizeof text, "-----BEGIN NATS USER JWT-----\na.b.c\n-----BEGIN USER NKEY SEED-----\n%s\n"
             "------END USER NKEY SEED------\n", seed);
    CHECK_EQ(svc__nkey_parse_creds(text, strlen(text), 0, &creds, err, sizeof err), SVC_EINVAL);
    snprintf(text, sizeof text, "-----BEGIN NATS USER JWT-----\na.b\n------END------\n---S---\n%s\n---E---\n", seed);
    CHECK_EQ(svc__nkey_parse_creds(text, strlen(text), 0, &creds, err, sizeof err), SVC_EINVAL);
    CHECK(strstr(err, "three"));
    snprintf(text, sizeof text, "---J---\na.b.c.d\n---E---\n---S---\n%s\n---E---\n", seed);
    CHECK_EQ(svc__nkey_parse_creds(text, strlen(text), 0, &creds, err, sizeof err), SVC_EINVAL);
    snprintf(text, sizeof text, "---J---\na.b+c.d\n---E---\n---S---\n%s\n---E---\n", seed);
    CHECK_EQ(svc__nkey_parse_creds(text, strlen(text), 0, &creds, err, sizeof err), SVC_EINVAL);
}

static void write_file(const char *path, const char *text, mode_t mode) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

TEST(files_are_checked_before_they_are_read) {
    char dir[] = "/tmp/svckit-nkey-XXXXXX", path[64], seed[SVC_NKEY_SEED_LEN + 2];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/seed", dir);
    fixed_seed(SVC_NKEY_USER, seed);
    strcat(seed, "\n");
    write_file(path, seed, 0600);
    CHECK_EQ(svc__nkey_load(path, 0, &creds, err, sizeof err), SVC_OK);
    CHECK_STR(creds.pub, VECTOR_PUBLIC);
    chmod(path, 0400);
    CHECK_EQ(svc__nkey_load(path, 0, &creds, err, sizeof err), SVC_OK);
    static const mode_t open_modes[] = {0640, 0604, 0620, 0602, 0610, 0601};
    for (size_t i = 0; i < sizeof open_modes / sizeof open_modes[0]; i++) {
        chmod(path, open_modes[i]);
        CHECK_EQ(svc__nkey_load(path, 0, &creds, err, sizeof err), SVC_EINVAL);
        CHECK(strstr(err, "too open"));
    }
    if (geteuid() == 0) {
        /* A Kubernetes Secret in a pod with fsGroup: root's, mode 0440, read
         * through the group by the service's own user; writable by the
         * group it is refused. Checked in a child that drops to nobody. */
        CHECK_EQ(chown(dir, 0, 65534), 0);
        CHECK_EQ(chmod(dir, 0750), 0);
        CHECK_EQ(chown(path, 0, 65534), 0);
        static const struct { mode_t mode; int rc; } as_group[] = {{0440, SVC_OK}, {0460, SVC_EINVAL},
                                                                   {0444, SVC_EINVAL}};
        for (size_t i = 0; i < sizeof as_group / sizeof as_group[0]; i++) {
            chmod(path, as_group[i].mode);
            pid_t pid = fork();
            if (pid == 0) {
                if (setgid(65534) != 0 || setuid(65534) != 0) _exit(99);
                _exit(svc__nkey_load(path, 0, &creds, err, sizeof err) == as_group[i].rc ? 0 : 1);
            }
            int status = -1;
            CHECK_EQ(waitpid(pid, &status, 0), pid);
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        chmod(path, 0440);
        CHECK_EQ(svc__nkey_load(path, 0, &creds, err, sizeof err), SVC_EINVAL); /* root itself: refused */
        chmod(path, 0600);
    }
    CHECK_EQ(svc__nkey_load(dir, 0, &creds, err, sizeof err), SVC_EINVAL);
    CHECK(strstr(err, "not a regular file"));
    char missing[80];
    snprintf(missing, sizeof missing, "%s/none", dir);
    CHECK_EQ(svc__nkey_load(missing, 0, &creds, err, sizeof err), SVC_EIO);
    char *big = malloc(SVC_NKEY_MAX_FILE + 2);
    memset(big, 'A', SVC_NKEY_MAX_FILE + 1);
    big[SVC_NKEY_MAX_FILE + 1] = '\0';
    write_file(path, big, 0600);
    free(big);
    CHECK_EQ(svc__nkey_load(path, 1, &creds, err, sizeof err), SVC_EINVAL);
    CHECK(strstr(err, "larger"));
    unlink(path);
    rmdir(dir);
}
