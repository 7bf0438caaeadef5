/* Growable byte buffers with a sticky out-of-memory flag. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

int svc_buf_reserve(svc_buf *b, size_t extra) {
    if (b->oom) return SVC_ENOMEM;
    if (extra > SIZE_MAX / 2 - b->len) goto fail;
    size_t need = b->len + extra + 1; /* room for the terminating NUL */
    if (need <= b->cap) return SVC_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) goto fail;
    b->data = d;
    b->cap = cap;
    return SVC_OK;
fail:
    b->oom = 1;
    return SVC_ENOMEM;
}

void svc_buf_append(svc_buf *b, const void *data, size_t n) {
    /* The common case, room already there, without the call. */
    if (b->oom || n >= b->cap - b->len) {
        if (svc_buf_reserve(b, n) != SVC_OK) return;
    }
    if (n) memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void svc_buf_puts(svc_buf *b, const char *s) { svc_buf_append(b, s, strlen(s)); }

void svc_buf_putc(svc_buf *b, char c) {
    if (b->len + 2 > b->cap && svc_buf_reserve(b, 1) != SVC_OK) return;
    if (b->oom) return;
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void svc_buf_vprintf(svc_buf *b, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    size_t room = b->cap > b->len ? b->cap - b->len : 0;
    int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    if ((size_t)n >= room) {
        if (svc_buf_reserve(b, (size_t)n) != SVC_OK) {
            va_end(ap2);
            return;
        }
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    }
    va_end(ap2);
    b->len += (size_t)n;
}

void svc_buf_printf(svc_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    svc_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void svc_buf_put_u64(svc_buf *b, uint64_t v) {
    char tmp[21];
    svc_buf_append(b, tmp, svc__fmt_u64(tmp, v));
}

void svc_buf_put_i64(svc_buf *b, int64_t v) {
    if (v < 0) {
        svc_buf_putc(b, '-');
        svc_buf_put_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        svc_buf_put_u64(b, (uint64_t)v);
    }
}

void svc_buf_reset(svc_buf *b) {
    b->len = 0;
    b->oom = 0;
    if (b->data) b->data[0] = '\0';
}

void svc_buf_free(svc_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- hand formatting (core/internal.h) ---- */

size_t svc__fmt_u64(char *out, uint64_t v) {
    /* Two digits per division, from the end of a scratch buffer. */
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    char tmp[20];
    char *p = tmp + sizeof tmp;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        p -= 2;
        memcpy(p, pairs + 2 * r, 2);
    }
    if (v >= 10) {
        p -= 2;
        memcpy(p, pairs + 2 * v, 2);
    } else {
        *--p = (char)('0' + v);
    }
    size_t n = (size_t)(tmp + sizeof tmp - p);
    memcpy(out, p, n);
    out[n] = '\0';
    return n;
}

size_t svc__fmt_i64(char *out, int64_t v) {
    if (v >= 0) return svc__fmt_u64(out, (uint64_t)v);
    out[0] = '-';
    return 1 + svc__fmt_u64(out + 1, (uint64_t)0 - (uint64_t)v);
}

size_t svc__fmt_hex64(char *out, uint64_t v, int width) {
    static const char digits[] = "0123456789abcdef";
    if (width < 1) width = 1;
    if (width > 16) width = 16;
    size_t n = v ? (size_t)(67 - __builtin_clzll(v)) / 4 : 1; /* significant digits */
    if (n < (size_t)width) n = (size_t)width;
    for (size_t i = n; i-- > 0; v >>= 4) out[i] = digits[v & 15];
    out[n] = '\0';
    return n;
}

/*
 * A double is m * 2^e exactly (m < 2^53), so v * 10^decimals is the integer
 * m * 10^decimals (< 2^83) shifted by e, and rounding it to nearest, ties to
 * even, is exact integer arithmetic: what glibc's printf does in the default
 * rounding mode, without its multi-precision machinery.
 */
size_t svc__fmt_fixed(char *out, double v, int decimals) {
    if (decimals < 0 || decimals > 9) return 0;
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int neg = (int)(bits >> 63);
    int ex = (int)((bits >> 52) & 0x7ff);
    uint64_t m = bits & ((UINT64_C(1) << 52) - 1);
    if (ex == 0x7ff) return 0; /* NaN, infinities */
    int e;
    if (ex == 0) {
        e = -1074; /* subnormal (or zero) */
    } else {
        m |= UINT64_C(1) << 52;
        e = ex - 1075;
    }
    uint64_t pow10 = 1;
    for (int i = 0; i < decimals; i++) pow10 *= 10;
    unsigned __int128 scaled = (unsigned __int128)m * pow10, q;
    if (e >= 0) {
        if (e >= 64 || (scaled >> (64 - e)) != 0) return 0;
        q = scaled << e;
    } else if (-e > 84) {
        q = 0; /* below half a unit of the last digit: scaled < 2^83 <= half */
    } else {
        int s = -e;
        unsigned __int128 one = 1;
        q = scaled >> s;
        unsigned __int128 rem = scaled & ((one << s) - 1), half = one << (s - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
    }
    if (q >> 64) return 0;
    uint64_t u = (uint64_t)q;
    size_t n = 0;
    if (neg) out[n++] = '-';
    n += svc__fmt_u64(out + n, u / pow10);
    if (decimals) {
        out[n++] = '.';
        uint64_t frac = u % pow10;
        for (int i = decimals; i-- > 0; frac /= 10) out[n + (size_t)i] = (char)('0' + frac % 10);
        n += (size_t)decimals;
    }
    out[n] = '\0';
    return n;
}

void svc__buf_put_hex64(svc_buf *b, uint64_t v, int width) {
    char tmp[17];
    svc_buf_append(b, tmp, svc__fmt_hex64(tmp, v, width));
}

void svc__buf_put_fixed(svc_buf *b, double v, int decimals) {
    char tmp[SVC__FMT_FIXED_MAX];
    size_t n = svc__fmt_fixed(tmp, v, decimals);
    if (n) svc_buf_append(b, tmp, n);
    else svc_buf_printf(b, "%.*f", decimals, v);
}
