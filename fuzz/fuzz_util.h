/*
 * Shared by the fuzz targets (a header, not a .c: the Makefile links each
 * fuzz/<name>_fuzz.c with fuzz/replay.c only).
 *
 * CHECK(c): an invariant of the code under test; when it does not hold,
 * says which and aborts, so that libFuzzer and the corpus replayer both
 * report the input as a crash.
 */
#ifndef SVC_FUZZ_UTIL_H
#define SVC_FUZZ_UTIL_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(c)                                                                      \
    do {                                                                              \
        if (!(c)) {                                                                   \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                                  \
        }                                                                             \
    } while (0)

#endif
