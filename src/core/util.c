/* Status strings, strict integer parsing, clocks and randomness. */
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#include "svckit/core.h"

const char *svc_status_str(int status) {
    switch (status) {
    case SVC_OK: return "ok";
    case SVC_ERR: return "error";
    case SVC_ENOMEM: return "out of memory";
    case SVC_EINVAL: return "invalid argument";
    case SVC_ENOTFOUND: return "not found";
    case SVC_ERANGE: return "out of range";
    case SVC_EIO: return "i/o error";
    case SVC_ETIMEDOUT: return "timed out";
    case SVC_EEXIST: return "already exists";
    case SVC_EAGAIN: return "try again";
    case SVC_ECLOSED: return "closed";
    case SVC_EAUTH: return "authentication failed";
    case SVC_ASYNC: return "pending";
    default: return "unknown status";
    }
}

int svc_parse_i64(const char *s, int64_t *out) {
    if (!s || !*s) return SVC_EINVAL;
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    if (*p < '0' || *p > '9') return SVC_EINVAL;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return SVC_EINVAL;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE) return SVC_ERANGE;
    if (*end) return SVC_EINVAL;
    *out = (int64_t)v;
    return SVC_OK;
}

uint64_t svc_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t svc_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void svc_random(void *buf, size_t n) {
    unsigned char *p = buf;
    while (n) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            abort(); /* no entropy source: nothing safe to do */
        }
        p += r;
        n -= (size_t)r;
    }
}
