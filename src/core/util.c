/* Status strings, strict integer parsing, clocks, randomness and hashing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#include "core/internal.h"
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

size_t svc_time_rfc3339(int64_t ms, char out[SVC_TIME_RFC3339_MAX]) {
    /* Floor division, so that times before 1970 keep 0..999 milliseconds. */
    int64_t sec = ms / 1000, rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        sec--;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        out[0] = '\0';
        return 0;
    }
    int n = snprintf(out, SVC_TIME_RFC3339_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)rem);
    return n > 0 && n < SVC_TIME_RFC3339_MAX ? (size_t)n : 0;
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

uint64_t svc__fnv1a(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
