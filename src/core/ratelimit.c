/* Token buckets in a fixed, hashed table; see svckit/limit.h. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "svckit/limit.h"

typedef struct bucket {
    char key[SVC_RATELIMIT_KEY_MAX + 1];
    double tokens;
    uint64_t updated_ns;
} bucket;

struct svc_ratelimit {
    pthread_mutex_t mu;
    double burst, rate;
    uint64_t seed;
    bucket slots[SVC_RATELIMIT_SLOTS];
};

svc_ratelimit *svc_ratelimit_new(double burst, double per_second) {
    if (!(burst >= 1) || !(per_second > 0)) return NULL;
    svc_ratelimit *rl = calloc(1, sizeof *rl);
    if (!rl) return NULL;
    pthread_mutex_init(&rl->mu, NULL);
    rl->burst = burst;
    rl->rate = per_second;
    /* A random seed keeps clients from choosing keys that collide on purpose. */
    svc_random(&rl->seed, sizeof rl->seed);
    return rl;
}

void svc_ratelimit_free(svc_ratelimit *rl) {
    if (!rl) return;
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

static uint64_t hash(uint64_t seed, const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

int svc_ratelimit_take(svc_ratelimit *rl, const char *key, int *retry_after_s) {
    size_t n = strnlen(key, SVC_RATELIMIT_KEY_MAX);
    uint64_t now = svc_now_ns();
    pthread_mutex_lock(&rl->mu);
    bucket *b = &rl->slots[hash(rl->seed, key, n) % SVC_RATELIMIT_SLOTS];
    if (b->updated_ns) b->tokens = fmin(rl->burst, b->tokens + (double)(now - b->updated_ns) / 1e9 * rl->rate);
    if (!b->updated_ns || (strncmp(b->key, key, n) != 0 && b->tokens >= rl->burst)) {
        memcpy(b->key, key, n);
        b->key[n] = '\0';
        b->tokens = rl->burst;
    }
    b->updated_ns = now;
    int rc = SVC_OK;
    if (b->tokens >= 1) {
        b->tokens -= 1;
    } else {
        double wait = (1 - b->tokens) / rl->rate;
        *retry_after_s = (int)ceil(wait) < 1 ? 1 : (int)ceil(wait);
        rc = SVC_EAGAIN;
    }
    pthread_mutex_unlock(&rl->mu);
    return rc;
}
