/* The NATS client (src/net/nats.c): the parser under every split of its
 * input, messages and headers, URLs, and the connection against a real
 * nats-server (pub/sub, queue groups, headers, no-responders, max_payload,
 * reconnection, resubscription, the reconnect buffer) and fake servers
 * (keepalive PINGs; -ERR lines counted, their log rate-limited). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/nats.h"
#include "../test.h"

/* ---- the parser ----------------------------------------------------------- */

typedef struct oplog {
    char text[8192];
    size_t len;
} oplog;

static int log_op(void *ud, const svc_nats_op *op) {
    oplog *l = ud;
    char line[1024];
    int n;
    switch (op->type) {
    case SVC_NATS_OP_MSG:
        n = snprintf(line, sizeof line, "MSG %s %llu %s h=%.*s d=%.*s|", op->subject, (unsigned long long)op->sid,
                     op->reply ? op->reply : "-", (int)op->hdr_len, op->hdr ? op->hdr : "", (int)op->len,
                     op->data);
        break;
    default:
        n = snprintf(line, sizeof line, "OP%d %.*s|", op->type, (int)op->arg_len, op->arg ? op->arg : "");
    }
    if (l->len + (size_t)n < sizeof l->text) {
        memcpy(l->text + l->len, line, (size_t)n);
        l->len += (size_t)n;
        l->text[l->len] = '\0';
    }
    return 0;
}

static const char STREAM[] =
    "INFO {\"server_id\":\"x\",\"max_payload\":1048576,\"headers\":true}\r\n"
    "PING\r\n"
    "MSG a.b 1 5\r\nhello\r\n"
    "MSG a.c 2 _INBOX.x.1 0\r\n\r\n"
    "HMSG _INBOX.x.2 3 22 22\r\nNATS/1.0 503\r\nA: b\r\n\r\n\r\n"
    "HMSG s 4 r.1 12 15\r\nNATS/1.0\r\n\r\nabc\r\n"
    "msg lower 5 3\r\n\r\n\n\r\n"
    "PONG\r\n+OK\r\n-ERR 'Unknown Protocol Operation'\r\n"
    "MSG  spaced\t 6   2\r\nok\r\n";

static void parse_all(const char *buf, size_t len, const size_t *cuts, size_t ncuts, oplog *out, int *rc) {
    svc_nats_parser p = {0};
    svc__nats_parser_init(&p, 1024);
    size_t at = 0;
    *rc = 0;
    for (size_t i = 0; i <= ncuts && !*rc; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        *rc = svc__nats_parse(&p, buf + at, end - at, log_op, out);
        at = end;
    }
    svc__nats_parser_free(&p);
}

TEST(a_refused_subscription_is_read_from_an_err) {
    char out[16];
    const char *e = "'Permissions Violation for Subscription to \"svc.auth.>\"'";
    CHECK_EQ(svc__nats_err_denied_sub(e, strlen(e), out, sizeof out), 1);
    CHECK_STR(out, "svc.auth.>");
    e = "'Permissions Violation for Subscription to \"a.b\" using queue \"q\"'";
    CHECK_EQ(svc__nats_err_denied_sub(e, strlen(e), out, sizeof out), 1);
    CHECK_STR(out, "a.b");
    /* Cut to the buffer, control bytes shown as '?', no end quote: the rest. */
    e = "Permissions Violation for Subscription to \"abcdefghijklmnopqrstuvwxyz";
    CHECK_EQ(svc__nats_err_denied_sub(e, strlen(e), out, sizeof out), 1);
    CHECK_STR(out, "abcdefghijklmno");
    e = "Permissions Violation for Subscription to \"a\x1b[2Jb\"";
    CHECK_EQ(svc__nats_err_denied_sub(e, strlen(e), out, sizeof out), 1);
    CHECK_STR(out, "a?[2Jb");
    static const char *const others[] = {"'Permissions Violation for Publish to \"x\"'",
                                         "Permissions Violation for Subscription to \"\"", "'Stale Connection'",
                                         "Permissions Violation for Subscription to "};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        CHECK_EQ(svc__nats_err_denied_sub(others[i], strlen(others[i]), out, sizeof out), 0);
    /* Only len bytes are read. */
    e = "Permissions Violation for Subscription to \"x\"";
    CHECK_EQ(svc__nats_err_denied_sub(e, 20, out, sizeof out), 0);
}

TEST(parser_reads_every_operation) {
    oplog l = {0};
    int rc;
    parse_all(STREAM, strlen(STREAM), NULL, 0, &l, &rc);
    CHECK_EQ(rc, 0);
    CHECK(strstr(l.text, "OP1 {\"server_id\""));
    CHECK(strstr(l.text, "MSG a.b 1 - h= d=hello|"));
    CHECK(strstr(l.text, "MSG a.c 2 _INBOX.x.1 h= d=|"));
    CHECK(strstr(l.text, "MSG _INBOX.x.2 3 - h=NATS/1.0 503\r\nA: b\r\n\r\n d=|"));
    CHECK(strstr(l.text, "MSG s 4 r.1 h=NATS/1.0\r\n\r\n d=abc|"));
    CHECK(strstr(l.text, "MSG lower 5 - h= d=\r\n\n|"));
    CHECK(strstr(l.text, "OP6 Unknown Protocol Operation|"));
    CHECK(strstr(l.text, "MSG spaced 6 - h= d=ok|"));
}

TEST(parser_gives_the_same_result_for_every_split) {
    size_t len = strlen(STREAM);
    oplog whole = {0};
    int rc;
    parse_all(STREAM, len, NULL, 0, &whole, &rc);
    REQUIRE(rc == 0);
    for (size_t a = 1; a < len; a++) {
        oplog l = {0};
        size_t cuts[1] = {a};
        parse_all(STREAM, len, cuts, 1, &l, &rc);
        CHECK_EQ(rc, 0);
        if (strcmp(l.text, whole.text) != 0) {
            test_fail(__FILE__, __LINE__, "split at %zu differs", a);
            return;
        }
        /* And three pieces. */
        for (size_t b = a + 1; b < len; b += 7) {
            oplog l3 = {0};
            size_t cuts3[2] = {a, b};
            parse_all(STREAM, len, cuts3, 2, &l3, &rc);
            if (rc != 0 || strcmp(l3.text, whole.text) != 0) {
                test_fail(__FILE__, __LINE__, "split at %zu,%zu differs", a, b);
                return;
            }
        }
    }
    /* One byte at a time. */
    size_t *cuts = malloc(len * sizeof *cuts);
    for (size_t i = 0; i < len - 1; i++) cuts[i] = i + 1;
    oplog l = {0};
    parse_all(STREAM, len, cuts, len - 1, &l, &rc);
    free(cuts);
    CHECK_EQ(rc, 0);
    CHECK_STR(l.text, whole.text);
}

static int parse_one(const char *s, size_t max_payload) {
    svc_nats_parser p = {0};
    svc__nats_parser_init(&p, max_payload);
    oplog l = {0};
    int rc = svc__nats_parse(&p, s, strlen(s), log_op, &l);
    svc__nats_parser_free(&p);
    return rc;
}

TEST(parser_refuses_protocol_violations) {
    CHECK_EQ(parse_one("FOO bar\r\n", 100), -1);
    CHECK_EQ(parse_one("\r\n", 100), -1);
    CHECK_EQ(parse_one("PING x\r\n", 100), -1);
    CHECK_EQ(parse_one("MSG a\r\n", 100), -1);
    CHECK_EQ(parse_one("MSG a 1 2 3 4\r\n", 100), -1);
    CHECK_EQ(parse_one("MSG a x 3\r\nabc\r\n", 100), -1);
    CHECK_EQ(parse_one("MSG a 1 -3\r\nabc\r\n", 100), -1);
    CHECK_EQ(parse_one("MSG a 1 101\r\n", 100), -1);              /* over max_payload */
    CHECK_EQ(parse_one("MSG a 1 99999999999999999999\r\n", 1000), -1);
    CHECK_EQ(parse_one("MSG a 1 3\r\nabcd\r\n", 100), -1);        /* no CRLF after the payload */
    CHECK_EQ(parse_one("HMSG a 1 5 3\r\n", 100), -1);             /* header over total */
    CHECK_EQ(parse_one("HMSG a 1 3 3\r\n", 100), -1);             /* too short for NATS/1.0 */
    CHECK_EQ(parse_one("MSG a\x01 1 3\r\n", 100), -1);
    CHECK_EQ(parse_one("MSG a\0b 1 3\r\n", 100), 0);              /* the NUL ends the C string: "MSG a" pending */
    char *big = malloc(SVC_NATS_MAX_LINE + 10);
    memset(big, 'A', SVC_NATS_MAX_LINE + 5);
    memcpy(big, "INFO ", 5);
    big[SVC_NATS_MAX_LINE + 5] = '\0';
    CHECK_EQ(parse_one(big, 100), -1);
    free(big);
}

/* parse_one stops at the first NUL (strlen); here the bytes go in whole. */
static int parse_bytes(const char *s, size_t len) {
    svc_nats_parser p = {0};
    svc__nats_parser_init(&p, 100);
    oplog l = {0};
    int rc = svc__nats_parse(&p, s, len, log_op, &l);
    svc__nats_parser_free(&p);
    CHECK_EQ(l.len, 0); /* nothing delivered before the refusal */
    return rc;
}

TEST(parser_refuses_a_nul_in_a_protocol_line) {
    static const char msg[] = "MSG a\0b 1 3\r\nabc\r\n", ping[] = "PING\0\r\n";
    CHECK_EQ(parse_bytes(msg, sizeof msg - 1), -1);
    CHECK_EQ(parse_bytes(ping, sizeof ping - 1), -1);
}

/* ---- messages, headers, URLs ------------------------------------------------- */

TEST(message_headers_are_parsed) {
    const char h[] = "NATS/1.0 408 Request Timeout\r\nSvc-Status: 200\r\nX-A:  v w  \r\nx-a: second\r\n\r\n";
    svc_nats_msg *m = NULL;
    REQUIRE(svc__nats_msg_new("s.x", 3, "r.1", 3, h, strlen(h), "body", 4, &m) == SVC_OK);
    CHECK_STR(m->subject, "s.x");
    CHECK_STR(m->reply, "r.1");
    CHECK_STR(m->data, "body");
    CHECK_EQ(m->len, 4);
    CHECK_EQ(m->status, 408);
    CHECK_EQ(m->nhdrs, 3);
    CHECK_STR(svc__nats_msg_header(m, "svc-status"), "200");
    CHECK_STR(svc__nats_msg_header(m, "X-A"), "v w");
    CHECK_STR(m->values[2], "second");
    CHECK(svc__nats_msg_header(m, "nope") == NULL);
    svc__nats_msg_free(m);

    CHECK_EQ(svc__nats_msg_new("s", 1, NULL, 0, "HTTP/1.1\r\n\r\n", 12, "", 0, &m), SVC_EINVAL);
    CHECK_EQ(svc__nats_msg_new("s", 1, NULL, 0, "NATS/1.0\r\nno colon\r\n\r\n", 22, "", 0, &m), SVC_EINVAL);
    CHECK_EQ(svc__nats_msg_new("s", 1, NULL, 0, "NATS/1.0\r\n: v\r\n\r\n", 17, "", 0, &m), SVC_EINVAL);
    CHECK_EQ(svc__nats_msg_new("s", 1, NULL, 0, "NATS/1.0\r\nA b: v\r\n\r\n", 20, "", 0, &m), SVC_EINVAL);
    REQUIRE(svc__nats_msg_new("s", 1, NULL, 0, NULL, 0, "x", 1, &m) == SVC_OK);
    CHECK(m->reply == NULL);
    CHECK_EQ(m->status, 0);
    svc__nats_msg_free(m);

    svc_buf b = {0};
    svc__nats_hdr_begin(&b);
    CHECK_EQ(svc__nats_hdr_add(&b, "Svc-Path", "/a b"), SVC_OK);
    CHECK_EQ(svc__nats_hdr_add(&b, "Bad Name", "x"), SVC_EINVAL);
    CHECK_EQ(svc__nats_hdr_add(&b, "X", "a\r\nInjected: 1"), SVC_EINVAL);
    svc__nats_hdr_end(&b);
    CHECK_STR(b.data, "NATS/1.0\r\nSvc-Path: /a b\r\n\r\n");
    svc_buf_free(&b);
}

TEST(urls) {
    svc_nats_server s;
    CHECK_EQ(svc__nats_url_parse("nats://127.0.0.1:4223", &s), SVC_OK);
    CHECK_STR(s.host, "127.0.0.1");
    CHECK_EQ(s.port, 4223);
    CHECK_EQ(svc__nats_url_parse("nats://broker", &s), SVC_OK);
    CHECK_EQ(s.port, 4222);
    CHECK_EQ(svc__nats_url_parse("nats://u:p@h:1/", &s), SVC_OK);
    CHECK_STR(s.user, "u");
    CHECK_STR(s.pass, "p");
    CHECK_STR(s.host, "h");
    CHECK_EQ(svc__nats_url_parse("nats://tok@h", &s), SVC_OK);
    CHECK_STR(s.user, "tok");
    CHECK_EQ(svc__nats_url_parse("nats://[::1]:5000", &s), SVC_OK);
    CHECK_STR(s.host, "::1");
    CHECK_EQ(s.port, 5000);
    CHECK_EQ(s.tls, 0);
    CHECK_EQ(svc__nats_url_parse("tls://u:p@h:4443", &s), SVC_OK);
    CHECK_EQ(s.tls, 1);
    CHECK_STR(s.host, "h");
    CHECK_STR(s.pass, "p");
    CHECK_EQ(s.port, 4443);
    CHECK_EQ(svc__nats_url_parse("tls:/h", &s), SVC_EINVAL);
    CHECK_EQ(svc__nats_url_parse("https://h", &s), SVC_EINVAL);
    CHECK_EQ(svc__nats_url_parse("nats://", &s), SVC_EINVAL);
    CHECK_EQ(svc__nats_url_parse("nats://h:0", &s), SVC_EINVAL);
    CHECK_EQ(svc__nats_url_parse("nats://h:70000", &s), SVC_EINVAL);
    CHECK_EQ(svc__nats_url_parse("nats://h:12x", &s), SVC_EINVAL);
    CHECK_EQ(svc__nats_url_parse("nats://h/path", &s), SVC_EINVAL);
}

TEST(url_lists) {
    svc_nats_server s[3];
    int n = -1;
    CHECK_EQ(svc__nats_urls_parse(" nats://a:1 ,, nats://b ,", s, 3, &n), SVC_OK);
    CHECK_EQ(n, 2);
    CHECK_STR(s[0].host, "a");
    CHECK_EQ(s[0].port, 1);
    CHECK_STR(s[1].host, "b");
    CHECK_EQ(svc__nats_urls_parse("nats://a,nats://b,nats://c,nats://d", s, 3, &n), SVC_ERANGE);
    CHECK_EQ(n, 3);
    CHECK_EQ(svc__nats_urls_parse("nats://a,http://b", s, 3, &n), SVC_EINVAL);
    CHECK_EQ(svc__nats_urls_parse(" , ", s, 3, &n), SVC_EINVAL);
    CHECK_EQ(svc__nats_urls_parse("", s, 3, &n), SVC_EINVAL);
    CHECK_EQ(n, 0);
    char longurl[SVC_NATS_MAX_URL + 16] = "nats://";
    memset(longurl + 7, 'h', sizeof longurl - 8);
    longurl[sizeof longurl - 1] = '\0';
    CHECK_EQ(svc__nats_urls_parse(longurl, s, 3, &n), SVC_EINVAL);
}

/* ---- against a real nats-server ------------------------------------------------- */

#define NATS_SERVER "/usr/sbin/nats-server"

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof a);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

static pid_t start_server(int port, const char *max_payload) {
    pid_t pid = fork();
    if (pid == 0) {
        char p[16];
        snprintf(p, sizeof p, "%d", port);
        char conf[64];
        snprintf(conf, sizeof conf, "/tmp/svckit-test-nats-%d.conf", port);
        FILE *f = fopen(conf, "w");
        if (!f) _exit(127);
        fprintf(f, "listen: 127.0.0.1:%s\nmax_payload: %s\n", p, max_payload);
        fclose(f);
        int devnull = open("/dev/null", 1);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execl(NATS_SERVER, NATS_SERVER, "-c", conf, (char *)NULL);
        _exit(127);
    }
    /* Ready when it accepts. */
    for (int i = 0; i < TEST_WAIT_MS / 20; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok) break;
        usleep(20000);
    }
    return pid;
}

static void stop_server(pid_t pid, int port) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    char conf[64];
    snprintf(conf, sizeof conf, "/tmp/svckit-test-nats-%d.conf", port);
    unlink(conf);
}

typedef struct seen {
    int n, queue_a, queue_b, events, connected, reconnected, disconnected, flushed;
    char last_subject[64], last_data[64], last_hdr[64];
    int last_status;
} seen;

static seen G;

static void on_msg(svc_nats *nc, svc_nats_msg *m, void *ud) {
    (void)nc;
    G.n++;
    if (ud == (void *)1) G.queue_a++;
    if (ud == (void *)2) G.queue_b++;
    snprintf(G.last_subject, sizeof G.last_subject, "%s", m->subject);
    snprintf(G.last_data, sizeof G.last_data, "%.*s", (int)m->len, m->data);
    const char *h = svc__nats_msg_header(m, "x-test");
    snprintf(G.last_hdr, sizeof G.last_hdr, "%s", h ? h : "");
    G.last_status = m->status;
    svc__nats_msg_free(m);
}

static void on_event(svc_nats *nc, int ev, void *ud) {
    (void)nc;
    (void)ud;
    if (ev == SVC_NATS_CONNECTED) G.connected++;
    if (ev == SVC_NATS_RECONNECTED) G.reconnected++;
    if (ev == SVC_NATS_DISCONNECTED) G.disconnected++;
}

static void on_flush(svc_nats *nc, int ok, void *ud) {
    (void)nc;
    (void)ud;
    if (ok) G.flushed++;
}

/* Runs the loop until cond holds or ms pass; 1 if it holds. */
#define RUN_UNTIL(loop, cond, ms)                                           \
    ({                                                                      \
        uint64_t until_ = uv_now(loop) + (ms);                              \
        while (!(cond) && uv_now(loop) < until_) {                          \
            uv_run(loop, UV_RUN_NOWAIT);                                    \
            usleep(1000);                                                   \
            uv_update_time(loop);                                           \
        }                                                                   \
        (cond);                                                             \
    })

/* errors: where -ERR lines are counted (may be NULL). */
static svc_nats *connect_counting(uv_loop_t *loop, int port, int ping_ms, svc_series *errors) {
    svc_nats_server s;
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
    svc__nats_url_parse(url, &s);
    svc_nats_opts o = {.servers = &s, .nservers = 1, .name = "unit", .reconnect_wait_ms = 50,
                       .reconnect_buffer = 4096, .ping_ms = ping_ms, .server_errors = errors,
                       .on_event = on_event};
    return svc__nats_new(loop, &o);
}

static svc_nats *connect_to(uv_loop_t *loop, int port, int ping_ms) {
    return connect_counting(loop, port, ping_ms, NULL);
}

static void close_and_drain(uv_loop_t *loop, svc_nats *a, svc_nats *b) {
    svc__nats_close(a);
    svc__nats_close(b);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK_EQ(uv_loop_close(loop), 0);
}

TEST(client_against_nats_server) {
    if (access(NATS_SERVER, X_OK) != 0) {
        test_fail(__FILE__, __LINE__, "%s is missing (apt-get install nats-server)", NATS_SERVER);
        return;
    }
    memset(&G, 0, sizeof G);
    int port = free_port();
    pid_t srv = start_server(port, "2048");
    uv_loop_t loop;
    uv_loop_init(&loop);
    svc_nats *a = connect_to(&loop, port, 0), *b = connect_to(&loop, port, 0);
    REQUIRE(a && b);
    CHECK(RUN_UNTIL(&loop, G.connected == 2, TEST_WAIT_MS));
    CHECK_EQ(svc__nats_max_payload(a), 2048);

    /* pub/sub, with and without headers */
    CHECK(svc__nats_sub(a, "t.>", NULL, on_msg, NULL) > 0);
    svc__nats_flush(a, on_flush, NULL);
    CHECK(RUN_UNTIL(&loop, G.flushed == 1, TEST_WAIT_MS));
    CHECK_EQ(svc__nats_pub(b, "t.one", NULL, NULL, 0, "hi", 2), SVC_OK);
    CHECK(RUN_UNTIL(&loop, G.n == 1, TEST_WAIT_MS));
    CHECK_STR(G.last_subject, "t.one");
    CHECK_STR(G.last_data, "hi");
    svc_buf h = {0};
    svc__nats_hdr_begin(&h);
    svc__nats_hdr_add(&h, "X-Test", "yes");
    svc__nats_hdr_end(&h);
    CHECK_EQ(svc__nats_pub(b, "t.two", "re.ply", h.data, h.len, "body", 4), SVC_OK);
    CHECK(RUN_UNTIL(&loop, G.n == 2, TEST_WAIT_MS));
    CHECK_STR(G.last_hdr, "yes");
    CHECK_STR(G.last_data, "body");

    /* max_payload from INFO */
    char big[3000] = {0};
    CHECK_EQ(svc__nats_pub(b, "t.big", NULL, NULL, 0, big, sizeof big), SVC_ERANGE);
    CHECK_EQ(svc__nats_pub(b, "bad subject", NULL, NULL, 0, "x", 1), SVC_EINVAL);

    /* queue group: 40 messages split between two members, each once */
    CHECK(svc__nats_sub(a, "q.x", "grp", on_msg, (void *)1) > 0);
    CHECK(svc__nats_sub(b, "q.x", "grp", on_msg, (void *)2) > 0);
    svc__nats_flush(a, on_flush, NULL);
    svc__nats_flush(b, on_flush, NULL);
    CHECK(RUN_UNTIL(&loop, G.flushed == 3, TEST_WAIT_MS));
    for (int i = 0; i < 40; i++) svc__nats_pub(a, "q.x", NULL, NULL, 0, "q", 1);
    CHECK(RUN_UNTIL(&loop, G.queue_a + G.queue_b == 40, TEST_WAIT_MS));
    CHECK(G.queue_a > 0 && G.queue_b > 0);

    /* no responders: a 503 status at once on the reply subject */
    CHECK(svc__nats_sub(b, "_INBOX.unit.*", NULL, on_msg, NULL) > 0);
    svc__nats_flush(b, on_flush, NULL);
    CHECK(RUN_UNTIL(&loop, G.flushed == 4, TEST_WAIT_MS));
    int before = G.n;
    CHECK_EQ(svc__nats_pub(b, "nobody.listens", "_INBOX.unit.1", NULL, 0, "", 0), SVC_OK);
    CHECK(RUN_UNTIL(&loop, G.n == before + 1, TEST_WAIT_MS));
    CHECK_EQ(G.last_status, 503);
    CHECK_STR(G.last_subject, "_INBOX.unit.1");

    /* unsubscribe */
    uint64_t sid = svc__nats_sub(a, "u.x", NULL, on_msg, NULL);
    svc__nats_unsub(a, sid);
    svc__nats_flush(a, on_flush, NULL);
    CHECK(RUN_UNTIL(&loop, G.flushed == 5, TEST_WAIT_MS));
    before = G.n;
    svc__nats_pub(b, "u.x", NULL, NULL, 0, "x", 1);
    svc__nats_flush(b, on_flush, NULL);
    svc__nats_flush(a, on_flush, NULL);
    CHECK(RUN_UNTIL(&loop, G.flushed == 7, TEST_WAIT_MS));
    CHECK_EQ(G.n, before);

    /* held (conn.c holds a worker's publishes after a reconnection) with its
     * buffer full: publishes are refused, a reply still goes out at once,
     * and release sends what was held */
    CHECK(svc__nats_sub(a, "held.>", NULL, on_msg, NULL) > 0);
    svc__nats_flush(a, on_flush, NULL);
    CHECK(RUN_UNTIL(&loop, G.flushed == 8, TEST_WAIT_MS));
    svc__nats_hold(b);
    char fill[1500] = {0};
    CHECK_EQ(svc__nats_pub(b, "held.kept", NULL, NULL, 0, "kept", 4), SVC_OK);
    int refused = 0;
    for (int i = 0; i < 5; i++) refused += svc__nats_pub(b, "nobody.fill", NULL, NULL, 0, fill, sizeof fill) == SVC_EAGAIN;
    CHECK(refused > 0);
    CHECK_EQ(svc__nats_pub(b, "held.pub", NULL, NULL, 0, fill, sizeof fill), SVC_EAGAIN);
    before = G.n;
    CHECK_EQ(svc__nats_reply(b, "held.reply", NULL, 0, "answer", 6), SVC_OK);
    CHECK(RUN_UNTIL(&loop, G.n == before + 1, TEST_WAIT_MS));
    CHECK_STR(G.last_subject, "held.reply");
    CHECK_STR(G.last_data, "answer");
    svc__nats_release(b);
    CHECK(RUN_UNTIL(&loop, G.n == before + 2, TEST_WAIT_MS));
    CHECK_STR(G.last_subject, "held.kept");

    /* reconnection: publishes wait in the bounded buffer, subscriptions come
     * back (on the same connection, before the buffer is sent) */
    CHECK(svc__nats_sub(b, "buf.>", NULL, on_msg, NULL) > 0);
    stop_server(srv, port);
    CHECK(RUN_UNTIL(&loop, G.disconnected == 2, TEST_WAIT_MS));
    CHECK(!svc__nats_connected(a));
    CHECK_EQ(svc__nats_pub(b, "buf.kept", NULL, NULL, 0, "kept", 4), SVC_OK);
    CHECK(svc__nats_buffered(b) > 0);
    char chunk[1500] = {0};
    int eagain = 0;
    for (int i = 0; i < 5; i++) eagain += svc__nats_pub(b, "nobody.fill", NULL, NULL, 0, chunk, sizeof chunk) == SVC_EAGAIN;
    CHECK(eagain > 0);
    srv = start_server(port, "2048");
    CHECK(RUN_UNTIL(&loop, G.reconnected == 2, TEST_WAIT_MS));
    CHECK(RUN_UNTIL(&loop, strcmp(G.last_subject, "buf.kept") == 0, TEST_WAIT_MS));
    CHECK_STR(G.last_data, "kept");
    before = G.n;
    svc__nats_pub(b, "t.after", NULL, NULL, 0, "again", 5);
    CHECK(RUN_UNTIL(&loop, G.n > before && strcmp(G.last_subject, "t.after") == 0, TEST_WAIT_MS));
    svc_buf_free(&h);
    close_and_drain(&loop, a, b);
    stop_server(srv, port);
}

/* ---- against fake servers --------------------------------------------------------- */

/* A server on a thread: accepts one client, greets it, answers the PING of
 * its CONNECT, runs its script (NULL: none), then reads until the client
 * goes, answering nothing more. */
typedef struct fake_server {
    int lfd, port;
    void (*script)(int fd);
    pthread_t th;
    int pings;                       /* PINGs read after the handshake's */
} fake_server;

static int count_pings(const char *buf) {
    int n = 0;
    for (const char *p = buf; (p = strstr(p, "PING\r\n")); p += 6) n++;
    return n;
}

static void *fake_main(void *arg) {
    fake_server *f = arg;
    int fd = accept(f->lfd, NULL, NULL);
    const char info[] = "INFO {\"server_id\":\"fake\",\"max_payload\":1024,\"headers\":true}\r\n";
    write(fd, info, sizeof info - 1);
    char buf[4096];
    size_t got = 0;
    while (got < sizeof buf - 1) {
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n <= 0) break;
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "PING\r\n")) break;
    }
    write(fd, "PONG\r\n", 6);
    if (f->script) f->script(fd);
    /* Everything until the client closes (a few lines: it fits), then count. */
    ssize_t n;
    while ((n = read(fd, buf + got, got < sizeof buf - 1 ? sizeof buf - 1 - got : 0)) > 0) got += (size_t)n;
    buf[got] = '\0';
    f->pings = count_pings(buf) - 1;
    while (read(fd, buf, sizeof buf) > 0) {
    }
    close(fd);
    return NULL;
}

static int fake_start(fake_server *f, void (*script)(int fd)) {
    f->script = script;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (bind(f->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(f->lfd, 4) != 0 ||
        getsockname(f->lfd, (struct sockaddr *)&a, &l) != 0)
        return -1;
    f->port = ntohs(a.sin_port);
    return pthread_create(&f->th, NULL, fake_main, f);
}

static void fake_stop(fake_server *f) {
    shutdown(f->lfd, SHUT_RDWR);
    close(f->lfd);
    pthread_join(f->th, NULL);
}

/* Closes nc and runs the loop until its handles are gone. */
static void close_one(uv_loop_t *loop, svc_nats *nc) {
    svc__nats_close(nc);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
}

TEST(keepalive_pings_find_a_dead_server) {
    memset(&G, 0, sizeof G);
    fake_server f;
    REQUIRE(fake_start(&f, NULL) == 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    svc_nats *nc = connect_to(&loop, f.port, 100);
    CHECK(RUN_UNTIL(&loop, G.connected == 1, TEST_WAIT_MS));
    /* Two PINGs unanswered: the third tick declares the connection dead. */
    CHECK(RUN_UNTIL(&loop, G.disconnected == 1, TEST_WAIT_MS));
    close_one(&loop, nc);
    fake_stop(&f);
    CHECK_EQ(f.pings, SVC_NATS_MAX_PINGS_OUT); /* not one fewer, whatever the timing */
}

/* A burst of 50 -ERR lines, then one more after the log interval. The
 * client sends a PING once it has taken the burst: the interval is counted
 * from then, not from our write, however late the client read it. */
static void send_errors(int fd) {
    char burst[50 * 64];
    size_t len = 0;
    for (int i = 0; i < 50; i++)
        len += (size_t)snprintf(burst + len, sizeof burst - len,
                                "-ERR 'Permissions Violation for Publish to x.%d'\r\n", i);
    write(fd, burst, len);
    char in[4096];
    size_t got = 0;
    in[0] = '\0';
    while (!strstr(in, "PING\r\n") && got < sizeof in - 1) {
        ssize_t n = read(fd, in + got, sizeof in - 1 - got);
        if (n <= 0) return;
        got += (size_t)n;
        in[got] = '\0';
    }
    usleep((SVC_NATS_ERR_LOG_INTERVAL_MS + 100) * 1000); /* the interval itself is what is tested */
    const char last[] = "-ERR 'Permissions Violation for Publish to y'\r\n";
    write(fd, last, sizeof last - 1);
}

/* Lines of the file at path that hold needle; the last one in last. */
static int count_lines(const char *path, const char *needle, char *last, size_t lastlen) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle)) {
            n++;
            snprintf(last, lastlen, "%s", line);
        }
    fclose(f);
    return n;
}

TEST(server_errors_are_counted_and_their_log_is_rate_limited) {
    memset(&G, 0, sizeof G);
    /* The log goes to stdout: catch it in a file for the length of the test. */
    char path[] = "/tmp/svckit-test-nats-err-XXXXXX";
    int logfd = mkstemp(path);
    REQUIRE(logfd >= 0);
    fflush(stdout);
    int saved = dup(1);
    dup2(logfd, 1);
    svc_log_setup("unit", SVC_LOG_INFO, 0);
    fake_server f;
    REQUIRE(fake_start(&f, send_errors) == 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    svc_series *errors = svc_metric_with(svc_metric_counter("test_server_errors_total", "", 0, NULL), NULL);
    svc_nats *nc = connect_counting(&loop, f.port, 0, errors);
    int burst = RUN_UNTIL(&loop, svc_series_value(errors) >= 50, TEST_WAIT_MS);
    svc__nats_flush(nc, NULL, NULL); /* tells the server the burst was taken */
    int all = RUN_UNTIL(&loop, svc_series_value(errors) >= 51, TEST_WAIT_MS);
    close_one(&loop, nc);
    fake_stop(&f);
    svc_log_flush();
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(logfd);
    char last[1024] = "";
    int lines = count_lines(path, "says: Permissions Violation", last, sizeof last);
    unlink(path);
    CHECK(burst);
    CHECK(all);
    CHECK_EQ(svc_series_value(errors), 51);
    CHECK(G.disconnected == 0); /* an -ERR alone does not end the connection */
    /* The first of the burst, then the last one with the count of the 49 left out. */
    CHECK_EQ(lines, 2);
    CHECK(strstr(last, "Publish to y (and 49 more errors since the last line") != NULL);
}
