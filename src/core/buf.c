/* Growable byte buffers with a sticky out-of-memory flag. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svckit/core.h"

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
    if (svc_buf_reserve(b, n) != SVC_OK) return;
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
    char tmp[24];
    char *p = tmp + sizeof tmp;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    svc_buf_append(b, p, (size_t)(tmp + sizeof tmp - p));
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
