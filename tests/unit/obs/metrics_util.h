/* Helpers shared by the obs unit tests: render the registry, pick samples
 * out of the text, and run promtool on it. Header-only: each test file is its
 * own binary. */
#ifndef SVCKIT_TEST_METRICS_UTIL_H
#define SVCKIT_TEST_METRICS_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "svckit/core.h"
#include "svckit/obs.h"

/* The whole registry as a malloc'd string (never NULL). */
static inline char *render_all(void) {
    svc_buf b = {0};
    svc_metrics_render(&b);
    if (b.oom) {
        svc_buf_free(&b);
        return NULL;
    }
    if (!b.data) return calloc(1, 1);
    return b.data;
}

/* Number of lines of text that start with prefix. */
static inline int count_lines(const char *text, const char *prefix) {
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, prefix, len) == 0) n++;
        p = strchr(p, '\n');
        if (p) p++;
    }
    return n;
}

/* The value of the sample line "<series> <value>", or -12345 when absent. */
static inline double sample(const char *text, const char *series) {
    size_t len = strlen(series);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, series, len) == 0 && p[len] == ' ') return strtod(p + len + 1, NULL);
        p = strchr(p, '\n');
        if (p) p++;
    }
    return -12345;
}

/* Runs `promtool check metrics` on text (it reads stdin); returns its exit
 * status (127 when promtool is missing) and leaves what it printed in diag. */
static inline int promtool_check(const char *text, char *diag, size_t diag_cap) {
    char path[] = "/tmp/svckit-metrics-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    size_t n = strlen(text);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, text + off, n - off);
        if (w <= 0) {
            close(fd);
            unlink(path);
            return -1;
        }
        off += (size_t)w;
    }
    close(fd);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    if (!p) {
        unlink(path);
        return -1;
    }
    size_t got = fread(diag, 1, diag_cap - 1, p);
    diag[got] = '\0';
    int st = pclose(p);
    unlink(path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
