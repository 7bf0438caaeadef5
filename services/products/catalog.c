/* The catalog in SQLite: schema, seed, and queries (all bound, never spliced). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "products.h"

const char *const product_fields[F_COUNT + 1] = {
    "id", "title", "description", "category", "brand", "price", "stock", "rating", "created_at", "updated_at", NULL,
};

static const svc_migration migrations[] = {
    {1, "create products",
     "CREATE TABLE products ("
     "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
     "  title TEXT NOT NULL,"
     "  description TEXT NOT NULL DEFAULT '',"
     "  category TEXT NOT NULL,"
     "  brand TEXT NOT NULL DEFAULT '',"
     "  price REAL NOT NULL CHECK (price >= 0),"
     "  stock INTEGER NOT NULL DEFAULT 0 CHECK (stock >= 0),"
     "  rating REAL NOT NULL DEFAULT 0 CHECK (rating BETWEEN 0 AND 5),"
     "  created_at TEXT NOT NULL,"
     "  updated_at TEXT NOT NULL);"
     "CREATE INDEX products_category ON products(category);", NULL},
    /* The ETag of a product (product_etag): moved by every write, so a write
     * checks If-Match against one column inside its transaction. */
    {2, "product versions", "ALTER TABLE products ADD COLUMN version INTEGER NOT NULL DEFAULT 1;", NULL},
    /* The checkout saga's reservations (stock.c), one per order. */
    {3, "stock reservations",
     "CREATE TABLE reservations ("
     "  order_id INTEGER PRIMARY KEY,"
     "  status TEXT NOT NULL CHECK (status IN ('reserved', 'rejected', 'released')),"
     "  reason TEXT,"
     "  created_at TEXT NOT NULL,"
     "  updated_at TEXT NOT NULL);"
     "CREATE TABLE reservation_lines ("
     "  order_id INTEGER NOT NULL REFERENCES reservations(order_id),"
     "  product_id INTEGER NOT NULL,"
     "  quantity INTEGER NOT NULL CHECK (quantity > 0),"
     "  PRIMARY KEY (order_id, product_id)) WITHOUT ROWID;", NULL},
};

int catalog_open(const char *data_dir, svc_db **out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/products.db", data_dir);
    return svc_db_open(path, migrations, sizeof migrations / sizeof migrations[0], out);
}

void catalog_now(char out[32]) { svc_time_rfc3339(svc_wall_ms(), out); }

/* ---- seed: a deterministic, DummyJSON-shaped catalog ---------------------- */

int catalog_seed_if_empty(svc_db *db) {
    static const char *categories[] = {"beauty", "fragrances", "furniture", "groceries", "home-decoration",
                                       "kitchen-accessories", "laptops", "smartphones", "sports-accessories",
                                       "sunglasses"};
    static const char *adjectives[] = {"Classic", "Essential", "Premium", "Compact", "Deluxe", "Everyday",
                                       "Vintage", "Modern", "Ultra", "Eco"};
    static const char *nouns[] = {"Lipstick", "Perfume", "Chair", "Honey", "Vase", "Knife Set", "Notebook",
                                  "Phone", "Football", "Aviators"};
    static const char *brands[] = {"Essence", "Glamour Beauty", "Annibale Colombo", "Furniture Co.",
                                   "Chic Cosmetics", "Velvet Touch", "Nail Couture", "Apple", "Samsung",
                                   "Oppo"};
    sqlite3_stmt *s = svc_db_prepare(db, "SELECT count(*) FROM products");
    if (!s || sqlite3_step(s) != SQLITE_ROW) return SVC_EIO;
    int64_t n = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (n > 0) return SVC_OK;
    if (svc_db_begin(db) != SVC_OK) return SVC_EIO;
    char now[32];
    catalog_now(now);
    for (int i = 0; i < PRODUCTS_SEED_COUNT; i++) {
        product p = {0};
        int c = i % 10, a = (i / 10) % 10;
        snprintf(p.title, sizeof p.title, "%s %s %d", adjectives[a], nouns[c], i / 100 + 1);
        snprintf(p.description, sizeof p.description,
                 "The %s %s from %s: a well-made item of the %s category.", adjectives[a], nouns[c],
                 brands[(i * 7) % 10], categories[c]);
        snprintf(p.category, sizeof p.category, "%s", categories[c]);
        snprintf(p.brand, sizeof p.brand, "%s", brands[(i * 7) % 10]);
        p.price = round((2.99 + (double)((i * 37) % 200) * 4.5) * 100) / 100;
        p.stock = (i * 53) % 150;
        p.rating = round((2.5 + (double)((i * 11) % 26) / 10.0) * 100) / 100;
        if (catalog_create(db, &p, NULL) != SVC_OK) {
            svc_db_rollback(db);
            return SVC_EIO;
        }
    }
    if (svc_db_commit(db) != SVC_OK) return SVC_EIO;
    svc_info("seeded the catalog with %d products", PRODUCTS_SEED_COUNT);
    return SVC_OK;
}

/* ---- reads ---------------------------------------------------------------- */

#define PRODUCT_COLUMNS \
    "id, title, description, category, brand, price, stock, rating, created_at, updated_at, version"

static void copy_text(char *dst, size_t n, sqlite3_stmt *s, int col) {
    const unsigned char *t = sqlite3_column_text(s, col);
    snprintf(dst, n, "%s", t ? (const char *)t : "");
}

static void row_to_product(sqlite3_stmt *s, product *p) {
    p->id = sqlite3_column_int64(s, 0);
    copy_text(p->title, sizeof p->title, s, 1);
    copy_text(p->description, sizeof p->description, s, 2);
    copy_text(p->category, sizeof p->category, s, 3);
    copy_text(p->brand, sizeof p->brand, s, 4);
    p->price = sqlite3_column_double(s, 5);
    p->stock = sqlite3_column_int64(s, 6);
    p->rating = sqlite3_column_double(s, 7);
    copy_text(p->created_at, sizeof p->created_at, s, 8);
    copy_text(p->updated_at, sizeof p->updated_at, s, 9);
    p->version = sqlite3_column_int64(s, 10);
}

void product_etag(const product *p, char out[PRODUCT_ETAG_MAX]) {
    snprintf(out, PRODUCT_ETAG_MAX, "\"p%lld-v%lld\"", (long long)p->id, (long long)p->version);
}

int64_t product_last_modified(const product *p) {
    struct tm tm = {0};
    if (sscanf(p->updated_at, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? -1 : (int64_t)t;
}

void product_write(svc_jw *w, const product *p, unsigned select) {
    svc_jw_obj_begin(w);
    product_write_fields(w, p, select);
    svc_jw_obj_end(w);
}

void product_write_fields(svc_jw *w, const product *p, unsigned select) {
    select |= 1u << F_ID;
    for (int f = 0; f < F_COUNT; f++) {
        if (!(select & (1u << f))) continue;
        svc_jw_key(w, product_fields[f]);
        switch (f) {
        case F_ID: svc_jw_i64(w, p->id); break;
        case F_TITLE: svc_jw_str(w, p->title); break;
        case F_DESCRIPTION: svc_jw_str(w, p->description); break;
        case F_CATEGORY: svc_jw_str(w, p->category); break;
        case F_BRAND: svc_jw_str(w, p->brand); break;
        case F_PRICE: svc_jw_f64(w, p->price); break;
        case F_STOCK: svc_jw_i64(w, p->stock); break;
        case F_RATING: svc_jw_f64(w, p->rating); break;
        case F_CREATED_AT: svc_jw_str(w, p->created_at); break;
        case F_UPDATED_AT: svc_jw_str(w, p->updated_at); break;
        }
    }
}

/*
 * One statement per filter kind. The sort column and direction are bound
 * numbers mapped through CASE, so no client text ever becomes SQL.
 * ?1 filter value, ?2 sort field, ?3 descending, ?4 limit, ?5 offset.
 */
#define ORDER_LIMIT                                                                                    \
    " ORDER BY"                                                                                        \
    " CASE WHEN ?3 = 0 THEN CASE ?2 WHEN 1 THEN title WHEN 2 THEN description WHEN 3 THEN category"    \
    "   WHEN 4 THEN brand WHEN 5 THEN price WHEN 6 THEN stock WHEN 7 THEN rating WHEN 8 THEN created_at" \
    "   WHEN 9 THEN updated_at ELSE id END END ASC,"                                                   \
    " CASE WHEN ?3 = 1 THEN CASE ?2 WHEN 1 THEN title WHEN 2 THEN description WHEN 3 THEN category"    \
    "   WHEN 4 THEN brand WHEN 5 THEN price WHEN 6 THEN stock WHEN 7 THEN rating WHEN 8 THEN created_at" \
    "   WHEN 9 THEN updated_at ELSE id END END DESC,"                                                  \
    " id ASC LIMIT ?4 OFFSET ?5"

#define SEARCH_WHERE                                                                                   \
    " WHERE title LIKE ?1 ESCAPE '\\' OR description LIKE ?1 ESCAPE '\\' OR brand LIKE ?1 ESCAPE '\\'" \
    " OR category LIKE ?1 ESCAPE '\\'"

static const char sql_list_all[] = "SELECT " PRODUCT_COLUMNS " FROM products WHERE ?1 IS NULL" ORDER_LIMIT;
static const char sql_count_all[] = "SELECT count(*) FROM products";
static const char sql_list_category[] = "SELECT " PRODUCT_COLUMNS " FROM products WHERE category = ?1" ORDER_LIMIT;
static const char sql_count_category[] = "SELECT count(*) FROM products WHERE category = ?1";
static const char sql_list_search[] = "SELECT " PRODUCT_COLUMNS " FROM products" SEARCH_WHERE ORDER_LIMIT;
static const char sql_count_search[] = "SELECT count(*) FROM products" SEARCH_WHERE;

/* %, _ and \ match themselves in a search, not as LIKE wildcards. */
static void like_pattern(const char *q, char *out, size_t n) {
    size_t j = 0;
    out[j++] = '%';
    for (; *q && j + 3 < n; q++) {
        if (*q == '%' || *q == '_' || *q == '\\') out[j++] = '\\';
        out[j++] = *q;
    }
    out[j++] = '%';
    out[j] = '\0';
}

int catalog_list(svc_db *db, const list_query *q, svc_jw *w) {
    const char *list_sql = sql_list_all, *count_sql = sql_count_all;
    char pattern[4 * PRODUCTS_MAX_QUERY + 8];
    const char *filter = NULL;
    if (q->search) {
        like_pattern(q->search, pattern, sizeof pattern);
        filter = pattern;
        list_sql = sql_list_search;
        count_sql = sql_count_search;
    } else if (q->category) {
        filter = q->category;
        list_sql = sql_list_category;
        count_sql = sql_count_category;
    }
    sqlite3_stmt *c = svc_db_prepare(db, count_sql);
    if (!c) return SVC_EIO;
    if (filter) sqlite3_bind_text(c, 1, filter, -1, SQLITE_STATIC);
    if (sqlite3_step(c) != SQLITE_ROW) {
        sqlite3_reset(c);
        return SVC_EIO;
    }
    int64_t total = sqlite3_column_int64(c, 0);
    sqlite3_reset(c);

    sqlite3_stmt *s = svc_db_prepare(db, list_sql);
    if (!s) return SVC_EIO;
    if (filter) sqlite3_bind_text(s, 1, filter, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, q->sort_field);
    sqlite3_bind_int(s, 3, q->desc);
    sqlite3_bind_int64(s, 4, q->limit);
    sqlite3_bind_int64(s, 5, q->skip);
    svc_jw_obj_begin(w);
    svc_jw_key(w, "products");
    svc_jw_arr_begin(w);
    int rc, count = 0;
    product p;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        row_to_product(s, &p);
        product_write(w, &p, q->select);
        count++;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return svc_db_status(rc);
    svc_jw_arr_end(w);
    svc_jw_key(w, "total"), svc_jw_i64(w, total);
    svc_jw_key(w, "skip"), svc_jw_i64(w, q->skip);
    svc_jw_key(w, "limit"), svc_jw_i64(w, count);
    svc_jw_obj_end(w);
    return SVC_OK;
}

int catalog_categories(svc_db *db, svc_jw *w) {
    sqlite3_stmt *s = svc_db_prepare(db, "SELECT DISTINCT category FROM products ORDER BY category");
    if (!s) return SVC_EIO;
    svc_jw_arr_begin(w);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *slug = (const char *)sqlite3_column_text(s, 0);
        char name[PRODUCTS_CATEGORY_MAX + 1], url[PRODUCTS_CATEGORY_MAX + 32];
        /* "home-decoration" -> "Home Decoration" */
        size_t i = 0;
        for (int up = 1; slug[i] && i < sizeof name - 1; i++) {
            char ch = slug[i] == '-' ? ' ' : slug[i];
            name[i] = up && ch >= 'a' && ch <= 'z' ? (char)(ch - 32) : ch;
            up = ch == ' ';
        }
        name[i] = '\0';
        snprintf(url, sizeof url, "/products/category/%s", slug);
        svc_jw_obj_begin(w);
        svc_jw_key(w, "slug"), svc_jw_str(w, slug);
        svc_jw_key(w, "name"), svc_jw_str(w, name);
        svc_jw_key(w, "url"), svc_jw_str(w, url);
        svc_jw_obj_end(w);
    }
    sqlite3_reset(s);
    svc_jw_arr_end(w);
    return rc == SQLITE_DONE ? SVC_OK : svc_db_status(rc);
}

int catalog_get(svc_db *db, int64_t id, product *p) {
    sqlite3_stmt *s = svc_db_prepare(db, "SELECT " PRODUCT_COLUMNS " FROM products WHERE id = ?1");
    if (!s) return SVC_EIO;
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) row_to_product(s, p);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW) return SVC_OK;
    return rc == SQLITE_DONE ? SVC_ENOTFOUND : svc_db_status(rc);
}

/* ---- writes (called on the thread pool) ----------------------------------- */

int catalog_create(svc_db *db, const product *in, product *out) {
    sqlite3_stmt *s = svc_db_prepare(
        db, "INSERT INTO products (title, description, category, brand, price, stock, rating, created_at,"
            " updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)");
    if (!s) return SVC_EIO;
    char now[32];
    catalog_now(now);
    sqlite3_bind_text(s, 1, in->title, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, in->description, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, in->category, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, in->brand, -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 5, in->price);
    sqlite3_bind_int64(s, 6, in->stock);
    sqlite3_bind_double(s, 7, in->rating);
    sqlite3_bind_text(s, 8, now, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return svc_db_status(rc);
    if (!out) return SVC_OK;
    return catalog_get(db, sqlite3_last_insert_rowid(svc_db_conn(db)), out);
}

/* Ends a write's transaction: commits after success, else rolls back. */
static int end_write(svc_db *db, int rc) {
    if (rc == SVC_OK) rc = svc_db_commit(db);
    if (rc != SVC_OK) svc_db_rollback(db);
    return rc;
}

/* The product as stored, then the caller's check, in the write's transaction:
 * nothing can change between the check and the write. */
static int begin_write(svc_db *db, int64_t id, catalog_check_fn check, void *ud, product *current) {
    if (svc_db_begin(db) != SVC_OK) return SVC_EAGAIN;
    int rc = catalog_get(db, id, current);
    if (rc == SVC_OK && check) rc = check(current, ud);
    return rc;
}

int catalog_update(svc_db *db, int64_t id, const product *in, unsigned set, catalog_check_fn check, void *ud,
                   product *out) {
    int rc = begin_write(db, id, check, ud, out);
    if (rc != SVC_OK) return end_write(db, rc);
    /* COALESCE keeps the stored value for every field the request left out. */
    sqlite3_stmt *s = svc_db_prepare(
        db, "UPDATE products SET title = COALESCE(?2, title), description = COALESCE(?3, description),"
            " category = COALESCE(?4, category), brand = COALESCE(?5, brand), price = COALESCE(?6, price),"
            " stock = COALESCE(?7, stock), rating = COALESCE(?8, rating), updated_at = ?9,"
            " version = version + 1 WHERE id = ?1");
    if (!s) return end_write(db, SVC_EIO);
    char now[32];
    catalog_now(now);
    sqlite3_bind_int64(s, 1, id);
    if (set & (1u << F_TITLE)) sqlite3_bind_text(s, 2, in->title, -1, SQLITE_STATIC);
    if (set & (1u << F_DESCRIPTION)) sqlite3_bind_text(s, 3, in->description, -1, SQLITE_STATIC);
    if (set & (1u << F_CATEGORY)) sqlite3_bind_text(s, 4, in->category, -1, SQLITE_STATIC);
    if (set & (1u << F_BRAND)) sqlite3_bind_text(s, 5, in->brand, -1, SQLITE_STATIC);
    if (set & (1u << F_PRICE)) sqlite3_bind_double(s, 6, in->price);
    if (set & (1u << F_STOCK)) sqlite3_bind_int64(s, 7, in->stock);
    if (set & (1u << F_RATING)) sqlite3_bind_double(s, 8, in->rating);
    sqlite3_bind_text(s, 9, now, -1, SQLITE_TRANSIENT);
    rc = svc_db_status(sqlite3_step(s));
    sqlite3_reset(s);
    if (rc == SVC_OK) rc = catalog_get(db, id, out);
    return end_write(db, rc);
}

int catalog_delete(svc_db *db, int64_t id, catalog_check_fn check, void *ud, product *out) {
    int rc = begin_write(db, id, check, ud, out);
    if (rc == SVC_OK) {
        sqlite3_stmt *s = svc_db_prepare(db, "DELETE FROM products WHERE id = ?1");
        if (!s) {
            rc = SVC_EIO;
        } else {
            sqlite3_bind_int64(s, 1, id);
            rc = svc_db_status(sqlite3_step(s));
            sqlite3_reset(s);
        }
    }
    return end_write(db, rc);
}
