/*
 * rate: an open-loop HTTP/1.1 load generator. It sends GET requests at a constant
 * rate (request i is due at start + i/RATE, whatever happened to the ones before),
 * over keep-alive connections it opens as needed (at most MAXCONNS), and measures
 * each request's latency from the moment it was DUE, not from when a connection
 * was free to send it: a server that stalls is charged for the requests that
 * queued behind the stall (no "coordinated omission", which wrk without -R has).
 *
 * Debian's wrk has no constant-rate mode; this tool exists for the two
 * measurements that need one: latency at a fixed fraction of the maximum load,
 * and "a steady 1,000 requests/s while instances are killed".
 *
 * usage: rate -r RATE -d SECONDS [-w WARMUP_S] [-c MAXCONNS] [-t TIMEOUT_MS]
 *             [-H 'Name: value']... [-m METHOD] [-b BODY] [-k KEY_PREFIX] [-o FILE]
 *             HOST PORT PATH
 *
 * -m/-b send another method with a body (Content-Length set); -k adds
 * "Idempotency-Key: KEY_PREFIX-<n>", n counting the requests sent, so every
 * request is a new one (bench/orders_e2e.py: POST /orders); -o writes a line
 * per measured 2xx reply, "<due unix us> <latency us> <id>", id being the
 * number after the first "id": of its body (-1 without one), so that a later
 * event of that id can be timed from when the request was due.
 *
 * A request fails when its reply is not 2xx, when its connection is refused,
 * reset or closed before the whole reply arrived, or when no reply came within
 * TIMEOUT_MS of sending it; each failure is printed to stderr as
 *   "FAIL t=SECONDS reason=status|conn|timeout|proto [status=N]"
 * (the first MAX_FAIL_LINES of them). At the end one line goes to stdout:
 *   "RATE target_rps=R due=N ok=N failed=N fail_status=N fail_conn=N
 *    fail_timeout=N fail_proto=N achieved_rps=X p50_us=.. p90_us=.. p99_us=..
 *    p999_us=.. max_us=.. conns_opened=N late_max_us=N"
 * where the percentiles are over the replies of the measured part (warm-up
 * excluded) and late_max_us is the largest delay between a request's due time
 * and its send (0 when the tool kept up). Exit status 0 whatever the failures
 * (they are the measurement); 2 on bad usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS      4096
#define MAX_HEADERS    16
#define MAX_RATE       1000000
#define MAX_SECONDS    3600
#define RESP_BUF       (256 * 1024) /* one whole response must fit */
#define REQ_BUF        4096
#define MAX_FAIL_LINES 200

enum state { ST_FREE, ST_CONNECTING, ST_BUSY, ST_IDLE };

struct conn {
    int        fd;
    char       req[REQ_BUF]; /* the request in flight (with -k, its own key) */
    size_t     req_len;
    enum state st;
    int64_t    due_ns;     /* the due time of the request in flight */
    int64_t    sent_ns;    /* when it was written (for the timeout) */
    int        measured;   /* the request in flight counts (not warm-up) */
    size_t     wrote;      /* bytes of the request written so far */
    size_t     got;        /* bytes of the response read so far */
    char      *buf;
};

static struct conn conns[MAX_CONNS];
static int         nslots;          /* conns[0..nslots) are in use (MAXCONNS) */
static struct conn *idle[MAX_CONNS]; /* connections waiting for a request */
static int         nidle;
static int         nconns_open;
static char        req[REQ_BUF];   /* the request up to its last header line */
static size_t      req_len;
static const char *body = "", *key_prefix;
static uint64_t    sends;
static FILE       *out;
static int64_t     wall_minus_mono_us; /* CLOCK_REALTIME - CLOCK_MONOTONIC */
static struct sockaddr_in addr;
static int         epfd;

static int64_t *lat_us;  /* latencies of the measured, successful requests */
static size_t   nlat;
static uint64_t due, ok, fail_status, fail_conn, fail_timeout, fail_proto, opened;
static int64_t  late_max_ns;
static int64_t  t_start_ns;
static unsigned fail_lines;

/* Requests that are due but found no free connection: their due times, FIFO. */
static int64_t *pend;
static int     *pend_measured;
static size_t   pend_head, pend_tail, pend_cap;

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void usage(void) {
    fprintf(stderr, "usage: rate -r RATE -d SECONDS [-w WARMUP_S] [-c MAXCONNS] [-t TIMEOUT_MS]"
                    " [-H 'Name: value']... [-m METHOD] [-b BODY] [-k KEY_PREFIX] [-o FILE] HOST PORT PATH\n");
    exit(2);
}

static void fail(struct conn *c, const char *reason, int status, uint64_t *counter) {
    if (!c->measured) return;
    (*counter)++;
    if (fail_lines++ < MAX_FAIL_LINES) {
        double t = (double)(now_ns() - t_start_ns) / 1e9;
        if (status) fprintf(stderr, "FAIL t=%.3f reason=%s status=%d\n", t, reason, status);
        else fprintf(stderr, "FAIL t=%.3f reason=%s\n", t, reason);
    }
}

static void conn_close(struct conn *c) {
    if (c->st == ST_IDLE) {
        for (int i = 0; i < nidle; i++)
            if (idle[i] == c) { idle[i] = idle[--nidle]; break; }
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->st = ST_FREE;
    nconns_open--;
}

static void conn_want(struct conn *c, uint32_t events) {
    struct epoll_event ev = { .events = events, .data.ptr = c };
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes what is left of the request; 0 when done or pending, -1 on error. */
static int conn_write(struct conn *c) {
    while (c->wrote < c->req_len) {
        ssize_t n = write(c->fd, c->req + c->wrote, c->req_len - c->wrote);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) { conn_want(c, EPOLLIN | EPOLLOUT); return 0; }
        if (n <= 0) return -1;
        c->wrote += (size_t)n;
    }
    conn_want(c, EPOLLIN);
    return 0;
}

static void start_request(struct conn *c, int64_t due_ns, int measured) {
    int64_t now = now_ns();
    c->due_ns = due_ns;
    c->sent_ns = now;
    c->measured = measured;
    c->wrote = 0;
    c->got = 0;
    c->st = ST_BUSY;
    memcpy(c->req, req, req_len);
    size_t n = req_len;
    if (key_prefix)
        n += (size_t)snprintf(c->req + n, REQ_BUF - n, "Idempotency-Key: %s-%llu\r\n", key_prefix,
                              (unsigned long long)sends);
    if (*body) n += (size_t)snprintf(c->req + n, REQ_BUF - n, "Content-Length: %zu\r\n", strlen(body));
    n += (size_t)snprintf(c->req + n, REQ_BUF - n, "\r\n%s", body);
    c->req_len = n < REQ_BUF ? n : REQ_BUF - 1;
    sends++;
    if (measured && now - due_ns > late_max_ns) late_max_ns = now - due_ns;
    if (conn_write(c) < 0) {
        fail(c, "conn", 0, &fail_conn);
        conn_close(c);
    }
}

static struct conn *conn_open(void) {
    struct conn *c = NULL;
    for (int i = 0; i < nslots; i++)
        if (conns[i].st == ST_FREE) { c = &conns[i]; break; }
    if (!c) return NULL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        close(fd);
        return NULL;
    }
    if (!c->buf && !(c->buf = malloc(RESP_BUF))) { close(fd); return NULL; }
    c->fd = fd;
    c->st = ST_CONNECTING;
    struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    nconns_open++;
    opened++;
    return c;
}

static int pend_push(int64_t due, int measured) {
    if (pend_tail - pend_head == pend_cap) return -1;
    pend[pend_tail % pend_cap] = due;
    pend_measured[pend_tail % pend_cap] = measured;
    pend_tail++;
    return 0;
}

/* A connection became free (or new): give it the oldest due request, if any. */
static void conn_ready(struct conn *c) {
    if (pend_head == pend_tail) { c->st = ST_IDLE; idle[nidle++] = c; return; }
    size_t i = pend_head++ % pend_cap;
    start_request(c, pend[i], pend_measured[i]);
}

static void dispatch(int64_t due_ns, int measured) {
    if (measured) due++;
    if (nidle > 0 && pend_head == pend_tail) {
        start_request(idle[--nidle], due_ns, measured);
        return;
    }
    if (pend_push(due_ns, measured) < 0) {
        /* Far more requests due than connections can carry: the server is not
         * answering; count the request as failed rather than grow without end. */
        struct conn dummy = { .measured = measured };
        fail(&dummy, "timeout", 0, &fail_timeout);
        return;
    }
    if (nconns_open < nslots) conn_open();
}

/* Parses a complete response in c->buf: returns its total length, 0 when more
 * bytes are needed, -1 when it cannot be framed. Sets *status and *close_after. */
static long parse_response(struct conn *c, int *status, int *close_after) {
    char *end = memmem(c->buf, c->got, "\r\n\r\n", 4);
    if (!end) return c->got >= RESP_BUF ? -1 : 0;
    size_t head = (size_t)(end - c->buf) + 4;
    if (c->got < 12 || memcmp(c->buf, "HTTP/1.", 7) != 0) return -1;
    *status = atoi(c->buf + 9);
    *close_after = 0;
    long cl = -1;
    for (char *p = memchr(c->buf, '\n', head); p && p < end; p = memchr(p + 1, '\n', (size_t)(end - p))) {
        char *line = p + 1;
        if (strncasecmp(line, "content-length:", 15) == 0) cl = strtol(line + 15, NULL, 10);
        else if (strncasecmp(line, "connection:", 11) == 0 && strncasecmp(line + 11 + strspn(line + 11, " "), "close", 5) == 0)
            *close_after = 1;
        else if (strncasecmp(line, "transfer-encoding:", 18) == 0) return -1;
    }
    if (cl < 0) cl = 0;
    if (head + (size_t)cl > RESP_BUF) return -1;
    return c->got >= head + (size_t)cl ? (long)(head + (size_t)cl) : 0;
}

static void on_readable(struct conn *c) {
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->got, RESP_BUF - c->got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) {
            if (c->st == ST_BUSY) fail(c, "conn", 0, &fail_conn);
            conn_close(c);
            return;
        }
        if (c->st != ST_BUSY) { conn_close(c); return; } /* bytes nobody asked for */
        c->got += (size_t)n;
        int status = 0, close_after = 0;
        long len = parse_response(c, &status, &close_after);
        if (len == 0) continue;
        if (len < 0 || (size_t)len != c->got) {
            fail(c, "proto", 0, &fail_proto);
            conn_close(c);
            return;
        }
        if (status >= 200 && status < 300) {
            if (c->measured) {
                ok++;
                lat_us[nlat++] = (now_ns() - c->due_ns) / 1000;
                if (out) {
                    char *id = memmem(c->buf, (size_t)len, "\"id\":", 5);
                    fprintf(out, "%lld %lld %lld\n", (long long)(c->due_ns / 1000 + wall_minus_mono_us),
                            (long long)lat_us[nlat - 1], id ? strtoll(id + 5, NULL, 10) : -1LL);
                }
            }
        } else {
            fail(c, "status", status, &fail_status);
        }
        if (close_after) { conn_close(c); return; }
        conn_ready(c);
        return;
    }
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t pct(double p) {
    if (nlat == 0) return 0;
    size_t i = (size_t)(p * (double)(nlat - 1) + 0.5);
    return lat_us[i];
}

int main(int argc, char **argv) {
    long rate = 0, seconds = 0, warmup = 0, maxconns = 256, timeout_ms = 5000;
    const char *hdrs[MAX_HEADERS], *method = "GET", *out_path = NULL;
    int nh = 0, opt;
    while ((opt = getopt(argc, argv, "r:d:w:c:t:H:m:b:k:o:")) != -1) {
        switch (opt) {
        case 'r': rate = strtol(optarg, NULL, 10); break;
        case 'd': seconds = strtol(optarg, NULL, 10); break;
        case 'w': warmup = strtol(optarg, NULL, 10); break;
        case 'c': maxconns = strtol(optarg, NULL, 10); break;
        case 't': timeout_ms = strtol(optarg, NULL, 10); break;
        case 'H': if (nh == MAX_HEADERS) usage(); hdrs[nh++] = optarg; break;
        case 'm': method = optarg; break;
        case 'b': body = optarg; break;
        case 'k': key_prefix = optarg; break;
        case 'o': out_path = optarg; break;
        default: usage();
        }
    }
    if (argc - optind != 3 || rate < 1 || rate > MAX_RATE || seconds < 1 || seconds > MAX_SECONDS ||
        warmup < 0 || warmup > MAX_SECONDS || maxconns < 1 || maxconns > MAX_CONNS || timeout_ms < 1)
        usage();
    const char *host = argv[optind], *path = argv[optind + 2];
    long port = strtol(argv[optind + 1], NULL, 10);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (port < 1 || port > 65535 || inet_pton(AF_INET, host, &addr.sin_addr) != 1) usage();

    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: %s:%ld\r\n", method, path, host, port);
    for (int i = 0; i < nh && n > 0 && (size_t)n < sizeof req; i++)
        n += snprintf(req + n, sizeof req - (size_t)n, "%s\r\n", hdrs[i]);
    /* Room for the key, Content-Length and the body of every request. */
    if (n <= 0 || (size_t)n + strlen(body) + 200 >= sizeof req) usage();
    req_len = (size_t)n;
    if (out_path && !(out = fopen(out_path, "w"))) { perror(out_path); return 1; }
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    wall_minus_mono_us = ((int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec - now_ns()) / 1000;

    uint64_t total = (uint64_t)rate * (uint64_t)(seconds + warmup);
    uint64_t measured_from = (uint64_t)rate * (uint64_t)warmup;
    lat_us = malloc(sizeof *lat_us * (size_t)(total - measured_from));
    pend_cap = (size_t)rate * 10 + 16; /* ten seconds of backlog */
    pend = malloc(sizeof *pend * pend_cap);
    pend_measured = malloc(sizeof *pend_measured * pend_cap);
    if (!lat_us || !pend || !pend_measured) { perror("rate: malloc"); return 1; }
    nslots = (int)maxconns;
    for (int i = 0; i < nslots; i++) conns[i].fd = -1;

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    epfd = epoll_create1(EPOLL_CLOEXEC);

    int64_t t0 = now_ns(), interval_ns = 1000000000 / rate;
    t_start_ns = t0 + (int64_t)warmup * 1000000000;
    uint64_t next = 0;
    int64_t timeout_ns = (int64_t)timeout_ms * 1000000, drain_until = 0;
    struct epoll_event evs[256];
    while (!stop) {
        int64_t now = now_ns();
        while (next < total && t0 + (int64_t)next * interval_ns <= now) {
            dispatch(t0 + (int64_t)next * interval_ns, next >= measured_from);
            next++;
        }
        if (next == total) {
            if (!drain_until) drain_until = now + timeout_ns;
            int busy = pend_head != pend_tail;
            for (int i = 0; i < nslots && !busy; i++)
                busy = conns[i].st == ST_BUSY || conns[i].st == ST_CONNECTING;
            if (!busy || now >= drain_until) break;
        }
        /* Timeouts: a request without a reply for timeout_ms fails. */
        for (int i = 0; i < nslots; i++) {
            struct conn *c = &conns[i];
            if (c->st == ST_BUSY && now - c->sent_ns > timeout_ns) {
                fail(c, "timeout", 0, &fail_timeout);
                conn_close(c);
                if (pend_head != pend_tail && nconns_open < nslots) conn_open();
            }
        }
        int64_t wait_ns = next < total ? t0 + (int64_t)next * interval_ns - now : 1000000;
        if (wait_ns < 0) wait_ns = 0;
        if (wait_ns > 10000000) wait_ns = 10000000;
        struct timespec ts = { .tv_sec = 0, .tv_nsec = wait_ns };
        int ne = epoll_pwait2(epfd, evs, 256, &ts, NULL);
        for (int i = 0; i < ne; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->st == ST_FREE) continue;
            if (c->st == ST_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) {
                    /* Refused: fail the oldest due request, as a client would see it. */
                    if (pend_head != pend_tail) {
                        struct conn dummy = { .measured = pend_measured[pend_head % pend_cap] };
                        pend_head++;
                        fail(&dummy, "conn", 0, &fail_conn);
                    }
                    conn_close(c);
                    continue;
                }
                conn_ready(c);
                continue;
            }
            if (evs[i].events & EPOLLOUT && c->st == ST_BUSY && c->wrote < c->req_len && conn_write(c) < 0) {
                fail(c, "conn", 0, &fail_conn);
                conn_close(c);
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
        }
        /* A connection closed while requests wait: open another. */
        if (pend_head != pend_tail && nconns_open == 0) conn_open();
    }
    int64_t elapsed = now_ns() - t_start_ns;
    /* Requests still queued or in flight at the end never got a reply. */
    uint64_t unanswered = 0;
    for (size_t i = pend_head; i < pend_tail; i++) unanswered += pend_measured[i % pend_cap] ? 1 : 0;
    for (int i = 0; i < nslots; i++)
        if (conns[i].st == ST_BUSY && conns[i].measured) unanswered++;
    fail_timeout += unanswered;

    qsort(lat_us, nlat, sizeof *lat_us, cmp_i64);
    uint64_t failed = fail_status + fail_conn + fail_timeout + fail_proto;
    printf("RATE target_rps=%ld due=%llu ok=%llu failed=%llu fail_status=%llu fail_conn=%llu fail_timeout=%llu"
           " fail_proto=%llu achieved_rps=%.1f p50_us=%lld p90_us=%lld p99_us=%lld p999_us=%lld max_us=%lld"
           " conns_opened=%llu late_max_us=%lld\n",
           rate, (unsigned long long)due, (unsigned long long)ok, (unsigned long long)failed,
           (unsigned long long)fail_status, (unsigned long long)fail_conn, (unsigned long long)fail_timeout,
           (unsigned long long)fail_proto, elapsed > 0 ? (double)ok * 1e9 / (double)elapsed : 0.0,
           (long long)pct(0.50), (long long)pct(0.90), (long long)pct(0.99), (long long)pct(0.999),
           (long long)(nlat ? lat_us[nlat - 1] : 0), (unsigned long long)opened, (long long)(late_max_ns / 1000));
    if (out) fclose(out);
    return 0;
}
