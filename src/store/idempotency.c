/*
 * Idempotency keys for HTTP handlers: a client retries a POST with the same
 * Idempotency-Key and gets the first attempt's response, never a second
 * effect. A key is bound to its request by SHA-256(method, path, body), so a
 * reused key with another request is a conflict, not a replay.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/internal.h"

bool svc_db_idem_key_valid(const char *key) {
    if (!key) return false;
    size_t n = 0;
    for (; key[n] && n <= SVC_DB_IDEM_KEY_MAX; n++)
        if ((unsigned char)key[n] < 0x20 || (unsigned char)key[n] > 0x7e) return false;
    return n > 0 && n <= SVC_DB_IDEM_KEY_MAX;
}

static bool scope_valid(const char *scope) {
    if (!scope) return false;
    size_t n = strnlen(scope, SVC_DB_IDEM_SCOPE_MAX + 1);
    return n > 0 && n <= SVC_DB_IDEM_SCOPE_MAX;
}

static void request_hash(unsigned char out[crypto_hash_sha256_BYTES], const char *method, const char *path,
                         const void *body, size_t len) {
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    /* NUL separators: ("GET", "/ab") and ("GETa", "/b")... hash apart. */
    crypto_hash_sha256_update(&st, (const unsigned char *)method, strlen(method) + 1);
    crypto_hash_sha256_update(&st, (const unsigned char *)path, strlen(path) + 1);
    if (len) crypto_hash_sha256_update(&st, body, len);
    crypto_hash_sha256_final(&st, out);
}

static char *dup_column(sqlite3_stmt *s, int col, size_t *len) {
    const void *p = sqlite3_column_blob(s, col);
    size_t n = (size_t)sqlite3_column_bytes(s, col);
    if (len) *len = n;
    char *out = malloc(n + 1);
    if (!out) return NULL;
    if (n) memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

static int claim(svc_db *db, const char *scope, const char *key, const unsigned char *hash, int64_t now) {
    sqlite3_stmt *s = svc_db_prepare(db, "INSERT OR REPLACE INTO svc_idempotency "
                                         "(scope, key, request_hash, status, headers, body, created_at) "
                                         "VALUES (?1, ?2, ?3, 0, NULL, NULL, ?4)");
    if (!s) return SVC_EIO;
    sqlite3_bind_text(s, 1, scope, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, hash, crypto_hash_sha256_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, now);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SVC_DB_IDEM_NEW : svc_db_status(rc);
}

/* What the key holds for this request: NEW (no row), REPLAY (*out filled),
 * CONFLICT, IN_PROGRESS, EXPIRED (held longer than the lease), or an error. */
enum { IDEM_EXPIRED = -100 };
static int read_key(svc_db *db, const char *scope, const char *key, const unsigned char *hash, int64_t now,
                    svc_db_idem_response *out) {
    sqlite3_stmt *s = svc_db_prepare(db, "SELECT request_hash, status, headers, body, created_at "
                                         "FROM svc_idempotency WHERE scope = ?1 AND key = ?2");
    if (!s) return SVC_EIO;
    sqlite3_bind_text(s, 1, scope, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int result;
    int status = rc == SQLITE_ROW ? sqlite3_column_int(s, 1) : 0;
    if (rc != SQLITE_ROW) {
        result = rc == SQLITE_DONE ? SVC_DB_IDEM_NEW : svc_db_status(rc);
    } else if (sqlite3_column_bytes(s, 0) != crypto_hash_sha256_BYTES ||
               sodium_memcmp(sqlite3_column_blob(s, 0), hash, crypto_hash_sha256_BYTES) != 0) {
        result = SVC_DB_IDEM_CONFLICT;
    } else if (status == 0) {
        result = sqlite3_column_int64(s, 4) < now - SVC_DB_IDEM_LEASE_S ? IDEM_EXPIRED : SVC_DB_IDEM_IN_PROGRESS;
    } else {
        out->status = status;
        out->headers = sqlite3_column_type(s, 2) == SQLITE_NULL ? NULL : dup_column(s, 2, NULL);
        out->body = dup_column(s, 3, &out->len);
        result = !out->body || (sqlite3_column_type(s, 2) != SQLITE_NULL && !out->headers) ? SVC_ENOMEM
                                                                                           : SVC_DB_IDEM_REPLAY;
        if (result != SVC_DB_IDEM_REPLAY) svc_db_idem_response_free(out);
    }
    sqlite3_reset(s);
    return result;
}

static bool request_valid(const char *scope, const char *key, const char *method, const char *path,
                          const void *body, size_t len) {
    return scope_valid(scope) && svc_db_idem_key_valid(key) && method && path && (body || !len);
}

int svc_db_idem_check(svc_db *db, const char *scope, const char *key, const char *method, const char *path,
                      const void *body, size_t len, svc_db_idem_response *out) {
    memset(out, 0, sizeof *out);
    if (!request_valid(scope, key, method, path, body, len) || !svc_db_in_transaction(db)) return SVC_EINVAL;
    unsigned char hash[crypto_hash_sha256_BYTES];
    request_hash(hash, method, path, body, len);
    int64_t now = (int64_t)time(NULL);
    int rc = read_key(db, scope, key, hash, now, out);
    if (rc == IDEM_EXPIRED)
        svc_warn("idempotency key %s/%s held longer than %d s: taken over", scope, key, SVC_DB_IDEM_LEASE_S);
    return rc == SVC_DB_IDEM_NEW || rc == IDEM_EXPIRED ? claim(db, scope, key, hash, now) : rc;
}

int svc_db_idem_lookup(svc_db *db, const char *scope, const char *key, const char *method, const char *path,
                       const void *body, size_t len, svc_db_idem_response *out) {
    memset(out, 0, sizeof *out);
    if (!db || !request_valid(scope, key, method, path, body, len)) return SVC_EINVAL;
    unsigned char hash[crypto_hash_sha256_BYTES];
    request_hash(hash, method, path, body, len);
    int rc = read_key(db, scope, key, hash, (int64_t)time(NULL), out);
    return rc == IDEM_EXPIRED ? SVC_DB_IDEM_NEW : rc;
}

int svc_db_idem_store(svc_db *db, const char *scope, const char *key, int status, const char *headers,
                      const void *body, size_t len) {
    if (!scope_valid(scope) || !svc_db_idem_key_valid(key) || status < 100 || status > 599 || (len && !body))
        return SVC_EINVAL;
    if (len > SVC_DB_IDEM_BODY_MAX) return SVC_ERANGE;
    sqlite3_stmt *s = svc_db_prepare(db, "UPDATE svc_idempotency SET status = ?3, headers = ?4, body = ?5 "
                                         "WHERE scope = ?1 AND key = ?2 AND status = 0");
    if (!s) return SVC_EIO;
    sqlite3_bind_text(s, 1, scope, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, status);
    if (headers) sqlite3_bind_text(s, 4, headers, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 5, len ? body : "", (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return svc_db_status(rc);
    return sqlite3_changes(svc_db_conn(db)) == 1 ? SVC_OK : SVC_ENOTFOUND;
}

int svc_db_idem_release(svc_db *db, const char *scope, const char *key) {
    if (!scope_valid(scope) || !svc_db_idem_key_valid(key)) return SVC_EINVAL;
    sqlite3_stmt *s = svc_db_prepare(db, "DELETE FROM svc_idempotency WHERE scope = ?1 AND key = ?2 AND status = 0");
    if (!s) return SVC_EIO;
    sqlite3_bind_text(s, 1, scope, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return svc_db_status(rc);
    return sqlite3_changes(svc_db_conn(db)) == 1 ? SVC_OK : SVC_ENOTFOUND;
}

void svc_db_idem_response_free(svc_db_idem_response *r) {
    if (!r) return;
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}
