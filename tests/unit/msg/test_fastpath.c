/* The hot-path forms of NATS header checks and building (src/msg/subject.c,
 * src/net/nats.c) against the plain definitions they replace. */
#include <stdlib.h>
#include <string.h>

#include "msg/internal.h"
#include "../test.h"

/* The definition: no control byte but tab, no DEL. */
static int value_ok_ref(const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\t') || c == 0x7f) return 0;
    }
    return 1;
}

TEST(header_value_check_finds_every_bad_byte_at_every_position) {
    char s[80];
    for (size_t len = 1; len < sizeof s; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            for (int bad = 1; bad < 256; bad++) {
                memset(s, 'a', len);
                s[len] = '\0';
                s[pos] = (char)bad;
                if (svc__msg_header_value_ok(s) != value_ok_ref(s))
                    test_fail(__FILE__, __LINE__, "len %zu pos %zu byte 0x%02x", len, pos, bad);
            }
        }
    }
}

TEST(header_value_check_accepts_tabs_and_high_bytes) {
    CHECK(svc__msg_header_value_ok(""));
    CHECK(svc__msg_header_value_ok("\t\t\t\t\t\t\t\t\t\tx"));
    CHECK(svc__msg_header_value_ok("\x80\x81\xfe\xff\x80\x81\xfe\xff\x80 caf\xc3\xa9"));
    CHECK(svc__msg_header_value_ok("Bearer eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdmNraXQtYXV0aCJ9.sig"));
    CHECK(!svc__msg_header_value_ok("Bearer eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9\r\nX-Evil: 1"));
    CHECK(!svc__msg_header_value_ok("aaaaaaa\x1f"));
    CHECK(!svc__msg_header_value_ok("aaaaaaaa\x7f"));
    CHECK(!svc__msg_header_value_ok(NULL));
    /* Bytes next to the flagged ranges in every lane: no false refusals. */
    char s[64];
    for (int c = 0x20; c < 0x7f; c++) {
        memset(s, c, sizeof s - 1);
        s[sizeof s - 1] = '\0';
        CHECK(svc__msg_header_value_ok(s));
    }
}

TEST(header_blocks_are_built_like_before) {
    svc_buf b = {0};
    svc__nats_hdr_begin(&b);
    CHECK_EQ(svc__nats_hdr_add(&b, "Svc-Status", "200"), SVC_OK);
    CHECK_EQ(svc__nats_hdr_add(&b, "X-Empty", ""), SVC_OK);
    svc__nats_hdr_put(&b, "Svc-Path", 8, "/a/bXX", 4);
    CHECK_EQ(svc__nats_hdr_add(&b, "Bad Name", "v"), SVC_EINVAL);
    CHECK_EQ(svc__nats_hdr_add(&b, "Bad:Name", "v"), SVC_EINVAL);
    CHECK_EQ(svc__nats_hdr_add(&b, "", "v"), SVC_EINVAL);
    CHECK_EQ(svc__nats_hdr_add(&b, "X", "a\rb"), SVC_EINVAL);
    CHECK_EQ(svc__nats_hdr_add(&b, "X", "a\nb"), SVC_EINVAL);
    CHECK_EQ(svc__nats_hdr_add(&b, "!#$%&'*+-.^_`|~09azAZ", "\t v \x01"), SVC_OK);
    svc__nats_hdr_end(&b);
    CHECK_STR(b.data, "NATS/1.0\r\nSvc-Status: 200\r\nX-Empty: \r\nSvc-Path: /a/b\r\n"
                      "!#$%&'*+-.^_`|~09azAZ: \t v \x01\r\n\r\n");
    CHECK_EQ(b.len, strlen(b.data));
    svc_buf_free(&b);
}

TEST(message_header_lookup_compares_names_of_the_same_length_only) {
    const char h[] = "NATS/1.0\r\nSvc-Status: 200\r\nSvc-Statu: x\r\nSVC-STATUS: 201\r\nA: 1\r\nAB: 2\r\n\r\n";
    svc_nats_msg *m = NULL;
    REQUIRE(svc__nats_msg_new("s", 1, NULL, 0, h, strlen(h), "", 0, &m) == SVC_OK);
    CHECK_EQ(m->nhdrs, 5);
    CHECK_STR(svc__nats_msg_header(m, "svc-status"), "200");
    CHECK_STR(svc__nats_msg_header(m, "svc-statu"), "x");
    CHECK_STR(svc__nats_msg_header(m, "a"), "1");
    CHECK_STR(svc__nats_msg_header(m, "ab"), "2");
    CHECK(svc__nats_msg_header(m, "svc-status-") == NULL);
    CHECK(svc__nats_msg_header(m, "") == NULL);
    for (size_t i = 0; i < m->nhdrs; i++) CHECK_EQ(m->name_lens[i], strlen(m->names[i]));
    svc__nats_msg_free(m);
}

TEST(message_header_count_bound_holds_with_many_lines) {
    /* SVC_NATS_MAX_HEADERS fields are parsed; one more is malformed. */
    svc_buf b = {0};
    svc__nats_hdr_begin(&b);
    for (int i = 0; i < SVC_NATS_MAX_HEADERS; i++) svc__nats_hdr_add(&b, "K", "v");
    svc__nats_hdr_end(&b);
    svc_nats_msg *m = NULL;
    REQUIRE(svc__nats_msg_new("s", 1, NULL, 0, b.data, b.len, "", 0, &m) == SVC_OK);
    CHECK_EQ(m->nhdrs, SVC_NATS_MAX_HEADERS);
    svc__nats_msg_free(m);
    b.len -= 2; /* drop the final CRLF, add one more field */
    svc__nats_hdr_add(&b, "K", "v");
    svc__nats_hdr_end(&b);
    CHECK_EQ(svc__nats_msg_new("s", 1, NULL, 0, b.data, b.len, "", 0, &m), SVC_EINVAL);
    svc_buf_free(&b);
}
