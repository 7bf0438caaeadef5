/*
 * A minimal unit-test harness. Each tests/unit/<layer>/test_*.c becomes its own
 * binary, linked with test_main.c, which runs every TEST in file order, each in
 * a forked child with a timeout (so a crash or hang fails one test, not the
 * file), and prints "ok - name" / "not ok - name" lines and a closing tally
 * that tests/run.sh adds up.
 *
 *     TEST(parses_integers) {
 *         int64_t v;
 *         CHECK_EQ(svc_parse_i64("42", &v), SVC_OK);
 *         CHECK_EQ(v, 42);
 *     }
 */
#ifndef SVCKIT_TEST_H
#define SVCKIT_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The bound of a wait for something that should happen: generous, since a
 * shared machine running sanitizers can be very slow, and only reached when
 * the thing never happens (tests/README.md). */
#define TEST_WAIT_MS 30000

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);
void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
extern int test_failed;

#define TEST(name)                                                        \
    static void test_##name(void);                                        \
    __attribute__((constructor)) static void test_reg_##name(void) {      \
        test_register(#name, test_##name);                                \
    }                                                                     \
    static void test_##name(void)

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);   \
    } while (0)

#define CHECK_EQ(a, b)                                                    \
    do {                                                                  \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);   \
        if (check_a_ != check_b_)                                         \
            test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a,  \
                      #b, check_a_, check_b_);                            \
    } while (0)

#define CHECK_STR(a, b)                                                   \
    do {                                                                  \
        const char *check_a_ = (a), *check_b_ = (b);                      \
        if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0)    \
            test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"",  \
                      #a, #b, check_a_ ? check_a_ : "(null)",             \
                      check_b_ ? check_b_ : "(null)");                    \
    } while (0)

/* Stops the current test at once (after a failed precondition). */
#define REQUIRE(cond)                                                     \
    do {                                                                  \
        if (!(cond)) {                                                    \
            test_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);          \
            return;                                                       \
        }                                                                 \
    } while (0)

#endif
