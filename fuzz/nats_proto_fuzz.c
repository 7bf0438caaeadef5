/*
 * Fuzzes what a NATS server sends us (src/net/nats.c): the incremental
 * protocol parser and the header blocks of messages.
 *
 * Input layout: byte 0 chooses how the rest is cut into reads (0: one read;
 * otherwise reads of that many bytes, cycling); the rest is the byte stream.
 *
 * Besides the sanitizers, it checks:
 *  - the parser either consumes everything or reports a violation with a
 *    reason, and cutting the same bytes differently gives the same
 *    operations (compared as a running hash) up to the point of failure;
 *  - every message it delivers has a printable subject and reply, a payload
 *    within max_payload and a header block that is within the payload;
 *  - a header block either parses into names that are printable and
 *    space-free and values without CR/LF, or is refused as a whole;
 *    header lookup finds the first of each parsed name;
 *  - the subject of a refused subscription read from an -ERR is printable.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/nats.h"

#include "fuzz_util.h"

#define MAX_PAYLOAD 4096

typedef struct state {
    uint64_t hash;
    unsigned ops;
} state;

static void mix(state *s, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) s->hash = (s->hash ^ b[i]) * 1099511628211ULL;
    s->hash ^= n;
}

static void check_token(const char *s, size_t n) {
    CHECK(n > 0 && strlen(s) == n);
    for (size_t i = 0; i < n; i++) CHECK((unsigned char)s[i] > 0x20 && (unsigned char)s[i] != 0x7f);
}

static int on_op(void *ud, const svc_nats_op *op) {
    state *s = ud;
    s->ops++;
    mix(s, &op->type, sizeof op->type);
    if (op->type == SVC_NATS_OP_ERR && op->arg) {
        char denied[SVC_NATS_MAX_DENIED_SUBJECT];
        if (svc__nats_err_denied_sub(op->arg, op->arg_len, denied, sizeof denied))
            check_token(denied, strlen(denied));
    }
    if (op->type != SVC_NATS_OP_MSG) {
        if (op->arg) mix(s, op->arg, op->arg_len);
        return 0;
    }
    check_token(op->subject, op->subject_len);
    if (op->reply) check_token(op->reply, op->reply_len);
    CHECK(op->len + op->hdr_len <= MAX_PAYLOAD);
    mix(s, op->subject, op->subject_len);
    mix(s, op->data, op->len);
    svc_nats_msg *m = NULL;
    int rc = svc__nats_msg_new(op->subject, op->subject_len, op->reply, op->reply_len, op->hdr, op->hdr_len,
                               op->data, op->len, &m);
    CHECK(rc == SVC_OK || rc == SVC_EINVAL);
    if (rc == SVC_OK) {
        CHECK(m->len == op->len && memcmp(m->data, op->data, op->len) == 0 && m->data[m->len] == '\0');
        CHECK(strcmp(m->subject, op->subject) == 0);
        CHECK(m->nhdrs <= SVC_NATS_MAX_HEADERS);
        CHECK(m->status >= 0 && m->status <= 999);
        for (size_t i = 0; i < m->nhdrs; i++) {
            CHECK(m->names[i][0]);
            for (const char *c = m->names[i]; *c; c++) CHECK((unsigned char)*c > 0x20 && *c != ':');
            for (const char *c = m->values[i]; *c; c++) CHECK(*c != '\r' && *c != '\n');
            const char *first = svc__nats_msg_header(m, m->names[i]);
            size_t k = 0;
            while (strcasecmp(m->names[k], m->names[i]) != 0) k++;
            CHECK(first == m->values[k]);
        }
        svc__nats_msg_free(m);
    } else {
        CHECK(m == NULL && op->hdr_len > 0);
    }
    return 0;
}

static int run(const uint8_t *data, size_t size, size_t step, state *s, size_t *consumed) {
    svc_nats_parser p = {0};
    svc__nats_parser_init(&p, MAX_PAYLOAD);
    int rc = 0;
    size_t at = 0;
    while (at < size && rc == 0) {
        size_t n = step && step < size - at ? step : size - at;
        rc = svc__nats_parse(&p, (const char *)data + at, n, on_op, s);
        at += n;
        if (step) step = step % 7 + 1;
    }
    if (rc) CHECK(p.error[0]);
    svc__nats_parser_free(&p);
    *consumed = at;
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t step = data[0];
    data++;
    size--;
    state whole = {0}, cut = {0};
    size_t c1, c2;
    int r1 = run(data, size, 0, &whole, &c1);
    int r2 = run(data, size, step, &cut, &c2);
    CHECK((r1 == 0) == (r2 == 0));
    if (r1 == 0) CHECK(whole.hash == cut.hash && whole.ops == cut.ops);
    return 0;
}
