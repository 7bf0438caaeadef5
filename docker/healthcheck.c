/*
 * healthcheck: the container's HEALTHCHECK probe.
 *
 * The runtime image is FROM scratch: no shell, no curl. This program asks the
 * service in the same container for GET /healthz and exits 0 on a 200 answer,
 * 1 otherwise, as Docker's HEALTHCHECK CMD expects.
 *
 *   /healthcheck            GET http://127.0.0.1:$PORT/healthz
 *   /healthcheck /readyz    another path
 *
 * Environment: PORT (default 8080) and HOST (the service's listen address; a
 * wildcard or unset means loopback). Only numeric addresses: no resolver, so
 * the probe works the same in a static and a dynamic image. The whole exchange
 * is bounded by PROBE_TIMEOUT_SECONDS, shorter than any sane HEALTHCHECK
 * --timeout, so a hung service is reported, never waited on.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROBE_TIMEOUT_SECONDS 2
#define PROBE_DEFAULT_PORT 8080
#define PROBE_MAX_PATH 256
#define PROBE_MAX_REQUEST 512

static void fail(const char *why) {
    fprintf(stderr, "healthcheck: %s\n", why);
    exit(1);
}

/* The address to probe: HOST when it names one interface, else loopback. */
static int probe_addr(struct sockaddr_storage *ss, socklen_t *len, int port) {
    const char *host = getenv("HOST");
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof *ss);
    if (host && *host && strcmp(host, "0.0.0.0") != 0 && strcmp(host, "::") != 0) {
        if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
            v4->sin_port = htons((uint16_t)port);
            *len = sizeof *v4;
            return 0;
        }
        if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons((uint16_t)port);
            *len = sizeof *v6;
            return 0;
        }
        /* A hostname: the service listens on what it resolves to; loopback
         * is the best guess without a resolver. */
    }
    if (host && strcmp(host, "::") == 0) {
        v6->sin6_family = AF_INET6;
        v6->sin6_addr = in6addr_loopback;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof *v6;
        return 0;
    }
    v4->sin_family = AF_INET;
    v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    v4->sin_port = htons((uint16_t)port);
    *len = sizeof *v4;
    return 0;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/healthz";
    const char *port_env = getenv("PORT");
    long port = PROBE_DEFAULT_PORT;
    struct sockaddr_storage ss;
    socklen_t len;
    char req[PROBE_MAX_REQUEST];
    char resp[64];
    size_t got = 0;
    int fd, n;

    if (path[0] != '/' || strlen(path) > PROBE_MAX_PATH || strpbrk(path, " \r\n"))
        fail("path must start with / and hold no spaces");
    if (port_env && *port_env) {
        char *end;
        port = strtol(port_env, &end, 10);
        if (*end || port < 1 || port > 65535) fail("PORT is not a port number");
    }
    /* One deadline for connect, write and read: the default SIGALRM action
     * ends the process, which HEALTHCHECK reads as unhealthy. */
    alarm(PROBE_TIMEOUT_SECONDS);

    probe_addr(&ss, &len, (int)port);
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket failed");
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) fail("connect failed");

    n = snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: svckit-healthcheck\r\n"
                 "Connection: close\r\n\r\n", path);
    for (int off = 0; off < n;) {
        ssize_t w = write(fd, req + off, (size_t)(n - off));
        if (w <= 0) fail("write failed");
        off += (int)w;
    }
    /* Only the status line matters: "HTTP/1.x 200 ". */
    while (got < sizeof resp - 1) {
        ssize_t r = read(fd, resp + got, sizeof resp - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
        if (got >= 13) break;
    }
    resp[got] = '\0';
    close(fd);
    if (got < 12 || strncmp(resp, "HTTP/1.", 7) != 0) fail("no HTTP answer");
    if (strncmp(resp + 8, " 200", 4) != 0) {
        char *eol = strpbrk(resp, "\r\n");
        if (eol) *eol = '\0';
        fprintf(stderr, "healthcheck: %s answered %s\n", path, resp);
        return 1;
    }
    return 0;
}
