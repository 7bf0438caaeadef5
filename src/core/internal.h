/* Internal to svckit: shared between layers, not part of the public API. */
#ifndef SVC_CORE_INTERNAL_H
#define SVC_CORE_INTERNAL_H

#include "svckit/core.h"

/*
 * Hand formatting for hot paths (src/core/buf.c), where a printf call costs
 * more than the work around it. Each gives the bytes printf would for the
 * format named, so log lines and headers stay the same.
 */
/* Lowercase hex, zero-padded to at least width digits (0..16): "%0<width>llx".
 * out needs 17 bytes; it is NUL-terminated. Returns the digits written. */
size_t svc__fmt_hex64(char *out, uint64_t v, int width);
/* "%llu" and "%lld". out needs 21 bytes; NUL-terminated. Returns the length. */
size_t svc__fmt_u64(char *out, uint64_t v);
size_t svc__fmt_i64(char *out, int64_t v);
/*
 * "%.<decimals>f" of v, for decimals 0..9: the exact binary value of v
 * rounded to nearest, ties to even, as glibc does; "-" for every negative v,
 * -0.0 included. out needs SVC__FMT_FIXED_MAX bytes; NUL-terminated.
 * Returns the length, or 0 (out untouched) for what it leaves to printf:
 * NaN, the infinities, decimals out of range, and |v| * 10^decimals of
 * 2^64 and more (|v| from about 1.8e10 with 9 decimals, 1.8e16 with 3).
 */
#define SVC__FMT_FIXED_MAX 32
size_t svc__fmt_fixed(char *out, double v, int decimals);
/* The same, appended to a buffer (what svc__fmt_fixed leaves to printf goes
 * through svc_buf_printf). */
void svc__buf_put_hex64(svc_buf *b, uint64_t v, int width);
void svc__buf_put_fixed(svc_buf *b, double v, int decimals);

/*
 * FNV-1a, 64 bits, over data[0..n) (src/core/util.c), continuing from h:
 * SVC__FNV1A_SEED (the standard offset basis) for a fresh hash, or an earlier
 * result to hash more bytes after it. For spreading keys (cache slots, the
 * loop a subject goes to) and ETags; not a defence against chosen
 * collisions. data may be NULL when n is 0. Thread-safe.
 */
#define SVC__FNV1A_SEED 0xcbf29ce484222325ull
uint64_t svc__fnv1a(const void *data, size_t n, uint64_t h);

/*
 * The rate limiter's insides (src/core/ratelimit.c), for its tests: a limiter
 * tracking capacity keys; a take at a given monotonic time in nanoseconds;
 * the hash chain a key goes to (equal chains: colliding keys); and the keys
 * tracked, with how many evictions took a bucket that was not full.
 */
typedef struct svc_ratelimit svc_ratelimit;
svc_ratelimit *svc__ratelimit_new_sized(double burst, double per_second, uint32_t capacity);
int svc__ratelimit_take_at(svc_ratelimit *rl, const char *key, int64_t now_ns, int *retry_after_s);
uint32_t svc__ratelimit_chain(const svc_ratelimit *rl, const char *key);
void svc__ratelimit_stats(svc_ratelimit *rl, uint32_t *keys, uint64_t *evicted_active);

#endif
