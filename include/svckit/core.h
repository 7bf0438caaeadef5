/*
 * svckit/core.h: status codes, arenas, growable buffers and logging.
 *
 * Conventions for the whole API:
 *  - Functions that can fail return an int status: SVC_OK (0) or a negative
 *    SVC_E* code. Results come back through out-parameters.
 *  - Every object has a create/destroy pair; destroy(NULL) is a no-op.
 *  - A function returning a pointer says who owns it.
 *  - Unless a function says otherwise it is not thread-safe for the same object;
 *    distinct objects may be used from distinct threads.
 */
#ifndef SVCKIT_CORE_H
#define SVCKIT_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SVC_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define SVC_NODISCARD __attribute__((warn_unused_result))
#else
#define SVC_PRINTF(f, a)
#define SVC_NODISCARD
#endif

/* ---- status codes ------------------------------------------------------- */

enum {
    SVC_OK = 0,
    SVC_ERR = -1,        /* generic failure; see the log */
    SVC_ENOMEM = -2,     /* allocation failed */
    SVC_EINVAL = -3,     /* invalid argument or malformed input */
    SVC_ENOTFOUND = -4,  /* no such key, route, row, ... */
    SVC_ERANGE = -5,     /* value out of range or over a limit */
    SVC_EIO = -6,        /* I/O or system error (errno may say more) */
    SVC_ETIMEDOUT = -7,  /* deadline passed */
    SVC_EEXIST = -8,     /* already exists (unique constraint, duplicate) */
    SVC_EAGAIN = -9,     /* try again later (full, busy, rate limited) */
    SVC_ECLOSED = -10,   /* peer or object closed */
    SVC_EAUTH = -11,     /* authentication or signature failure */
};

/* Static, never NULL, English description of a status code. */
const char *svc_status_str(int status);

/* ---- arenas --------------------------------------------------------------
 * Bump allocators freed all at once. Every request owns one: handlers allocate
 * from it and never free. Allocations are 16-byte aligned. */

typedef struct svc_arena svc_arena;

/* New arena whose blocks are at least block_size bytes (0: 4 KiB). Caller
 * frees with svc_arena_free. NULL on out-of-memory. */
svc_arena *svc_arena_new(size_t block_size);
/* Frees the arena and everything allocated from it. NULL is a no-op. */
void svc_arena_free(svc_arena *a);
/* Forgets every allocation but keeps the first block for reuse. */
void svc_arena_reset(svc_arena *a);
/* n bytes, uninitialised; NULL on out-of-memory or n > SIZE_MAX/2. */
void *svc_arena_alloc(svc_arena *a, size_t n);
/* n zeroed bytes. */
void *svc_arena_calloc(svc_arena *a, size_t n);
/* Copies of strings, NUL-terminated, in the arena. NULL on out-of-memory. */
char *svc_arena_strdup(svc_arena *a, const char *s);
char *svc_arena_strndup(svc_arena *a, const char *s, size_t n);
char *svc_arena_printf(svc_arena *a, const char *fmt, ...) SVC_PRINTF(2, 3);
/* Bytes currently held by the arena (for metrics and limits). */
size_t svc_arena_bytes(const svc_arena *a);

/* ---- growable byte buffers ------------------------------------------------
 * Owned by whoever holds the struct; zero-initialise ({0}) before first use.
 * After an allocation failure the buffer is marked `oom`, later appends do
 * nothing, and the writer checks once at the end. */

typedef struct svc_buf {
    char *data;   /* malloc'd; always NUL-terminated when len > 0 */
    size_t len;
    size_t cap;
    int oom;      /* 1 after an allocation failed */
} svc_buf;

int svc_buf_reserve(svc_buf *b, size_t extra);
void svc_buf_append(svc_buf *b, const void *data, size_t n);
void svc_buf_puts(svc_buf *b, const char *s);
void svc_buf_putc(svc_buf *b, char c);
void svc_buf_printf(svc_buf *b, const char *fmt, ...) SVC_PRINTF(2, 3);
void svc_buf_vprintf(svc_buf *b, const char *fmt, va_list ap);
/* Decimal integer, no allocation beyond the buffer. */
void svc_buf_put_i64(svc_buf *b, int64_t v);
void svc_buf_put_u64(svc_buf *b, uint64_t v);
/* Empties the buffer, keeping its memory. */
void svc_buf_reset(svc_buf *b);
/* Frees the memory and zeroes the struct. */
void svc_buf_free(svc_buf *b);

/* ---- logging --------------------------------------------------------------
 * One line per event on stdout: JSON ({"time","level","service","msg",...})
 * when LOG_FORMAT=json or stdout is not a tty, else human text
 * ("HH:MM:SS.mmm LEVEL service message", control characters shown as '?').
 * A line logged while a request is handled on the thread (its handler,
 * hooks, and the finishing of its response) carries the request's trace id:
 * "trace_id" in JSON, "trace=<id>" at the end in text. Lines are buffered per
 * thread and flushed by the event loop at least every 100 ms, at exit, and
 * at once for SVC_LOG_ERROR, so the hot path costs no syscall. Thread-safe. */

typedef enum {
    SVC_LOG_DEBUG = 0,
    SVC_LOG_INFO = 1,
    SVC_LOG_WARN = 2,
    SVC_LOG_ERROR = 3,
} svc_log_level;

/* Process-wide settings; svc_app_run sets them from the environment. */
void svc_log_setup(const char *service, svc_log_level level, int json);
/* Text lines only (JSON never has colour and always names the service): with
 * color, time, level and status are coloured with ANSI escapes; with
 * name_service 0 the service name is left out, for a supervisor that prefixes
 * every line with it (svckit run). Default: no colour, named. svc_app_run sets
 * both from LOG_COLOR, NO_COLOR, the terminal and SVCKIT_PROCESS. Call before
 * the first line is logged; not synchronised with logging threads. */
void svc_log_text_style(int color, int name_service);
int svc_log_enabled(svc_log_level level);
/* "msg" is printf-formatted; the message is JSON-escaped as needed. */
void svc_log(svc_log_level level, const char *fmt, ...) SVC_PRINTF(2, 3);
/* Appends a complete, pre-formatted line (without newline) to this thread's
 * buffer; used by the access log, which formats its own fields. */
void svc_log_raw(const char *line, size_t len);
/* Writes this thread's buffered lines to stdout. */
void svc_log_flush(void);
/* Parses "debug|info|warn|error"; SVC_EINVAL otherwise. */
int svc_log_level_parse(const char *s, svc_log_level *out);

#define svc_debug(...) svc_log(SVC_LOG_DEBUG, __VA_ARGS__)
#define svc_info(...) svc_log(SVC_LOG_INFO, __VA_ARGS__)
#define svc_warn(...) svc_log(SVC_LOG_WARN, __VA_ARGS__)
#define svc_error(...) svc_log(SVC_LOG_ERROR, __VA_ARGS__)

/* ---- small helpers used across layers ------------------------------------ */

/* Strict integer parse of the whole string: optional sign, digits, no spaces,
 * no trailing bytes; SVC_EINVAL or SVC_ERANGE on failure. */
int svc_parse_i64(const char *s, int64_t *out);
/* Monotonic time in nanoseconds. */
uint64_t svc_now_ns(void);
/* Wall-clock time in milliseconds since the epoch. */
int64_t svc_wall_ms(void);
/* Writes the time ms (milliseconds since the epoch) as RFC 3339 in UTC with
 * milliseconds, "2026-11-26T03:37:00.123Z", to out (NUL-terminated), and
 * returns its length: 24 for the years 0000 to 9999 (RFC 3339's range; other
 * years get more digits or a '-', and still fit). A time gmtime cannot
 * represent writes "" and returns 0. Thread-safe. */
#define SVC_TIME_RFC3339_MAX 32
size_t svc_time_rfc3339(int64_t ms, char out[SVC_TIME_RFC3339_MAX]);
/* Fills buf with n random bytes from the OS CSPRNG. */
void svc_random(void *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
