/*
 * A database directory for tests and fuzz targets that run a service's or
 * the library's store code (a header: unit tests and fuzz targets are each
 * one .c file). tmpdb_remove deletes the SQLite file with its WAL and
 * shared-memory files, then the directory, so repeated runs leave nothing
 * under /tmp.
 */
#ifndef SVCKIT_TESTS_TMPDB_H
#define SVCKIT_TESTS_TMPDB_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Makes /tmp/svckit-<tag>-XXXXXX into dir (cap bytes). 0, or -1. */
static inline int tmpdb_dir(char *dir, size_t cap, const char *tag) {
    int n = snprintf(dir, cap, "/tmp/svckit-%s-XXXXXX", tag);
    return n > 0 && (size_t)n < cap && mkdtemp(dir) ? 0 : -1;
}

/* Removes dir/file, its -wal and -shm, then dir (once empty). */
static inline void tmpdb_remove(const char *dir, const char *file) {
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    char path[512];
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(path, sizeof path, "%s/%s%s", dir, file, suffixes[i]);
        unlink(path);
    }
    rmdir(dir);
}

#endif
