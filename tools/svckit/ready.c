/*
 * Readiness probes: is a process that others wait for (after=) ready?
 *
 * One attempt is a non-blocking TCP connect to the instance's port on the
 * address it listens on, and for [ready=/path] a GET of that path whose status
 * line must be 2xx. The supervisor's poll loop drives the attempts; nothing
 * here blocks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"

void svc__probe_close(svc__probe *pr) {
    if (pr->fd >= 0) close(pr->fd);
    pr->fd = -1;
    pr->sent = 0;
    pr->len = 0;
}

/* Where the instance listens, as seen from here: its HOST, or the loopback
 * address when it listens on every address (or HOST is not numeric). */
static int probe_addr(const svc__instance *in, struct sockaddr_storage *sa, socklen_t *salen, char *shown,
                      size_t shownlen) {
    const char *host = svc__env_get(&in->env, "HOST", 4);
    if (!host || !*host || !strcmp(host, "0.0.0.0")) host = "127.0.0.1";
    else if (!strcmp(host, "::")) host = "::1";
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof port, "%d", in->port);
    if (getaddrinfo(host, port, &hints, &res) != 0) {
        host = "127.0.0.1";
        if (getaddrinfo(host, port, &hints, &res) != 0) return SVC_EINVAL;
    }
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    *salen = res->ai_addrlen;
    snprintf(shown, shownlen, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, in->port);
    freeaddrinfo(res);
    return SVC_OK;
}

static int fail(svc__probe *pr, const char *fmt, ...) SVC_PRINTF(2, 3);
static int fail(svc__probe *pr, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pr->why, sizeof pr->why, fmt, ap);
    va_end(ap);
    svc__probe_close(pr);
    return -1;
}

int svc__probe_start(svc__probe *pr, const svc__instance *in, uint64_t now_ns) {
    svc__probe_close(pr);
    struct sockaddr_storage sa;
    socklen_t salen;
    if (probe_addr(in, &sa, &salen, pr->addr, sizeof pr->addr) != SVC_OK)
        return fail(pr, "no address to probe for port %d", in->port);
    pr->fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (pr->fd < 0) return fail(pr, "socket: %s", strerror(errno));
    pr->deadline_ns = now_ns + SVC__PROBE_TIMEOUT_MS * 1000000ull;
    if (connect(pr->fd, (struct sockaddr *)&sa, salen) != 0 && errno != EINPROGRESS)
        return fail(pr, "connect to %s: %s", pr->addr, strerror(errno));
    return 0;
}

short svc__probe_events(const svc__probe *pr) {
    if (pr->fd < 0) return 0;
    return pr->sent ? POLLIN : POLLOUT;
}

int svc__probe_step(svc__probe *pr, const svc__instance *in, short revents, uint64_t now_ns) {
    if (pr->fd < 0) return -1;
    if (!revents) {
        if (now_ns < pr->deadline_ns) return 0;
        return fail(pr, "%s: no answer within %d ms", pr->addr, SVC__PROBE_TIMEOUT_MS);
    }
    const svc__entry *e = in->entry;
    if (!pr->sent) {
        int soerr = 0;
        socklen_t l = sizeof soerr;
        if (getsockopt(pr->fd, SOL_SOCKET, SO_ERROR, &soerr, &l) != 0) soerr = errno;
        if (soerr) return fail(pr, "connect to %s: %s", pr->addr, strerror(soerr));
        if (e->ready == SVC__READY_TCP) {
            svc__probe_close(pr);
            return 1;
        }
        char req[SVC__READY_PATH_MAX + 128];
        int n = snprintf(req, sizeof req,
                         "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: svckit-run\r\nConnection: close\r\n\r\n",
                         e->ready_path, pr->addr);
        /* A fresh socket's buffer takes a request this small whole. */
        if (n < 0 || send(pr->fd, req, (size_t)n, MSG_NOSIGNAL) != n)
            return fail(pr, "GET %s on %s: %s", e->ready_path, pr->addr, strerror(errno));
        pr->sent = 1;
        return 0;
    }
    ssize_t r = recv(pr->fd, pr->buf + pr->len, sizeof pr->buf - 1 - pr->len, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (r > 0) pr->len += (size_t)r;
    pr->buf[pr->len] = '\0';
    /* "HTTP/1.1 200 OK": the status is all we want. */
    int status = 0;
    if (pr->len >= 12 && !memcmp(pr->buf, "HTTP/1.", 7) && pr->buf[8] == ' ') {
        for (int i = 9; i < 12 && status >= 0; i++)
            status = pr->buf[i] >= '0' && pr->buf[i] <= '9' ? status * 10 + pr->buf[i] - '0' : -1;
        if (status < 100) status = -1;
    } else if (pr->len >= 12 || r <= 0) {
        status = -1;
    }
    if (status == 0) return 0;
    if (status >= 200 && status < 300) {
        svc__probe_close(pr);
        return 1;
    }
    if (status < 0) {
        if (r < 0) return fail(pr, "GET %s on %s: %s", e->ready_path, pr->addr, strerror(errno));
        return fail(pr, "GET %s on %s: no HTTP answer", e->ready_path, pr->addr);
    }
    return fail(pr, "GET %s on %s: status %d", e->ready_path, pr->addr, status);
}
