/*
 * Fuzzes the reading of a JetStream delivery's reply subject
 * (src/msg/jetstream.c): svc__js_delivered, the delivery count handed to
 * stream handlers, and svc__js_pending, the consumer's backlog behind
 * jetstream_consumer_pending_messages. The subject comes off the wire; a
 * peer that may publish into a consumer's inbox chooses it.
 *
 * Besides the sanitizers, it checks:
 *  - a count is read only from a subject that starts with "$JS.ACK.";
 *  - a pending count is read only for the stream and durable the subject
 *    names, "ORDERS" and "payments" here: it is -1 for any other pair;
 *  - both are below 10^18, and each is the value of one of the subject's
 *    dot-separated tokens, written in decimal digits only;
 *  - the same subject gives the same answers twice.
 *
 * Input layout: the whole input is the subject, up to its first NUL.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg/internal.h"

#include "fuzz_util.h"

#define MAX_SUBJECT 1024

/* Whether some '.'-separated token of s is exactly the decimal digits of v
 * (leading zeros allowed). */
static int has_token_of(const char *s, int64_t v) {
    for (const char *p = s;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len > 0 && len <= 18 && strspn(p, "0123456789") >= len) {
            int64_t t = 0;
            for (size_t i = 0; i < len; i++) t = t * 10 + (p[i] - '0');
            if (t == v) return 1;
        }
        if (!dot) return 0;
        p = dot + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char s[MAX_SUBJECT + 1];
    size_t n = size < MAX_SUBJECT ? size : MAX_SUBJECT;
    memcpy(s, data, n);
    s[n] = '\0';
    int ack = strncmp(s, "$JS.ACK.", 8) == 0;

    uint64_t delivered = svc__js_delivered(s);
    int64_t pending = svc__js_pending(s, "ORDERS", "payments");
    CHECK(delivered < 1000000000000000000ULL);
    CHECK(pending >= -1 && pending < 1000000000000000000LL);
    if (delivered) CHECK(ack && has_token_of(s, (int64_t)delivered));
    if (pending >= 0) CHECK(ack && strstr(s, ".ORDERS.payments.") && has_token_of(s, pending));
    /* The stream and durable must match whole tokens. */
    CHECK(svc__js_pending(s, "ORDER", "payments") == -1 || strstr(s, ".ORDER.payments."));
    CHECK(svc__js_pending(s, "ORDERS", "") == -1 || strstr(s, ".ORDERS.."));

    CHECK(svc__js_delivered(s) == delivered);
    CHECK(svc__js_pending(s, "ORDERS", "payments") == pending);
    return 0;
}
