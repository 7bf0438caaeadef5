/*
 * Logging: one line per event on stdout, JSON or text.
 *
 * JSON is for machines and stays on the fast path. Text is for a person at a
 * terminal: aligned, optionally coloured, and scrubbed of control characters
 * (a request path or a peer's message must not drive the terminal).
 *
 * Worker threads (svc__log_set_buffered) collect lines in a thread-local buffer
 * that their loop flushes on a timer, so a request's access-log line costs a
 * memcpy, not a write(2). Other threads write each line at once. A global
 * mutex keeps whole buffers from interleaving on stdout. If stdout blocks and a
 * buffer reaches LOG_MAX_BUFFER, lines are dropped and counted, never queued
 * without bound.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>
#include <errno.h>

#include "core/internal.h"
#include "obs/internal.h"
#include "svckit/core.h"
#include "svckit/json.h"

#define LOG_FLUSH_AT (32 * 1024)
#define LOG_MAX_BUFFER (4 * 1024 * 1024)

static const char *log_service = "svckit";
static svc_log_level log_level = SVC_LOG_INFO;
static int log_json = 1;
static int log_color;
static int log_named = 1;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_ulong log_dropped;

static _Thread_local svc_buf tl_buf;
static _Thread_local int tl_buffered;
static _Thread_local time_t tl_sec = -1;
static _Thread_local char tl_stamp[SVC_TIME_RFC3339_MAX];
static _Thread_local const char *tl_trace_id;

void svc_log_setup(const char *service, svc_log_level level, int json) {
    if (service) log_service = service;
    log_level = level;
    log_json = json;
}

void svc_log_text_style(int color, int name_service) {
    log_color = color;
    log_named = name_service;
}

int svc_log_enabled(svc_log_level level) { return level >= log_level; }

const char *svc__log_trace_swap(const char *trace_id) {
    const char *prev = tl_trace_id;
    tl_trace_id = trace_id;
    return prev;
}

int svc_log_level_parse(const char *s, svc_log_level *out) {
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (svc_log_level)i;
            return SVC_OK;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = SVC_LOG_WARN;
        return SVC_OK;
    }
    return SVC_EINVAL;
}

unsigned long svc__log_dropped(void) { return atomic_load(&log_dropped); }

void svc__log_set_buffered(int on) { tl_buffered = on; }

/* Writes whole buffers under one lock so lines never interleave. */
static void write_iov(struct iovec *iov, int n) {
    pthread_mutex_lock(&out_lock);
    while (n > 0) {
        ssize_t w = writev(STDOUT_FILENO, iov, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            break; /* stdout gone: nothing better to do than drop */
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    pthread_mutex_unlock(&out_lock);
}

static void write_all(const char *p, size_t n) {
    struct iovec iov = {(void *)p, n};
    write_iov(&iov, 1);
}

void svc_log_flush(void) {
    if (tl_buf.len) write_all(tl_buf.data, tl_buf.len);
    svc_buf_reset(&tl_buf);
    if (tl_buf.cap > 4 * LOG_FLUSH_AT) svc_buf_free(&tl_buf);
}

void svc__log_thread_exit(void) {
    svc_log_flush();
    svc_buf_free(&tl_buf);
}

/* "2026-11-26T03:37:00.123Z", recomputing the date part once per second. */
const char *svc__log_timestamp(char out[32]) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != tl_sec) {
        svc_time_rfc3339((int64_t)ts.tv_sec * 1000, tl_stamp);
        tl_sec = ts.tv_sec;
    }
    int ms = (int)(ts.tv_nsec / 1000000);
    memcpy(out, tl_stamp, 19);
    out[19] = '.';
    out[20] = (char)('0' + ms / 100);
    out[21] = (char)('0' + ms / 10 % 10);
    out[22] = (char)('0' + ms % 10);
    out[23] = 'Z';
    out[24] = '\0';
    return out;
}

void svc_log_raw(const char *line, size_t len) {
    if (!tl_buffered) {
        /* Threads without a loop to flush for them write at once, and keep no
         * buffer that would outlive them. */
        struct iovec iov[2] = {{(void *)line, len}, {(void *)"\n", 1}};
        write_iov(iov, 2);
        return;
    }
    if (tl_buf.len + len + 1 > LOG_MAX_BUFFER) {
        atomic_fetch_add(&log_dropped, 1);
        return;
    }
    svc_buf_append(&tl_buf, line, len);
    svc_buf_putc(&tl_buf, '\n');
    if (tl_buf.oom) {
        svc_buf_free(&tl_buf);
        atomic_fetch_add(&log_dropped, 1);
        return;
    }
    if (tl_buf.len >= LOG_FLUSH_AT) svc_log_flush();
}

static const char *level_name(svc_log_level l) {
    static const char *n[] = {"debug", "info", "warn", "error"};
    return (unsigned)l < 4 ? n[l] : "info";
}

/* SGR sequences of the text format; red is kept for errors. */
#define SGR_RESET "\033[0m"
#define SGR_DIM "\033[90m"
#define PUT_LIT(b, s) svc_buf_append((b), (s), sizeof(s) - 1)

static void put_sgr(svc_buf *b, const char *sgr) {
    if (log_color) svc_buf_puts(b, sgr);
}

static void put_spaces(svc_buf *b, size_t n) {
    static const char spaces[] = "                                ";
    while (n) {
        size_t k = n < sizeof spaces - 1 ? n : sizeof spaces - 1;
        svc_buf_append(b, spaces, k);
        n -= k;
    }
}

/* Bytes of the well-formed UTF-8 sequence (RFC 3629) at s[0..n) whose lead
 * byte is c >= 0x80, and its code point; 0 if there is none. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned char c = s[0];
    size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!len || len > n) return 0;
    uint32_t v = c & (0x7F >> len);
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[k] & 0x3F);
    }
    /* Overlong, surrogate or past U+10FFFF. */
    if ((len == 3 && (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF))) || (len == 4 && (v < 0x10000 || v > 0x10FFFF)))
        return 0;
    *cp = v;
    return len;
}

/* Appends s with every C0 control, DEL, C1 control (U+0080..U+009F; U+009B
 * is a CSI to many terminals) and every byte that is not part of well-formed
 * UTF-8 (a lone 0x9B is a CSI to a terminal in an 8-bit mode) as '?'.
 * Returns the characters written. */
static size_t put_clean(svc_buf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t start = 0, chars = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        size_t len = 1;
        int bad;
        if (c < 0x80) {
            bad = c < 0x20 || c == 0x7F;
        } else {
            uint32_t cp = 0;
            len = utf8_seq(u + i, n - i, &cp);
            bad = !len || cp <= 0x9F;
            if (!len) len = 1;
        }
        chars++;
        if (!bad) {
            i += len;
            continue;
        }
        svc_buf_append(b, s + start, i - start);
        svc_buf_putc(b, '?');
        i += len;
        start = i;
    }
    svc_buf_append(b, s + start, n - start);
    return chars;
}

/* "  trace=<id>" when a request is being handled on this thread. */
static void put_trace_text(svc_buf *b, const char *trace_id) {
    if (!trace_id || !*trace_id) return;
    PUT_LIT(b, "  ");
    put_sgr(b, SGR_DIM);
    PUT_LIT(b, "trace=");
    svc_buf_puts(b, trace_id);
    put_sgr(b, SGR_RESET);
}

void svc__log_line_begin(svc_buf *b, svc_log_level level) {
    char ts[32];
    svc__log_timestamp(ts);
    if (log_json) {
        svc_buf_puts(b, "{\"time\":\"");
        svc_buf_puts(b, ts);
        svc_buf_puts(b, "\",\"level\":\"");
        svc_buf_puts(b, level_name(level));
        svc_buf_puts(b, "\",\"service\":");
        svc_json_escape(b, log_service, strlen(log_service));
        return;
    }
    static const char *const tn[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    static const char *const tc[] = {SGR_DIM, "\033[32m", "\033[33m", "\033[1;31m"};
    unsigned l = (unsigned)level < 4 ? (unsigned)level : SVC_LOG_INFO;
    put_sgr(b, SGR_DIM);
    svc_buf_append(b, ts + 11, 12); /* HH:MM:SS.mmm */
    put_sgr(b, SGR_RESET);
    svc_buf_putc(b, ' ');
    put_sgr(b, tc[l]);
    svc_buf_puts(b, tn[l]);
    put_sgr(b, SGR_RESET);
    svc_buf_putc(b, ' ');
    if (log_named) {
        svc_buf_puts(b, log_service);
        svc_buf_putc(b, ' ');
    }
}

int svc__log_json(void) { return log_json; }

void svc__log_text_access(svc_buf *b, const char *method, const char *path, int status, double ms,
                          const char *trace_id, const char *via) {
    size_t n = strlen(method);
    put_clean(b, method, n);
    put_spaces(b, n < 7 ? 8 - n : 1); /* OPTIONS is the longest */
    n = put_clean(b, path, strlen(path));
    put_spaces(b, n < 23 ? 24 - n : 1);
    put_sgr(b, status >= 500 ? "\033[1;31m" : status >= 400 ? "\033[33m" : status >= 300 ? "\033[36m"
                                                                                      : "\033[32m");
    svc_buf_put_i64(b, status);
    put_sgr(b, SGR_RESET);
    char d[SVC__FMT_FIXED_MAX];
    n = svc__fmt_fixed(d, ms, 2);
    put_spaces(b, n && n < 7 ? 8 - n : 1);
    if (n) svc_buf_append(b, d, n);
    else svc__buf_put_fixed(b, ms, 2);
    PUT_LIT(b, "ms");
    put_trace_text(b, trace_id);
    if (via) {
        PUT_LIT(b, " via ");
        svc_buf_puts(b, via);
    }
}

void svc_log(svc_log_level level, const char *fmt, ...) {
    if (level < log_level) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t mlen = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
    svc_buf line = {0};
    svc__log_line_begin(&line, level);
    if (log_json) {
        svc_buf_puts(&line, ",\"msg\":");
        svc_json_escape(&line, msg, mlen);
        if (tl_trace_id && *tl_trace_id) {
            PUT_LIT(&line, ",\"trace_id\":\"");
            svc_buf_puts(&line, tl_trace_id);
            svc_buf_putc(&line, '"');
        }
        svc_buf_putc(&line, '}');
    } else {
        put_clean(&line, msg, mlen);
        put_trace_text(&line, tl_trace_id);
    }
    if (!line.oom) svc_log_raw(line.data, line.len);
    svc_buf_free(&line);
    if (level >= SVC_LOG_ERROR) svc_log_flush();
}
