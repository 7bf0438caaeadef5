/* Small helpers of src/core/util.c: FNV-1a and RFC 3339 timestamps. */
#include <stdlib.h>
#include <time.h>

#include "../test.h"
#include "core/internal.h"

TEST(fnv1a_matches_the_reference_vectors) {
    /* From the FNV reference test suite (64-bit FNV-1a). */
    CHECK(svc__fnv1a("", 0, SVC__FNV1A_SEED) == 0xcbf29ce484222325ull);
    CHECK(svc__fnv1a(NULL, 0, SVC__FNV1A_SEED) == 0xcbf29ce484222325ull);
    CHECK(svc__fnv1a("a", 1, SVC__FNV1A_SEED) == 0xaf63dc4c8601ec8cull);
    CHECK(svc__fnv1a("foobar", 6, SVC__FNV1A_SEED) == 0x85944171f73967e8ull);
    /* Bytes past 0x7f count as unsigned, and a NUL is a byte like any other. */
    CHECK(svc__fnv1a("\xff", 1, SVC__FNV1A_SEED) == ((0xcbf29ce484222325ull ^ 0xffu) * 0x100000001b3ull));
    CHECK(svc__fnv1a("a\0b", 3, SVC__FNV1A_SEED) != svc__fnv1a("a", 1, SVC__FNV1A_SEED));
}

TEST(fnv1a_continues_from_an_earlier_result) {
    uint64_t h = svc__fnv1a("foo", 3, SVC__FNV1A_SEED);
    CHECK(svc__fnv1a("bar", 3, h) == svc__fnv1a("foobar", 6, SVC__FNV1A_SEED));
}

TEST(rfc3339_formats_utc_with_milliseconds) {
    char out[SVC_TIME_RFC3339_MAX];
    CHECK_EQ(svc_time_rfc3339(0, out), 24);
    CHECK_STR(out, "1970-01-01T00:00:00.000Z");
    CHECK_EQ(svc_time_rfc3339(1795663020123, out), 24);
    CHECK_STR(out, "2026-11-26T03:17:00.123Z");
    CHECK_EQ(svc_time_rfc3339(951782400999, out), 24); /* a leap day */
    CHECK_STR(out, "2000-02-29T00:00:00.999Z");
    CHECK_EQ(svc_time_rfc3339(253402300799999, out), 24);
    CHECK_STR(out, "9999-12-31T23:59:59.999Z");
    /* Before 1970 the milliseconds still count forwards within their second. */
    CHECK_EQ(svc_time_rfc3339(-1, out), 24);
    CHECK_STR(out, "1969-12-31T23:59:59.999Z");
    CHECK_EQ(svc_time_rfc3339(-1000, out), 24);
    CHECK_STR(out, "1969-12-31T23:59:59.000Z");
    /* Beyond year 9999: more digits, still terminated within the buffer. */
    CHECK_EQ(svc_time_rfc3339(253402300800000, out), 25);
    CHECK_STR(out, "10000-01-01T00:00:00.000Z");
    size_t n = svc_time_rfc3339(INT64_MAX, out);
    CHECK(n == 0 || (n < SVC_TIME_RFC3339_MAX && strlen(out) == n));
    n = svc_time_rfc3339(INT64_MIN, out);
    CHECK(n == 0 || (n < SVC_TIME_RFC3339_MAX && strlen(out) == n));
}

TEST(rfc3339_agrees_with_strftime) {
    char out[SVC_TIME_RFC3339_MAX], want[64];
    srand(7);
    for (int i = 0; i < 10000; i++) {
        int64_t ms = ((int64_t)rand() << 20 ^ rand()) % 253402300800000;
        time_t s = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&s, &tm);
        size_t k = strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(want + k, sizeof want - k, ".%03dZ", (int)(ms % 1000));
        svc_time_rfc3339(ms, out);
        if (tm.tm_year + 1900 >= 1000 && strcmp(out, want) != 0)
            test_fail(__FILE__, __LINE__, "%lld: \"%s\", strftime \"%s\"", (long long)ms, out, want);
    }
}
