/*
 * svckit/limit.h: per-key rate limiting (token buckets), for login attempts,
 * per-client request limits and the like.
 *
 * A limiter holds at most SVC_RATELIMIT_SLOTS keys in a fixed table: a new key
 * that finds its slot taken by another replaces it when that one's bucket has
 * refilled (it would allow a burst anyway), else shares its bucket. Memory is
 * therefore fixed however many distinct clients appear, and a flood from many
 * addresses can only make the limiter stricter, never unbounded. Thread-safe.
 */
#ifndef SVCKIT_LIMIT_H
#define SVCKIT_LIMIT_H

#include "svckit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SVC_RATELIMIT_SLOTS 4096
#define SVC_RATELIMIT_KEY_MAX 63

typedef struct svc_ratelimit svc_ratelimit;

/* burst: bucket size (requests allowed at once); per_second: refill rate.
 * NULL on out-of-memory or non-positive arguments. */
svc_ratelimit *svc_ratelimit_new(double burst, double per_second);
void svc_ratelimit_free(svc_ratelimit *rl);
/* Takes one token for key (truncated to SVC_RATELIMIT_KEY_MAX bytes). SVC_OK,
 * or SVC_EAGAIN with *retry_after_s (>= 1) set to when a token will be there. */
int svc_ratelimit_take(svc_ratelimit *rl, const char *key, int *retry_after_s);

#ifdef __cplusplus
}
#endif
#endif
