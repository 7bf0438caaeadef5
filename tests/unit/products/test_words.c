/* products' search words (services/products/words.c): client text to a
 * full-text query of FTS5 or PostgreSQL, never its syntax. */
#include "../../../services/products/words.c"
#include "../test.h"

static const char *fts(const char *q) {
    static char out[SEARCH_WORDS_MAX];
    return search_words(q, false, out, sizeof out) >= 0 ? out : "(too small)";
}

static const char *tsq(const char *q) {
    static char out[SEARCH_WORDS_MAX];
    return search_words(q, true, out, sizeof out) >= 0 ? out : "(too small)";
}

TEST(words_become_prefixes_all_required) {
    CHECK_STR(fts("phone"), "\"phone\"*");
    CHECK_STR(fts("classic-notebook"), "\"classic\"* \"notebook\"*");
    CHECK_STR(tsq("classic-notebook"), "'classic':* & 'notebook':*");
    CHECK_STR(fts("  Ultra   Aviators 7 "), "\"Ultra\"* \"Aviators\"* \"7\"*");
    CHECK_STR(fts("caf\xc3\xa9 cr\xc3\xa8me"), "\"caf\xc3\xa9\"* \"cr\xc3\xa8me\"*");
}

TEST(punctuation_separates_and_never_reaches_the_query) {
    /* FTS5 and tsquery syntax: quotes, operators, columns, groups. */
    CHECK_STR(fts("\"x\" OR y*"), "\"x\"* \"OR\"* \"y\"*");
    CHECK_STR(fts("title:x NEAR(a b) ^c -d +e"), "\"title\"* \"x\"* \"NEAR\"* \"a\"* \"b\"* \"c\"* \"d\"* \"e\"*");
    CHECK_STR(tsq("a'b & !c | (d:*) <-> e\\"), "'a':* & 'b':* & 'c':* & 'd':* & 'e':*");
    CHECK_STR(fts("100% cotton_x"), "\"100\"* \"cotton\"* \"x\"*");
}

TEST(no_words_is_an_empty_query) {
    char out[8] = "junk";
    CHECK_EQ(search_words("", false, out, sizeof out), 0);
    CHECK_STR(out, "");
    CHECK_EQ(search_words("%_ -- '\" *:()", true, out, sizeof out), 0);
    CHECK_STR(out, "");
}

TEST(the_buffer_holds_any_query_and_refuses_to_overflow) {
    /* The worst q: one-byte words, as many as PRODUCTS_MAX_QUERY allows. */
    char q[PRODUCTS_MAX_QUERY + 1], out[SEARCH_WORDS_MAX];
    for (int i = 0; i < PRODUCTS_MAX_QUERY; i++) q[i] = i % 2 ? ' ' : 'a';
    q[PRODUCTS_MAX_QUERY] = '\0';
    CHECK_EQ(search_words(q, true, out, sizeof out), PRODUCTS_MAX_QUERY / 2);
    CHECK_EQ(search_words(q, false, out, sizeof out), PRODUCTS_MAX_QUERY / 2);
    char small[12];
    CHECK_EQ(search_words("abc def", false, small, sizeof small), -1);   /* "abc"* "def"* is 14 bytes */
    CHECK_EQ(search_words("abcdef", false, small, sizeof small), 1);
    CHECK_STR(small, "\"abcdef\"*");
}
