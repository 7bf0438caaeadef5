/*
 * The words of a search (q), as a full-text query: SQLite FTS5 or
 * PostgreSQL tsquery. Pure string work on client bytes, kept apart so the
 * unit test and the fuzz target include it alone.
 */
#include <stdbool.h>
#include <string.h>

#include "products.h"

/* A word is a run of ASCII letters and digits and of non-ASCII bytes (the
 * full-text tokenizers split those further by their own Unicode rules);
 * everything else separates words, so no client byte is FTS or tsquery
 * syntax: quotes, *, :, &, |, (, ), - and ^ never reach the expression. */
static bool word_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

int search_words(const char *q, bool pg, char *out, size_t n) {
    size_t j = 0;
    int words = 0;
    out[0] = '\0';
    for (const char *p = q; *p;) {
        if (!word_byte((unsigned char)*p)) {
            p++;
            continue;
        }
        size_t len = 0;
        while (p[len] && word_byte((unsigned char)p[len])) len++;
        /* FTS5: "word"* (terms side by side must all match); tsquery:
         * 'word':* joined by &. */
        const char *sep = words == 0 ? "" : pg ? " & " : " ";
        const char *open = pg ? "'" : "\"", *close = pg ? "':*" : "\"*";
        size_t need = strlen(sep) + strlen(open) + len + strlen(close);
        if (j + need >= n) return -1;
        char *end = stpcpy(stpcpy(out + j, sep), open);
        memcpy(end, p, len);
        end = stpcpy(end + len, close);
        j = (size_t)(end - out);
        words++;
        p += len;
    }
    return words;
}
