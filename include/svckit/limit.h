/*
 * svckit/limit.h: per-key rate limiting (token buckets), for login attempts,
 * per-client request limits and the like.
 *
 * Every key has a bucket of its own: keys are stored whole (up to
 * SVC_RATELIMIT_KEY_MAX bytes) in a hash table, so two keys never share a
 * bucket, whatever their hashes. Memory is bounded: a limiter tracks at most
 * SVC_RATELIMIT_KEYS keys (about 100 bytes each, reserved at creation and
 * touched only as keys arrive). When the table is full, a new key takes the
 * entry of the key whose bucket would be the fullest now (a full bucket
 * carries no information: its key would start full anyway), and starts with
 * a full bucket of its own. A flood from more addresses than that can
 * therefore only reset the buckets of the fullest keys, its own partly
 * drained ones among them; it never makes a client inherit another's empty
 * bucket. Thread-safe.
 */
#ifndef SVCKIT_LIMIT_H
#define SVCKIT_LIMIT_H

#include "svckit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SVC_RATELIMIT_KEYS 4096      /* keys tracked per limiter */
#define SVC_RATELIMIT_KEY_MAX 63     /* bytes of a key; longer keys are cut */

typedef struct svc_ratelimit svc_ratelimit;

/* burst: bucket size (requests allowed at once, at least 1); per_second:
 * refill rate (> 0). NULL on out-of-memory or bad arguments. Free with
 * svc_ratelimit_free; NULL is a no-op. */
svc_ratelimit *svc_ratelimit_new(double burst, double per_second);
void svc_ratelimit_free(svc_ratelimit *rl);
/* Takes one token for key (truncated to SVC_RATELIMIT_KEY_MAX bytes). SVC_OK,
 * or SVC_EAGAIN with *retry_after_s (>= 1) set to when a token will be there. */
int svc_ratelimit_take(svc_ratelimit *rl, const char *key, int *retry_after_s);

/* Bytes of svc_ratelimit_peer_key's output, its NUL included. */
#define SVC_RATELIMIT_PEER_KEY_MAX 48
/* The key a per-client limit should use for peer (svc_req_peer's text):
 * an IPv6 address stands for its /64 ("2001:db8:1:2::/64"), since one
 * client (a home, a cloud machine) is usually given a whole /64 and can
 * send from any address in it; an IPv4-mapped IPv6 address is its IPv4
 * address; anything else, IPv4 included, is itself. Returns out, or peer. */
const char *svc_ratelimit_peer_key(const char *peer, char out[SVC_RATELIMIT_PEER_KEY_MAX]);

#ifdef __cplusplus
}
#endif
#endif
