/*
 * ceiling: the smallest HTTP/1.1 server that can answer the benchmark, used as the
 * syscall ceiling of the machine.
 *
 * One thread, one level-triggered epoll set, non-blocking sockets. For every
 * complete request head it sees (a "\r\n\r\n", found even when split across reads)
 * it writes one precomputed response: status line, Content-Type, Content-Length,
 * keep-alive, and the body loaded once at start from a file. It never parses the
 * request, so it costs one read and one write per request, which is what any
 * real server must at least pay. Requests with a body are not supported: the
 * benchmark sends GETs only.
 *
 * usage: ceiling PORT BODY_FILE [HOST]     (HOST defaults to 127.0.0.1)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_BODY     (1u << 20) /* the benchmark body is ~6 KB; refuse silly files */
#define READ_BUF     16384
#define MAX_EVENTS   256
#define LISTEN_BACKLOG 4096

/* Per-connection state, indexed by fd. */
struct conn {
    uint8_t  match;    /* how many bytes of "\r\n\r\n" the stream currently ends with */
    uint8_t  want_out; /* EPOLLOUT registered */
    uint32_t owed;     /* complete responses not yet fully written */
    size_t   off;      /* bytes of the current response already written */
};

static char        *resp;
static size_t       resp_len;
static struct conn *conns;
static size_t       nconns;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void load_response(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(path);
    struct stat st;
    if (fstat(fd, &st) != 0)
        die("fstat");
    if (st.st_size <= 0 || (uint64_t)st.st_size > MAX_BODY) {
        fprintf(stderr, "ceiling: %s: body must be 1..%u bytes\n", path, MAX_BODY);
        exit(1);
    }
    size_t body_len = (size_t)st.st_size;
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\n"
                      "Content-Type: application/json\r\n"
                      "Content-Length: %zu\r\n"
                      "Connection: keep-alive\r\n"
                      "\r\n",
                      body_len);
    resp_len = (size_t)hl + body_len;
    resp = malloc(resp_len);
    if (!resp)
        die("malloc");
    memcpy(resp, head, (size_t)hl);
    size_t got = 0;
    while (got < body_len) {
        ssize_t n = read(fd, resp + hl + got, body_len - got);
        if (n <= 0)
            die("read body");
        got += (size_t)n;
    }
    close(fd);
}

static void conn_close(int ep, int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    memset(&conns[fd], 0, sizeof conns[fd]);
}

/* Counts request terminators in buf, carrying the partial match across reads. */
static uint32_t count_requests(struct conn *c, const char *buf, size_t n) {
    static const char term[4] = {'\r', '\n', '\r', '\n'};
    uint32_t found = 0;
    uint8_t m = c->match;
    for (size_t i = 0; i < n; i++) {
        char ch = buf[i];
        if (ch == term[m]) {
            if (++m == 4) {
                found++;
                m = 0;
            }
        } else {
            m = (ch == '\r') ? 1 : 0;
        }
    }
    c->match = m;
    return found;
}

/* Writes owed responses until done or the socket is full. Returns -1 on error. */
static int flush(int ep, int fd) {
    struct conn *c = &conns[fd];
    while (c->owed > 0) {
        ssize_t n = write(fd, resp + c->off, resp_len - c->off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return -1;
            if (!c->want_out) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = fd};
                if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) != 0)
                    return -1;
                c->want_out = 1;
            }
            return 0;
        }
        c->off += (size_t)n;
        if (c->off == resp_len) {
            c->off = 0;
            c->owed--;
        }
    }
    if (c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) != 0)
            return -1;
        c->want_out = 0;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s PORT BODY_FILE [HOST]\n", argv[0]);
        return 2;
    }
    char *end;
    long port = strtol(argv[1], &end, 10);
    if (*end || port < 1 || port > 65535) {
        fprintf(stderr, "ceiling: bad port %s\n", argv[1]);
        return 2;
    }
    const char *host = argc == 4 ? argv[3] : "127.0.0.1";
    load_response(argv[2]);
    signal(SIGPIPE, SIG_IGN);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        die("getrlimit");
    nconns = rl.rlim_cur == RLIM_INFINITY ? 1048576 : (size_t)rl.rlim_cur;
    conns = calloc(nconns, sizeof *conns);
    if (!conns)
        die("calloc");

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "ceiling: bad host %s\n", host);
        return 2;
    }
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0)
        die("bind");
    if (listen(lfd, LISTEN_BACKLOG) != 0)
        die("listen");

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) != 0)
        die("epoll_ctl");

    static char buf[READ_BUF];
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                for (;;) {
                    int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (cfd < 0)
                        break; /* EAGAIN, or EMFILE: the backlog keeps the rest */
                    if ((size_t)cfd >= nconns) {
                        close(cfd);
                        continue;
                    }
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    memset(&conns[cfd], 0, sizeof conns[cfd]);
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev) != 0)
                        close(cfd);
                }
                continue;
            }
            struct conn *c = &conns[fd];
            if (evs[i].events & EPOLLIN) {
                ssize_t r = read(fd, buf, sizeof buf);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                    conn_close(ep, fd);
                    continue;
                }
                if (r > 0)
                    c->owed += count_requests(c, buf, (size_t)r);
            } else if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
                conn_close(ep, fd);
                continue;
            }
            if (flush(ep, fd) != 0)
                conn_close(ep, fd);
        }
    }
}
