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
#include <string.h>
#include <unistd.h>

#include "auth/internal.h"

#define ARGON2ID_PREFIX "$argon2id$"

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

static int pwhash_str(char *out, const char *password, size_t len) {
    slot_take();
    int r = crypto_pwhash_str_alg(out, password, len, SVC_PASSWORD_OPSLIMIT, SVC_PASSWORD_MEMLIMIT,
                                  crypto_pwhash_ALG_ARGON2ID13);
    slot_give();
    return r;
}

static int pwhash_verify(const char *hash, const char *password, size_t len) {
    slot_take();
    int r = crypto_pwhash_str_verify(hash, password, len);
    slot_give();
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

/* The dummy hash is made once, with the current parameters and a random
 * password, so verifying against it costs what verifying a real user costs. */
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char dummy_hash[SVC_PASSWORD_HASH_MAX];

static void make_dummy(void) {
    unsigned char pw[16];
    randombytes_buf(pw, sizeof pw);
    if (pwhash_str(dummy_hash, (const char *)pw, sizeof pw) != 0) dummy_hash[0] = '\0';
}

int svc_password_dummy_verify(const char *password, size_t len) {
    if (svc__auth_sodium_init() != SVC_OK) return SVC_EAUTH;
    pthread_once(&dummy_once, make_dummy);
    if (dummy_hash[0] && password && len <= SVC_PASSWORD_MAX) {
        /* The outcome is irrelevant (the password is random); the work is
         * the point. */
        int r = pwhash_verify(dummy_hash, password, len);
        (void)r;
    }
    return SVC_EAUTH;
}

int svc_password_needs_rehash(const char *hash) {
    if (!well_formed(hash) || svc__auth_sodium_init() != SVC_OK) return SVC_EINVAL;
    int r = crypto_pwhash_str_needs_rehash(hash, SVC_PASSWORD_OPSLIMIT, SVC_PASSWORD_MEMLIMIT);
    return r < 0 ? SVC_EINVAL : r;
}
