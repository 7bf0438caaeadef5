/* The hand formatters of core/internal.h against the printf formats they replace. */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#include "../test.h"
#include "core/internal.h"

static void check_fixed(double v, int d) {
    char want[512], got[SVC__FMT_FIXED_MAX];
    snprintf(want, sizeof want, "%.*f", d, v);
    size_t n = svc__fmt_fixed(got, v, d);
    if (n == 0) {
        /* Left to printf: only what the contract says. */
        int ok = isnan(v) || isinf(v) || fabs(v) * pow(10, d) >= 18446744073709551615.0 * 0.999;
        if (!ok) test_fail(__FILE__, __LINE__, "%.17g with %d decimals refused", v, d);
        return;
    }
    if (n != strlen(got) || strcmp(want, got) != 0)
        test_fail(__FILE__, __LINE__, "%.17g %%.%df: printf \"%s\", got \"%s\"", v, d, want, got);
}

TEST(fixed_matches_printf_on_edges) {
    static const double vals[] = {
        0.0, -0.0, 1.0, -1.0, 0.5, 1.5, 2.5, 0.0625, 0.1875, 0.3125, 0.4375, 1.0625, 2.0625,
        0.0005, 0.0015, 0.0025, 0.00049999999999999, 0.00050000000000001, 0.9995, 0.9994999, 0.9999999,
        9.9995, 99.9995, 999.9995, 1e-300, -1e-300, 5e-324, -5e-324, DBL_MIN, 123.456, 1234567.891,
        0.001, 0.002, 0.003, 0.125, 0.375, 1e9, 1e12, 1e15, 1.8e16, 1.9e16, 9.2e18, 1.8e19, 1e20,
        1e300, -1e300, DBL_MAX, -DBL_MAX, 4503599627370496.5, 9007199254740993.0,
    };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        for (int d = 0; d <= 9; d++) check_fixed(vals[i], d);
}

TEST(fixed_rounds_ties_to_even_like_printf) {
    /* Exact binary ties at the 4th decimal: k/16 for odd k. */
    for (int k = 1; k < 4000; k += 2) {
        check_fixed(k / 16.0, 3);
        check_fixed(-k / 16.0, 3);
        check_fixed(k / 8.0, 2);
        check_fixed(k / 2.0, 0);
    }
}

TEST(fixed_matches_printf_on_durations) {
    /* What the access log prints: seconds * 1e3 from nanosecond clocks. */
    for (uint64_t ns = 0; ns < 3000000; ns += 997) {
        double ms = (double)ns / 1e9 * 1e3;
        check_fixed(ms, 3);
        check_fixed(ms, 2);
    }
    srand(7);
    for (int i = 0; i < 200000; i++) {
        uint64_t ns = ((uint64_t)rand() << 20) ^ (uint64_t)rand();
        double ms = (double)ns / 1e9 * 1e3;
        check_fixed(ms, 3);
        check_fixed(ms, 2);
        uint64_t bits = ((uint64_t)rand() << 42) ^ ((uint64_t)rand() << 21) ^ (uint64_t)rand();
        double any;
        memcpy(&any, &bits, sizeof any);
        check_fixed(any, i % 10);
    }
}

TEST(fixed_refuses_what_printf_must_do) {
    char out[SVC__FMT_FIXED_MAX];
    CHECK_EQ(svc__fmt_fixed(out, NAN, 3), 0);
    CHECK_EQ(svc__fmt_fixed(out, INFINITY, 3), 0);
    CHECK_EQ(svc__fmt_fixed(out, -INFINITY, 3), 0);
    CHECK_EQ(svc__fmt_fixed(out, 1.0, -1), 0);
    CHECK_EQ(svc__fmt_fixed(out, 1.0, 10), 0);
    CHECK_EQ(svc__fmt_fixed(out, 1e300, 3), 0);
    /* The largest result that fits, and its length bound. */
    CHECK(svc__fmt_fixed(out, -1.8e10, 9) > 0);
    CHECK(strlen(out) < SVC__FMT_FIXED_MAX);
}

TEST(buf_put_fixed_falls_back_to_printf) {
    svc_buf b = {0};
    svc__buf_put_fixed(&b, 1e300, 3);
    char want[512];
    snprintf(want, sizeof want, "%.3f", 1e300);
    CHECK_STR(b.data, want);
    svc_buf_reset(&b);
    svc__buf_put_fixed(&b, NAN, 3);
    CHECK_STR(b.data, "nan");
    svc_buf_reset(&b);
    svc__buf_put_fixed(&b, 12.3456, 3);
    svc_buf_putc(&b, '|');
    svc__buf_put_fixed(&b, -0.0004, 3);
    CHECK_STR(b.data, "12.346|-0.000");
    svc_buf_free(&b);
}

TEST(integers_match_printf) {
    static const int64_t vals[] = {0, 1, -1, 9, 10, -10, 99, 100, 12345, -12345, INT32_MAX, INT32_MIN,
                                   (int64_t)INT32_MAX + 1, INT64_MAX, INT64_MIN, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        char want[32], got[21];
        snprintf(want, sizeof want, "%" PRId64, vals[i]);
        CHECK_EQ(svc__fmt_i64(got, vals[i]), strlen(want));
        CHECK_STR(got, want);
        snprintf(want, sizeof want, "%" PRIu64, (uint64_t)vals[i]);
        CHECK_EQ(svc__fmt_u64(got, (uint64_t)vals[i]), strlen(want));
        CHECK_STR(got, want);
    }
    char got[21];
    CHECK_EQ(svc__fmt_u64(got, UINT64_MAX), 20);
    CHECK_STR(got, "18446744073709551615");
}

TEST(hex_matches_printf) {
    static const uint64_t vals[] = {0, 1, 0xf, 0x10, 0xabc, 0xffffffff, 0x100000000, 0x0123456789abcdef,
                                    UINT64_MAX, UINT64_MAX >> 4};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        for (int w = 0; w <= 16; w++) {
            char want[40], got[17];
            snprintf(want, sizeof want, "%0*" PRIx64, w, vals[i]);
            CHECK_EQ(svc__fmt_hex64(got, vals[i], w), strlen(want));
            CHECK_STR(got, want);
        }
    }
    svc_buf b = {0};
    svc_buf_puts(&b, "id-");
    svc__buf_put_hex64(&b, 0x2a, 8);
    CHECK_STR(b.data, "id-0000002a");
    svc_buf_free(&b);
}

TEST(buf_append_grows_and_stays_terminated) {
    svc_buf b = {0};
    for (int i = 0; i < 1000; i++) svc_buf_append(&b, "abc", 3);
    CHECK_EQ(b.len, 3000);
    CHECK_EQ(b.data[3000], '\0');
    CHECK(b.cap > b.len);
    svc_buf_append(&b, "", 0);
    CHECK_EQ(b.len, 3000);
    svc_buf_free(&b);
}
