/*
 * The supervisor's output: one stream on stdout, "<name> | <line>".
 *
 * Each line, prefix included, leaves in a single write(2), and only whole lines
 * are ever written, so lines of different children never mix even when stdout
 * is shared with another writer. A child's bytes wait in its own buffer until
 * the newline comes; a line longer than the buffer leaves in pieces.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Bright, readable on dark and light terminals; red is left for nobody. */
static const char *const palette[] = {"36", "33", "32", "35", "34", "96", "93", "92", "95", "94"};
#define PALETTE_N (sizeof palette / sizeof palette[0])
#define SGR_RESET "\033[0m"

static int use_color;
static int name_width = 6;
static int broken; /* stdout is gone (EPIPE, closed terminal): drop output */
static char line[SVC__LINE_MAX + 256];

void svc__out_setup(int color, int width) {
    use_color = color;
    name_width = width < 6 ? 6 : width;
}

int svc__out_color_enabled(void) { return use_color; }

static void write_all(const char *p, size_t n) {
    while (n && !broken) {
        ssize_t w = write(STDOUT_FILENO, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && errno == EAGAIN) {
            /* Someone made our stdout non-blocking; wait rather than lose lines. */
            struct pollfd pfd = {.fd = STDOUT_FILENO, .events = POLLOUT};
            poll(&pfd, 1, 1000);
        } else {
            broken = 1;
        }
    }
}

void svc__out_line(const char *name, int color, const char *text, size_t len) {
    if (broken) return;
    if (len > SVC__LINE_MAX) len = SVC__LINE_MAX;
    int n;
    if (use_color) {
        const char *c = color == SVC__COLOR_SELF ? "1" : palette[(unsigned)color % PALETTE_N];
        n = snprintf(line, sizeof line, "\033[%sm%-*s |" SGR_RESET " ", c, name_width, name);
    } else {
        n = snprintf(line, sizeof line, "%-*s | ", name_width, name);
    }
    if (n < 0) return;
    size_t off = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (len > sizeof line - off - sizeof SGR_RESET) len = sizeof line - off - sizeof SGR_RESET;
    memcpy(line + off, text, len);
    off += len;
    /* A child's own colours (LOG_COLOR) pass through untouched; whatever
     * they leave on, a line cut short included, ends with the line. */
    if (use_color && memchr(text, '\033', len)) {
        memcpy(line + off, SGR_RESET, sizeof SGR_RESET - 1);
        off += sizeof SGR_RESET - 1;
    }
    line[off++] = '\n';
    write_all(line, off);
}

void svc__out_self(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    svc__out_line("svckit", SVC__COLOR_SELF, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
}

/* Where to cut a full buffer so that a UTF-8 sequence is not split in two. */
static size_t utf8_cut(const char *s, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xC0) == 0x80) continue; /* continuation byte: keep looking */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? n - back : n;
    }
    return n; /* not UTF-8 at all: cut anywhere */
}

void svc__linebuf_drain(svc__linebuf *lb, const char *name, int color, int eof) {
    size_t start = 0;
    for (;;) {
        char *nl = memchr(lb->data + start, '\n', lb->len - start);
        if (!nl) break;
        size_t n = (size_t)(nl - (lb->data + start));
        if (n && lb->data[start + n - 1] == '\r') n--;
        svc__out_line(name, color, lb->data + start, n);
        start = (size_t)(nl - lb->data) + 1;
    }
    if (start == 0 && lb->len == sizeof lb->data) {
        size_t cut = utf8_cut(lb->data, lb->len);
        if (cut == 0) cut = lb->len;
        svc__out_line(name, color, lb->data, cut);
        start = cut;
    }
    if (eof && start < lb->len) {
        svc__out_line(name, color, lb->data + start, lb->len - start);
        start = lb->len;
    }
    memmove(lb->data, lb->data + start, lb->len - start);
    lb->len -= start;
}
