/* The subject scheme and the validation of NATS input (src/msg/subject.c). */
#include <stdlib.h>
#include <string.h>

#include "msg/internal.h"
#include "../test.h"

static const char *subj(const char *service, const char *method, const char *pattern) {
    static char out[SVC_MSG_MAX_SUBJECT];
    int rc = svc__msg_route_subject(service, method, pattern, out, sizeof out);
    return rc == SVC_OK ? out : NULL;
}

TEST(route_subjects_follow_the_scheme) {
    CHECK_STR(subj("products", "GET", "/products/:id"), "svc.products.GET.products.{id}");
    CHECK_STR(subj("products", "GET", "/products"), "svc.products.GET.products");
    CHECK_STR(subj("products", "GET", "/"), "svc.products.GET");
    CHECK_STR(subj("x", "POST", "/a/b/c"), "svc.x.POST.a.b.c");
    CHECK_STR(subj("x", "GET", "/files/*rest"), "svc.x.GET.files.{*rest}");
    CHECK_STR(subj("x", "GET", "/a/"), "svc.x.GET.a.{}");
    CHECK_STR(subj("my-svc_2", "DELETE", "/u/:user_id/keys/:k"), "svc.my-svc_2.DELETE.u.{user_id}.keys.{k}");
}

TEST(route_segments_cannot_inject_subject_syntax) {
    /* Dots, wildcards, spaces, braces and '%' are percent-encoded. */
    CHECK_STR(subj("x", "GET", "/a.b"), "svc.x.GET.a%2Eb");
    CHECK_STR(subj("x", "GET", "/>/*x*/a b"), "svc.x.GET.%3E.{*x%2A}.a%20b");
    CHECK_STR(subj("x", "GET", "/{id}"), "svc.x.GET.%7Bid%7D");
    CHECK_STR(subj("x", "GET", "/50%"), "svc.x.GET.50%25");
    CHECK_STR(subj("x", "GET", "/:a.b"), "svc.x.GET.{a%2Eb}");
    CHECK_STR(subj("x", "GET", "/\xc3\xa9"), "svc.x.GET.%C3%A9");
    /* Every generated subject is a valid literal subject. */
    const char *patterns[] = {"/a.b", "/>/*x*/a b", "/:id", "/a/", "/\t\r\n", "/..", "/.", "/*", "/:"};
    for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++) {
        const char *s = subj("svc", "GET", patterns[i]);
        REQUIRE(s);
        CHECK_EQ(svc__msg_subject_check(s, 0), SVC_OK);
    }
}

TEST(route_subject_refuses_bad_names_and_small_buffers) {
    char out[16];
    CHECK_EQ(svc__msg_route_subject("a.b", "GET", "/x", out, sizeof out), SVC_EINVAL);
    CHECK_EQ(svc__msg_route_subject("", "GET", "/x", out, sizeof out), SVC_EINVAL);
    CHECK_EQ(svc__msg_route_subject("a", "get", "/x", out, sizeof out), SVC_EINVAL);
    CHECK_EQ(svc__msg_route_subject("a", "GET", "x", out, sizeof out), SVC_EINVAL);
    CHECK_EQ(svc__msg_route_subject("a", "GET", "/this/is/too/long", out, sizeof out), SVC_ERANGE);
    CHECK_EQ(svc__msg_route_subject("a", "GET", "/ok", out, sizeof out), SVC_OK);
    CHECK_STR(out, "svc.a.GET.ok");
}

TEST(endpoint_names_use_the_micro_alphabet) {
    char out[96];
    svc__msg_endpoint_name("GET", "/products/:id", out, sizeof out);
    CHECK_STR(out, "GET-products-_id");
    svc__msg_endpoint_name("GET", "/", out, sizeof out);
    CHECK_STR(out, "GET");
    svc__msg_endpoint_name("POST", "/a.b/*rest", out, sizeof out);
    CHECK_STR(out, "POST-a_b-_rest");
}

TEST(subject_check) {
    CHECK_EQ(svc__msg_subject_check("orders.created", 0), SVC_OK);
    CHECK_EQ(svc__msg_subject_check("a", 0), SVC_OK);
    CHECK_EQ(svc__msg_subject_check("", 0), SVC_EINVAL);
    CHECK_EQ(svc__msg_subject_check(NULL, 0), SVC_EINVAL);
    CHECK_EQ(svc__msg_subject_check("a..b", 0), SVC_EINVAL);
    CHECK_EQ(svc__msg_subject_check(".a", 0), SVC_EINVAL);
    CHECK_EQ(svc__msg_subject_check("a.", 0), SVC_EINVAL);
    CHECK_EQ(svc__msg_subject_check("a b", 0), SVC_EINVAL);
    CHECK_EQ(svc__msg_subject_check("a\tb", 0), SVC_EINVAL);
    CHECK_EQ(svc__msg_subject_check("a.\x80", 0), SVC_EINVAL);
    CHECK_EQ(svc__msg_subject_check("a.*", 0), SVC_EINVAL);
    CHECK_EQ(svc__msg_subject_check("a.>", 0), SVC_EINVAL);
    CHECK_EQ(svc__msg_subject_check("a.*", 1), SVC_OK);
    CHECK_EQ(svc__msg_subject_check("a.>", 1), SVC_OK);
    CHECK_EQ(svc__msg_subject_check("*.b.>", 1), SVC_OK);
    CHECK_EQ(svc__msg_subject_check("a.>.b", 1), SVC_EINVAL);
    CHECK_EQ(svc__msg_subject_check(">", 1), SVC_OK);
    CHECK_EQ(svc__msg_subject_check(">.a", 1), SVC_EINVAL);
    /* Inside a token, '*' and '>' are literal bytes, as for nats-server. */
    CHECK_EQ(svc__msg_subject_check("a.b*", 0), SVC_OK);
    CHECK_EQ(svc__msg_subject_check("a.{*rest}", 0), SVC_OK);
    CHECK_EQ(svc__msg_subject_check("a.>b", 0), SVC_OK);
    char big[SVC_MSG_MAX_SUBJECT + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_EQ(svc__msg_subject_check(big, 0), SVC_EINVAL);
    big[SVC_MSG_MAX_SUBJECT] = '\0';
    CHECK_EQ(svc__msg_subject_check(big, 0), SVC_OK);
}

static int path_ok(const char *p) { return svc__msg_path_check(p, strlen(p), 1024) == SVC_OK; }

TEST(svc_path_must_be_normalised) {
    CHECK(path_ok("/"));
    CHECK(path_ok("/products/7"));
    CHECK(path_ok("/products/"));
    CHECK(path_ok("/a/b%20c/%C3%A9"));
    CHECK(path_ok("/a.b/..c/.d/...")); /* dots inside a segment are fine */
    CHECK(path_ok("/a/b:c@d!$&'()*+,;=~_-"));
    CHECK(!path_ok(""));
    CHECK(!path_ok("a/b"));
    CHECK(!path_ok("/a//b"));
    CHECK(!path_ok("//"));
    CHECK(!path_ok("/a/./b"));
    CHECK(!path_ok("/a/../b"));
    CHECK(!path_ok("/.."));
    CHECK(!path_ok("/a/.."));
    CHECK(!path_ok("/a/%2e%2E/b"));
    CHECK(!path_ok("/a/.%2e"));
    CHECK(!path_ok("/a/%2E"));
    CHECK(!path_ok("/a%2Fb"));
    CHECK(!path_ok("/a%2fb"));
    CHECK(!path_ok("/a%00b"));
    CHECK(!path_ok("/a%0Ab"));
    CHECK(!path_ok("/a%7f"));
    CHECK(!path_ok("/a%"));
    CHECK(!path_ok("/a%2"));
    CHECK(!path_ok("/a%zz"));
    CHECK(!path_ok("/a b"));
    CHECK(!path_ok("/a?b"));
    CHECK(!path_ok("/a#b"));
    CHECK(!path_ok("/a\"b"));
    CHECK(!path_ok("/\xc3\xa9"));
    CHECK(!path_ok("/a\\b"));
    CHECK_EQ(svc__msg_path_check("/abc", 4, 3), SVC_EINVAL); /* over max */
    CHECK_EQ(svc__msg_path_check("/a\0b", 4, 100), SVC_EINVAL);
}

TEST(query_method_header_client_deadline) {
    CHECK_EQ(svc__msg_query_check("a=1&b=%20", 9, 100), SVC_OK);
    CHECK_EQ(svc__msg_query_check("", 0, 100), SVC_OK);
    CHECK_EQ(svc__msg_query_check("a b", 3, 100), SVC_EINVAL);
    CHECK_EQ(svc__msg_query_check("a#b", 3, 100), SVC_EINVAL);
    CHECK_EQ(svc__msg_query_check("a\x01", 2, 100), SVC_EINVAL);
    CHECK_EQ(svc__msg_query_check("abcd", 4, 3), SVC_EINVAL);
    CHECK_EQ(svc__msg_method_check("GET"), SVC_OK);
    CHECK_EQ(svc__msg_method_check("PROPFIND"), SVC_OK);
    CHECK_EQ(svc__msg_method_check("get"), SVC_EINVAL);
    CHECK_EQ(svc__msg_method_check(""), SVC_EINVAL);
    CHECK_EQ(svc__msg_method_check("GET "), SVC_EINVAL);
    CHECK_EQ(svc__msg_method_check("ABCDEFGHIJKLMNOPQ"), SVC_EINVAL);
    CHECK(svc__nats_header_name_ok("X-Request-Id"));
    CHECK(!svc__nats_header_name_ok("X Request"));
    CHECK(!svc__nats_header_name_ok("X:Y"));
    CHECK(!svc__nats_header_name_ok(""));
    CHECK(svc__msg_header_value_ok("Bearer a.b.c\tx"));
    CHECK(!svc__msg_header_value_ok("a\rb"));
    CHECK(!svc__msg_header_value_ok("a\x7f"));
    CHECK(svc__msg_client_ok("10.0.0.1"));
    CHECK(svc__msg_client_ok("[::1]"));
    CHECK(!svc__msg_client_ok("x\"}"));
    CHECK(!svc__msg_client_ok(""));
    CHECK(svc__msg_deadline_passed("1000", 2000));
    CHECK(!svc__msg_deadline_passed("3000", 2000));
    CHECK(!svc__msg_deadline_passed("soon", 2000));
    CHECK(!svc__msg_deadline_passed("-5", 2000));
    CHECK(!svc__msg_deadline_passed(NULL, 2000));
}

TEST(names_and_queues) {
    CHECK(svc__msg_name_ok("products"));
    CHECK(svc__msg_name_ok("a_b-C9"));
    CHECK(!svc__msg_name_ok("a.b"));
    CHECK(!svc__msg_name_ok("a b"));
    CHECK(!svc__msg_name_ok(""));
    CHECK(!svc__msg_name_ok(NULL));
    CHECK_EQ(svc__msg_queue_check("orders"), SVC_OK);
    CHECK_EQ(svc__msg_queue_check("a b"), SVC_EINVAL);
    CHECK_EQ(svc__msg_queue_check(""), SVC_EINVAL);
}

/* The delivery count and the consumer's pending messages in the reply
 * subject of a JetStream delivery (src/msg/jetstream.c); the pending count
 * is jetstream_consumer_pending_messages, only for the consumer named in
 * it. Anything else is not one. */
TEST(js_ack_subject_gives_delivered_and_pending) {
    const char *short_form = "$JS.ACK.ORDERS.payments.3.1042.997.1764900000000000000.25";
    CHECK_EQ(svc__js_delivered(short_form), 3);
    CHECK_EQ(svc__js_pending(short_form, "ORDERS", "payments"), 25);
    /* With <domain>.<account hash>, and the token at the end. */
    const char *long_form = "$JS.ACK.hub.ACCHASH.ORDERS.payments.1.7.7.1764900000000000000.0.r4nd0m";
    CHECK_EQ(svc__js_delivered(long_form), 1);
    CHECK_EQ(svc__js_pending(long_form, "ORDERS", "payments"), 0);
    CHECK_EQ(svc__js_pending("$JS.ACK.ORDERS.payments.1.7.7.1764900000000000000.999999999999999999", "ORDERS",
                             "payments"),
             999999999999999999LL);
    /* Another consumer's, or another stream's: not this one's to report. */
    CHECK_EQ(svc__js_pending(short_form, "ORDERS", "orders"), -1);
    CHECK_EQ(svc__js_pending(short_form, "ORDER", "payments"), -1);
    CHECK_EQ(svc__js_pending(short_form, "ORDERS", "payment"), -1);
    CHECK_EQ(svc__js_pending(long_form, "hub", "ACCHASH"), -1);
    const char *bad[] = {NULL, "", "_INBOX.x.y", "$JS.ACK.ORDERS.payments.1.7.7.17649",
                         "$JS.ACK.ORDERS.payments.1.7.7.1764900000000000000.-1",
                         "$JS.ACK.ORDERS.payments.1.7.7.1764900000000000000.",
                         "$JS.ACK.ORDERS.payments.1.7.7.1764900000000000000.1e3",
                         "$JS.ACK.ORDERS.payments.1.7.7.1764900000000000000.9999999999999999999",
                         "$JS.ACK.ORDERS.payments.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ(svc__js_pending(bad[i], "ORDERS", "payments"), -1);
    CHECK_EQ(svc__js_delivered("$JS.ACK.ORDERS.payments.x.7.7.1.0"), 0);
}
