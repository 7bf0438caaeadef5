/*
 * The verified-token cache. An Ed25519 verification costs ~50 us and a token
 * is typically sent many times, so the middleware remembers verdicts: a hot
 * token then costs one BLAKE2b of the token and a few compares.
 *
 * Entries are keyed by a BLAKE2b-256 of the token under a random per-cache
 * key: 256 bits make a collision (a forged token sharing a digest with a
 * verified one) infeasible, and the key keeps set indexes unpredictable, so
 * nobody can aim tokens at one set to evict a victim's entry. Only verified
 * tokens are stored, so invalid ones cannot fill the cache either.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "auth/internal.h"

#define WAYS 4
#define DIGEST 32

typedef struct entry {
    unsigned char digest[DIGEST];
    uint64_t generation;
    int64_t valid_until;
    uint64_t stamp; /* last use; the smallest is evicted first */
    int used;
    svc_claims claims;
} entry;

struct svc__jwt_cache {
    pthread_mutex_t mu;
    unsigned char key[crypto_generichash_KEYBYTES];
    size_t nsets;
    uint64_t clock, hits, misses;
    entry *e;
};

svc__jwt_cache *svc__jwt_cache_new(size_t entries) {
    if (svc__auth_sodium_init() != SVC_OK) return NULL;
    if (entries == 0) entries = SVC_AUTH_CACHE_ENTRIES;
    if (entries > (1u << 20)) entries = 1u << 20;
    svc__jwt_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->nsets = (entries + WAYS - 1) / WAYS;
    c->e = calloc(c->nsets * WAYS, sizeof *c->e);
    if (!c->e || pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c->e);
        free(c);
        return NULL;
    }
    crypto_generichash_keygen(c->key);
    return c;
}

void svc__jwt_cache_free(svc__jwt_cache *c) {
    if (!c) return;
    pthread_mutex_destroy(&c->mu);
    free(c->e);
    free(c);
}

static entry *set_of(svc__jwt_cache *c, const unsigned char *d) {
    uint64_t h;
    memcpy(&h, d, sizeof h);
    return c->e + (h % c->nsets) * WAYS;
}

static void digest_of(svc__jwt_cache *c, const char *token, size_t len,
                      unsigned char d[DIGEST]) {
    crypto_generichash(d, DIGEST, (const unsigned char *)token, len, c->key, sizeof c->key);
}

int svc__jwt_cache_get(svc__jwt_cache *c, const char *token, size_t len,
                       uint64_t generation, int64_t now, svc_claims *claims) {
    unsigned char d[DIGEST];
    digest_of(c, token, len, d);
    int rc = SVC_ENOTFOUND;
    pthread_mutex_lock(&c->mu);
    entry *s = set_of(c, d);
    for (int i = 0; i < WAYS; i++) {
        entry *e = &s[i];
        if (!e->used || memcmp(e->digest, d, DIGEST) != 0) continue;
        if (e->generation != generation || now > e->valid_until) {
            e->used = 0; /* the key set changed or the token expired */
            break;
        }
        e->stamp = ++c->clock;
        *claims = e->claims;
        rc = SVC_OK;
        break;
    }
    if (rc == SVC_OK) c->hits++; else c->misses++;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void svc__jwt_cache_put(svc__jwt_cache *c, const char *token, size_t len,
                        uint64_t generation, int64_t valid_until,
                        const svc_claims *claims) {
    unsigned char d[DIGEST];
    digest_of(c, token, len, d);
    pthread_mutex_lock(&c->mu);
    entry *s = set_of(c, d), *victim = NULL;
    for (int i = 0; i < WAYS; i++) {
        if (s[i].used && memcmp(s[i].digest, d, DIGEST) == 0) {
            victim = &s[i];
            break;
        }
        if (!s[i].used) {
            if (!victim || victim->used) victim = &s[i];
        } else if (!victim || (victim->used && s[i].stamp < victim->stamp)) {
            victim = &s[i];
        }
    }
    memcpy(victim->digest, d, DIGEST);
    victim->generation = generation;
    victim->valid_until = valid_until;
    victim->stamp = ++c->clock;
    victim->used = 1;
    victim->claims = *claims;
    pthread_mutex_unlock(&c->mu);
}

void svc__jwt_cache_stats(svc__jwt_cache *c, uint64_t *hits, uint64_t *misses,
                          size_t *live, int64_t now) {
    pthread_mutex_lock(&c->mu);
    if (hits) *hits = c->hits;
    if (misses) *misses = c->misses;
    if (live) {
        size_t n = 0;
        for (size_t i = 0; i < c->nsets * WAYS; i++)
            if (c->e[i].used && now <= c->e[i].valid_until) n++;
        *live = n;
    }
    pthread_mutex_unlock(&c->mu);
}
