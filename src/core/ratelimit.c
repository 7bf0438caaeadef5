/*
 * Token buckets per key, in a bounded hash table; see svckit/limit.h.
 *
 * A bucket is kept as one number, the moment it was (or will be) empty:
 * its tokens now are (now - empty) / interval, capped at burst (GCRA's form of
 * a token bucket). Since every bucket refills at the same rate, the bucket
 * that is fullest now is simply the one with the smallest `empty`, so a
 * min-heap on it names the entry to give up when the table is full; and a take
 * only ever moves `empty` later, so keeping the heap costs one sift-down.
 *
 * Entries live in one array; a chained hash table (heads plus a next link
 * per entry) finds them by their whole key, hashed with SipHash under a
 * random key so that clients cannot choose keys that chain together. Links
 * are entry indices plus one, so that 0 ends a chain and the zeroed memory of
 * calloc is an empty table: the pages are only touched once keys arrive.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "svckit/limit.h"

#define NONE UINT32_MAX
/* A bucket slower to refill than this (about 146 years) never refills:
 * clamping keeps every sum below of int64 range. */
#define REFILL_MAX_NS ((int64_t)1 << 62)

typedef struct entry {
    int64_t empty_ns;  /* when the bucket was, or will be, empty */
    uint32_t hash;     /* of the key: its chain without hashing again */
    uint32_t next;     /* link to the next entry on the same chain */
    uint32_t pos;      /* its index in the heap */
    uint8_t len;
    char key[SVC_RATELIMIT_KEY_MAX + 1];
} entry;

struct svc_ratelimit {
    pthread_mutex_t mu;
    int64_t interval_ns;  /* time to earn one token */
    int64_t refill_ns;    /* time to fill an empty bucket: burst tokens */
    unsigned char seed[crypto_shorthash_KEYBYTES];
    uint32_t capacity, used, mask;
    uint32_t *heads;      /* mask + 1 chains: links to their first entries */
    uint32_t *heap;       /* entry indices; heap[0] has the smallest empty_ns */
    entry *entries;
    uint64_t evicted_active;
};

svc_ratelimit *svc__ratelimit_new_sized(double burst, double per_second, uint32_t capacity) {
    if (!(burst >= 1) || !(per_second > 0) || capacity == 0 || capacity > UINT32_MAX / 4) return NULL;
    double interval = 1e9 / per_second, refill = interval * burst;
    svc_ratelimit *rl = calloc(1, sizeof *rl);
    if (!rl) return NULL;
    pthread_mutex_init(&rl->mu, NULL);
    uint32_t chains = 2;
    while (chains < 2 * capacity) chains *= 2;
    rl->heads = calloc(chains, sizeof *rl->heads);
    rl->heap = malloc(capacity * sizeof *rl->heap);
    rl->entries = calloc(capacity, sizeof *rl->entries);
    if (!rl->heads || !rl->heap || !rl->entries) {
        svc_ratelimit_free(rl);
        return NULL;
    }
    rl->mask = chains - 1;
    rl->capacity = capacity;
    rl->refill_ns = refill >= (double)REFILL_MAX_NS ? REFILL_MAX_NS : (int64_t)refill;
    rl->interval_ns = interval >= (double)REFILL_MAX_NS ? REFILL_MAX_NS : interval < 1 ? 1 : (int64_t)interval;
    if (rl->refill_ns < rl->interval_ns) rl->refill_ns = rl->interval_ns;
    svc_random(rl->seed, sizeof rl->seed);
    return rl;
}

svc_ratelimit *svc_ratelimit_new(double burst, double per_second) {
    return svc__ratelimit_new_sized(burst, per_second, SVC_RATELIMIT_KEYS);
}

void svc_ratelimit_free(svc_ratelimit *rl) {
    if (!rl) return;
    pthread_mutex_destroy(&rl->mu);
    free(rl->heads);
    free(rl->heap);
    free(rl->entries);
    free(rl);
}

static uint32_t hash(const svc_ratelimit *rl, const char *key, size_t n) {
    uint64_t h;
    crypto_shorthash((unsigned char *)&h, (const unsigned char *)key, n, rl->seed);
    return (uint32_t)h;
}

/* ---- the heap, ordered by empty_ns ----------------------------------------- */

static void heap_set(svc_ratelimit *rl, uint32_t pos, uint32_t e) {
    rl->heap[pos] = e;
    rl->entries[e].pos = pos;
}

static void sift_up(svc_ratelimit *rl, uint32_t pos) {
    uint32_t e = rl->heap[pos];
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (rl->entries[rl->heap[parent]].empty_ns <= rl->entries[e].empty_ns) break;
        heap_set(rl, pos, rl->heap[parent]);
        pos = parent;
    }
    heap_set(rl, pos, e);
}

static void sift_down(svc_ratelimit *rl, uint32_t pos) {
    uint32_t e = rl->heap[pos];
    for (;;) {
        uint32_t child = 2 * pos + 1;
        if (child >= rl->used) break;
        if (child + 1 < rl->used &&
            rl->entries[rl->heap[child + 1]].empty_ns < rl->entries[rl->heap[child]].empty_ns)
            child++;
        if (rl->entries[e].empty_ns <= rl->entries[rl->heap[child]].empty_ns) break;
        heap_set(rl, pos, rl->heap[child]);
        pos = child;
    }
    heap_set(rl, pos, e);
}

/* ---- the table ------------------------------------------------------------- */

static uint32_t find(const svc_ratelimit *rl, const char *key, size_t n, uint32_t h) {
    for (uint32_t link = rl->heads[h & rl->mask]; link; link = rl->entries[link - 1].next) {
        const entry *e = &rl->entries[link - 1];
        if (e->hash == h && e->len == n && memcmp(e->key, key, n) == 0) return link - 1;
    }
    return NONE;
}

static void unlink_entry(svc_ratelimit *rl, uint32_t i) {
    uint32_t *link = &rl->heads[rl->entries[i].hash & rl->mask];
    while (*link != i + 1) link = &rl->entries[*link - 1].next;
    *link = rl->entries[i].next;
}

/* A new entry for key with a full bucket at now: a free one, or else the one
 * whose bucket is fullest now (the heap's root), which leaves the table. */
static uint32_t insert(svc_ratelimit *rl, const char *key, size_t n, uint32_t h, int64_t now) {
    uint32_t i;
    if (rl->used < rl->capacity) {
        i = rl->used++;
        heap_set(rl, i, i);
    } else {
        i = rl->heap[0];
        if (now - rl->entries[i].empty_ns < rl->refill_ns) rl->evicted_active++;
        unlink_entry(rl, i);
    }
    entry *e = &rl->entries[i];
    memcpy(e->key, key, n);
    e->key[n] = '\0';
    e->len = (uint8_t)n;
    e->hash = h;
    e->next = rl->heads[h & rl->mask];
    rl->heads[h & rl->mask] = i + 1;
    e->empty_ns = now - rl->refill_ns;
    /* Appended as a leaf it moves up; put at the root it may belong below
     * buckets that have been full for longer. */
    sift_up(rl, e->pos);
    sift_down(rl, e->pos);
    return i;
}

int svc__ratelimit_take_at(svc_ratelimit *rl, const char *key, int64_t now, int *retry_after_s) {
    size_t n = strnlen(key, SVC_RATELIMIT_KEY_MAX);
    uint32_t h = hash(rl, key, n);
    pthread_mutex_lock(&rl->mu);
    uint32_t i = find(rl, key, n, h);
    if (i == NONE) i = insert(rl, key, n, h, now);
    entry *e = &rl->entries[i];
    /* A bucket holds at most burst tokens however long it was left alone. */
    if (e->empty_ns < now - rl->refill_ns) e->empty_ns = now - rl->refill_ns;
    int rc = SVC_OK;
    if (now - e->empty_ns >= rl->interval_ns) {
        e->empty_ns += rl->interval_ns;
        sift_down(rl, e->pos);
    } else {
        int64_t wait_ns = e->empty_ns + rl->interval_ns - now;
        int64_t wait_s = wait_ns / 1000000000 + (wait_ns % 1000000000 != 0);
        *retry_after_s = wait_s < 1 ? 1 : wait_s > INT_MAX ? INT_MAX : (int)wait_s;
        rc = SVC_EAGAIN;
    }
    pthread_mutex_unlock(&rl->mu);
    return rc;
}

int svc_ratelimit_take(svc_ratelimit *rl, const char *key, int *retry_after_s) {
    return svc__ratelimit_take_at(rl, key, (int64_t)svc_now_ns(), retry_after_s);
}

uint32_t svc__ratelimit_chain(const svc_ratelimit *rl, const char *key) {
    return hash(rl, key, strnlen(key, SVC_RATELIMIT_KEY_MAX)) & rl->mask;
}

void svc__ratelimit_stats(svc_ratelimit *rl, uint32_t *keys, uint64_t *evicted_active) {
    pthread_mutex_lock(&rl->mu);
    *keys = rl->used;
    *evicted_active = rl->evicted_active;
    pthread_mutex_unlock(&rl->mu);
}

const char *svc_ratelimit_peer_key(const char *peer, char out[SVC_RATELIMIT_PEER_KEY_MAX]) {
    unsigned char a[16];
    if (!peer || inet_pton(AF_INET6, peer, a) != 1) return peer;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, mapped, sizeof mapped) == 0)
        return inet_ntop(AF_INET, a + 12, out, SVC_RATELIMIT_PEER_KEY_MAX) ? out : peer;
    memset(a + 8, 0, 8);
    if (!inet_ntop(AF_INET6, a, out, SVC_RATELIMIT_PEER_KEY_MAX - 3)) return peer;
    strcat(out, "/64");
    return out;
}
