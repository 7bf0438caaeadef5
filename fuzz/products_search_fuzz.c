/*
 * Fuzzes products' search words (services/products/words.c, included here:
 * the Makefile links a fuzz target with the library only): any q, as the
 * client sent it, to an FTS5 and a tsquery expression.
 *
 * Besides the sanitizers it checks, on every input:
 *
 *  1. The expression of a q of at most PRODUCTS_MAX_QUERY bytes fits
 *     SEARCH_WORDS_MAX; a longer one fits or is refused (-1), never overflows.
 *  2. Every byte of q outside a word is absent from both expressions' words:
 *     the FTS5 one is only "word"* terms, the tsquery one 'word':* joined by &.
 *  3. SQLite's FTS5 accepts the expression as a MATCH (no syntax error: a
 *     search can never be a 500), on an in-memory table.
 */
#include <sqlite3.h>
#include <stdint.h>
#include <string.h>

#include "../services/products/words.c"

#include "fuzz_util.h"

static sqlite3_stmt *match_stmt(void) {
    static sqlite3 *db;
    static sqlite3_stmt *s;
    if (!s) {
        CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db, "CREATE VIRTUAL TABLE t USING fts5(a, b); INSERT INTO t VALUES ('classic', 'x y');",
                           NULL, NULL, NULL) == SQLITE_OK);
        CHECK(sqlite3_prepare_v2(db, "SELECT count(*) FROM t WHERE t MATCH ?1", -1, &s, NULL) == SQLITE_OK);
    }
    return s;
}

/* out is n words, each open + word bytes + close, separated by sep. */
static void check_shape(const char *out, int n, const char *sep, const char *open, const char *close) {
    const char *p = out;
    for (int i = 0; i < n; i++) {
        if (i) {
            CHECK(strncmp(p, sep, strlen(sep)) == 0);
            p += strlen(sep);
        }
        CHECK(strncmp(p, open, strlen(open)) == 0);
        p += strlen(open);
        size_t len = 0;
        while (p[len] && word_byte((unsigned char)p[len])) len++;
        CHECK(len > 0);
        p += len;
        CHECK(strncmp(p, close, strlen(close)) == 0);
        p += strlen(close);
    }
    CHECK(*p == '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char q[4 * PRODUCTS_MAX_QUERY + 1];
    if (size >= sizeof q) size = sizeof q - 1;
    memcpy(q, data, size);
    q[size] = '\0';
    char out[SEARCH_WORDS_MAX];
    int n = search_words(q, false, out, sizeof out);
    CHECK(n >= -1);
    if (strlen(q) <= PRODUCTS_MAX_QUERY) CHECK(n >= 0);
    if (n < 0) return 0;
    check_shape(out, n, " ", "\"", "\"*");
    if (n > 0) {
        sqlite3_stmt *s = match_stmt();
        sqlite3_bind_text(s, 1, out, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        CHECK(rc == SQLITE_ROW);
        sqlite3_reset(s);
    }
    int m = search_words(q, true, out, sizeof out);
    if (m >= 0) {
        CHECK(m == n);
        check_shape(out, m, " & ", "'", "':*");
    }
    return 0;
}
