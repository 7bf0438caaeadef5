/*
 * Logging: one line per event on stdout, JSON or text.
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
#include "svckit/core.h"
#include "svckit/json.h"

#define LOG_FLUSH_AT (32 * 1024)
#define LOG_MAX_BUFFER (4 * 1024 * 1024)

static const char *log_service = "svckit";
static svc_log_level log_level = SVC_LOG_INFO;
static int log_json = 1;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_ulong log_dropped;

static _Thread_local svc_buf tl_buf;
static _Thread_local int tl_buffered;
static _Thread_local time_t tl_sec = -1;
static _Thread_local char tl_stamp[SVC_TIME_RFC3339_MAX];

void svc_log_setup(const char *service, svc_log_level level, int json) {
    if (service) log_service = service;
    log_level = level;
    log_json = json;
}

int svc_log_enabled(svc_log_level level) { return level >= log_level; }

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
    } else {
        static const char *tn[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
        svc_buf_append(b, ts + 11, 12); /* HH:MM:SS.mmm */
        svc_buf_putc(b, ' ');
        svc_buf_puts(b, (unsigned)level < 4 ? tn[level] : "INFO ");
        svc_buf_putc(b, ' ');
    }
}

int svc__log_json(void) { return log_json; }

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
        svc_buf_putc(&line, '}');
    } else {
        svc_buf_append(&line, msg, mlen);
    }
    if (!line.oom) svc_log_raw(line.data, line.len);
    svc_buf_free(&line);
    if (level >= SVC_LOG_ERROR) svc_log_flush();
}
