/*
 * idleconns: opens N keep-alive connections to a server, sends one full request
 * on each, reads the whole response (Content-Length framing), then leaves them
 * all idle so the caller can measure what the idle connections cost the server.
 *
 * At most BATCH connections are being set up at once, so the server's listen
 * backlog never overflows. When every connection is set up (or failed), one line
 *   "IDLE established=E failed=F elapsed_ms=T"
 * is printed and flushed; the tool then waits until SIGTERM/SIGINT or the hold
 * time, counts how many connections the server closed meanwhile, prints
 *   "IDLE closed_by_server=C"
 * and closes the rest with SO_LINGER 0 (a RST, so no TIME_WAIT is left behind).
 *
 * usage: idleconns [-n N] [-H 'Header: value']... [-w HOLD_S] [-T SETUP_TIMEOUT_S] HOST PORT PATH
 * Needs RLIMIT_NOFILE above N; raise it with `ulimit -n` first.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS    100000
#define MAX_HEADERS  16
#define BATCH        256     /* connections in setup at the same time */
#define RESP_BUF     65536   /* one response head+body must fit; the benchmark's is ~6 KB */
#define REQ_BUF      4096

enum state { ST_CONNECTING, ST_SENT, ST_IDLE, ST_FAILED };

struct conn {
    int        fd;
    enum state st;
    size_t     got;   /* bytes of the response read so far */
};

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Returns 1 when buf holds a complete response, 0 if more is needed, -1 if malformed
 * or not a 2xx. */
static int response_complete(const char *buf, size_t len) {
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return len >= RESP_BUF - 1 ? -1 : 0;
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || buf[9] != '2')
        return -1;
    size_t head = (size_t)(end - buf) + 4;
    long clen = -1;
    for (const char *p = buf; p < end;) {
        const char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
        if (!eol)
            break;
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
            clen = strtol(p + 15, NULL, 10);
        p = eol + 2;
    }
    if (clen < 0)
        return -1; /* chunked or close-delimited: cannot stay keep-alive-idle reliably */
    return len >= head + (size_t)clen ? 1 : 0;
}

static void usage(const char *me) {
    fprintf(stderr,
            "usage: %s [-n N] [-H 'Header: value']... [-w HOLD_S] [-T SETUP_TIMEOUT_S] HOST PORT PATH\n",
            me);
    exit(2);
}

int main(int argc, char **argv) {
    long n = 10000, hold_s = 600, setup_timeout_s = 60;
    const char *headers[MAX_HEADERS];
    int nheaders = 0, opt;
    while ((opt = getopt(argc, argv, "n:H:w:T:")) != -1) {
        switch (opt) {
        case 'n': n = atol(optarg); break;
        case 'H':
            if (nheaders == MAX_HEADERS)
                usage(argv[0]);
            headers[nheaders++] = optarg;
            break;
        case 'w': hold_s = atol(optarg); break;
        case 'T': setup_timeout_s = atol(optarg); break;
        default: usage(argv[0]);
        }
    }
    if (argc - optind != 3 || n < 1 || n > MAX_CONNS || hold_s < 0 || setup_timeout_s < 1)
        usage(argv[0]);
    const char *host = argv[optind], *path = argv[optind + 2];
    long port = atol(argv[optind + 1]);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (port < 1 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        usage(argv[0]);
    sa.sin_port = htons((uint16_t)port);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)n + 16 > rl.rlim_cur) {
        fprintf(stderr, "idleconns: RLIMIT_NOFILE %llu too low for %ld connections\n",
                (unsigned long long)rl.rlim_cur, n);
        return 1;
    }

    char req[REQ_BUF];
    int rl_len = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%ld\r\n", path, host, port);
    for (int i = 0; i < nheaders && rl_len > 0 && (size_t)rl_len < sizeof req; i++)
        rl_len += snprintf(req + rl_len, sizeof req - (size_t)rl_len, "%s\r\n", headers[i]);
    if (rl_len > 0 && (size_t)rl_len < sizeof req)
        rl_len += snprintf(req + rl_len, sizeof req - (size_t)rl_len, "\r\n");
    if (rl_len <= 0 || (size_t)rl_len >= sizeof req) {
        fprintf(stderr, "idleconns: request too long\n");
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    struct sigaction act = {.sa_handler = on_signal};
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);

    struct conn *cs = calloc((size_t)n, sizeof *cs);
    static char buf[RESP_BUF];
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!cs || ep < 0) {
        perror("setup");
        return 1;
    }
    /* A response buffer exists only while its connection is in setup (at most BATCH
     * at once), so the tool itself stays small while it holds N idle connections. */
    char **pending = calloc((size_t)n, sizeof *pending);
    if (!pending) {
        perror("calloc");
        return 1;
    }

    long next = 0, in_setup = 0, established = 0, failed = 0;
    int64_t t0 = now_ms(), deadline = t0 + setup_timeout_s * 1000;
    struct epoll_event evs[BATCH];
    while ((established + failed < n) && !stop) {
        while (in_setup < BATCH && next < n) {
            struct conn *c = &cs[next];
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (c->fd < 0) {
                perror("socket");
                return 1;
            }
            int r = connect(c->fd, (struct sockaddr *)&sa, sizeof sa);
            if (r != 0 && errno != EINPROGRESS) {
                c->st = ST_FAILED;
                close(c->fd);
                c->fd = -1;
                failed++;
                next++;
                continue;
            }
            c->st = ST_CONNECTING;
            struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u64 = (uint64_t)next};
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
            in_setup++;
            next++;
        }
        if (now_ms() > deadline)
            break;
        int k = epoll_wait(ep, evs, BATCH, 100);
        for (int i = 0; i < k; i++) {
            long idx = (long)evs[i].data.u64;
            struct conn *c = &cs[idx];
            int bad = 0;
            if (c->st == ST_CONNECTING && (evs[i].events & EPOLLOUT)) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err || send(c->fd, req, (size_t)rl_len, MSG_NOSIGNAL) != rl_len) {
                    bad = 1;
                } else {
                    c->st = ST_SENT;
                    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)idx};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            } else if (c->st == ST_SENT && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
                if (!pending[idx] && !(pending[idx] = malloc(RESP_BUF))) {
                    perror("malloc");
                    return 1;
                }
                ssize_t r = recv(c->fd, pending[idx] + c->got, RESP_BUF - 1 - c->got, 0);
                if (r <= 0) {
                    bad = 1;
                } else {
                    c->got += (size_t)r;
                    int done = response_complete(pending[idx], c->got);
                    if (done < 0) {
                        bad = 1;
                    } else if (done > 0) {
                        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                        free(pending[idx]);
                        pending[idx] = NULL;
                        c->st = ST_IDLE;
                        established++;
                        in_setup--;
                    }
                }
            } else if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
                bad = 1;
            }
            if (bad) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                c->st = ST_FAILED;
                free(pending[idx]);
                pending[idx] = NULL;
                failed++;
                in_setup--;
            }
        }
    }
    failed = n - established; /* anything not set up by the deadline counts as failed */
    printf("IDLE established=%ld failed=%ld elapsed_ms=%lld\n", established, failed,
           (long long)(now_ms() - t0));
    fflush(stdout);

    int64_t until = now_ms() + hold_s * 1000;
    while (!stop && now_ms() < until) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }

    long closed = 0;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    for (long i = 0; i < n; i++) {
        struct conn *c = &cs[i];
        if (c->fd < 0 || c->st == ST_FAILED)
            continue;
        if (c->st == ST_IDLE) {
            struct pollfd p = {.fd = c->fd, .events = POLLIN | POLLRDHUP};
            if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR) ||
                                        recv(c->fd, buf, sizeof buf, MSG_DONTWAIT) == 0))
                closed++;
        }
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(c->fd);
    }
    printf("IDLE closed_by_server=%ld\n", closed);
    for (long i = 0; i < n; i++)
        free(pending[i]);
    free(pending);
    free(cs);
    close(ep);
    return 0;
}
