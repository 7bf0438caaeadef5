/*
 * Password hashing: Argon2id through libsodium's crypto_pwhash_str, whose
 * output is the PHC string format (algorithm, version, parameters, salt and
 * hash in one string), so old hashes stay verifiable after a change of cost.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "auth/internal.h"
#include "svckit/obs.h"

#define ARGON2ID_PREFIX "$argon2id$"
#define DIGEST_BYTES 32 /* what crypto_pwhash_str makes */
#define ARGON2_VERSION 19 /* 0x13, the only version libsodium writes */

/*
 * At most one Argon2id computation per CPU at a time. More only share the same
 * cores while each holds its 19 MiB: measured on one pinned core, 4 logins at
 * once ran at 51/s with 83 MiB resident, one at a time at 80/s. Callers are
 * thread-pool threads (SVC_OFFLOAD), so waiting here blocks no event loop.
 */
static sem_t hash_slots;
static pthread_once_t slots_once = PTHREAD_ONCE_INIT;

static void slots_init(void) {
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    sem_init(&hash_slots, 0, n > 0 ? (unsigned)n : 1);
}

static void slot_take(void) {
    pthread_once(&slots_once, slots_init);
    while (sem_wait(&hash_slots) != 0) {
    }
}

static void slot_give(void) { sem_post(&hash_slots); }

/* Every computation is counted, so that "an unknown user costs what a wrong
 * password costs" can be checked by a count rather than by a stopwatch. The
 * family is looked up each time (a lock and a few compares beside 10 ms of
 * Argon2id), which keeps it right across svc_metrics_reset. */
static void count(const char *op) {
    static const char *const label[] = {"op"};
    const char *const value[] = {op};
    svc_counter_add(svc_metric_with(svc_metric_counter(SVC_PASSWORD_METRIC,
                                                       "Argon2id computations: hash (a new password "
                                                       "hash), verify (a password checked)",
                                                       1, label),
                                    value),
                    1);
}

static int pwhash_str(char *out, const char *password, size_t len) {
    slot_take();
    int r = crypto_pwhash_str_alg(out, password, len, SVC_PASSWORD_OPSLIMIT, SVC_PASSWORD_MEMLIMIT,
                                  crypto_pwhash_ALG_ARGON2ID13);
    slot_give();
    count("hash");
    return r;
}

static int pwhash_verify(const char *hash, const char *password, size_t len) {
    slot_take();
    int r = crypto_pwhash_str_verify(hash, password, len);
    slot_give();
    count("verify");
    return r;
}

int svc_password_hash(const char *password, size_t len, char *out, size_t outlen) {
    if (!password || !out || outlen < SVC_PASSWORD_HASH_MAX ||
        svc__auth_sodium_init() != SVC_OK)
        return SVC_EINVAL;
    if (len > SVC_PASSWORD_MAX) return SVC_ERANGE;
    /* crypto_pwhash_str fails only when the memory cost cannot be had. */
    if (pwhash_str(out, password, len) != 0) return SVC_ENOMEM;
    return SVC_OK;
}

static int well_formed(const char *hash) {
    return hash && strnlen(hash, SVC_PASSWORD_HASH_MAX) < SVC_PASSWORD_HASH_MAX &&
           strncmp(hash, ARGON2ID_PREFIX, sizeof ARGON2ID_PREFIX - 1) == 0;
}

int svc_password_verify(const char *hash, const char *password, size_t len) {
    if (!well_formed(hash) || svc__auth_sodium_init() != SVC_OK) return SVC_EINVAL;
    /* A password over the limit could never have been stored; refusing it
     * early also bounds the work an attacker can ask for. */
    if (!password || len > SVC_PASSWORD_MAX) return SVC_EAUTH;
    return pwhash_verify(hash, password, len) == 0 ? SVC_OK : SVC_EAUTH;
}

/*
 * The dummy hash: the current parameters, a random salt and a random digest,
 * written in the PHC form crypto_pwhash_str writes. Verifying a password
 * against it computes Argon2id exactly as against a real user's hash, and no
 * password matches. Made by hand rather than by hashing, so the first unknown
 * user costs one computation like every other (not a hash and a verify).
 */
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char dummy_hash[SVC_PASSWORD_HASH_MAX];

static void make_dummy(void) {
    unsigned char salt[crypto_pwhash_SALTBYTES], digest[DIGEST_BYTES];
    char salt64[sodium_base64_ENCODED_LEN(sizeof salt, sodium_base64_VARIANT_ORIGINAL_NO_PADDING)];
    char digest64[sodium_base64_ENCODED_LEN(sizeof digest, sodium_base64_VARIANT_ORIGINAL_NO_PADDING)];
    randombytes_buf(salt, sizeof salt);
    randombytes_buf(digest, sizeof digest);
    sodium_bin2base64(salt64, sizeof salt64, salt, sizeof salt, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    sodium_bin2base64(digest64, sizeof digest64, digest, sizeof digest,
                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    snprintf(dummy_hash, sizeof dummy_hash, ARGON2ID_PREFIX "v=%d$m=%u,t=%u,p=1$%s$%s", ARGON2_VERSION,
             (unsigned)(SVC_PASSWORD_MEMLIMIT / 1024), (unsigned)SVC_PASSWORD_OPSLIMIT, salt64, digest64);
}

const char *svc__password_dummy_hash(void) {
    pthread_once(&dummy_once, make_dummy);
    return dummy_hash;
}

int svc_password_dummy_verify(const char *password, size_t len) {
    if (svc__auth_sodium_init() != SVC_OK) return SVC_EAUTH;
    if (password && len <= SVC_PASSWORD_MAX) {
        /* The outcome is irrelevant (the password is random); the work is
         * the point. */
        int r = pwhash_verify(svc__password_dummy_hash(), password, len);
        (void)r;
    }
    return SVC_EAUTH;
}

int svc_password_needs_rehash(const char *hash) {
    if (!well_formed(hash) || svc__auth_sodium_init() != SVC_OK) return SVC_EINVAL;
    int r = crypto_pwhash_str_needs_rehash(hash, SVC_PASSWORD_OPSLIMIT, SVC_PASSWORD_MEMLIMIT);
    return r < 0 ? SVC_EINVAL : r;
}
