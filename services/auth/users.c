/* Accounts in SQLite, and the checks on what clients send for them. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth_service.h"

static const svc_migration migrations[] = {
    {1, "create users",
     "CREATE TABLE users ("
     "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
     "  username TEXT NOT NULL UNIQUE,"
     "  password_hash TEXT NOT NULL,"
     "  role TEXT NOT NULL CHECK (role IN ('user', 'admin')),"
     "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));", NULL},
};

int users_open(const char *data_dir, svc_db **out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/auth.db", data_dir);
    return svc_db_open(path, migrations, sizeof migrations / sizeof migrations[0], out);
}

/* A name that ends in a dot (".", "..", "alice.") reads as a path or a
 * fully-qualified host name to whatever later puts it in a URL, a file name
 * or a log; it is refused. */
static int username_ok(const char *s, size_t n) {
    if (n < AUTH_USERNAME_MIN || n > AUTH_USERNAME_MAX || s[n - 1] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) return 0;
    }
    return 1;
}

/* body comes from svc_req_json, that is svc_json_parse, which refuses NUL in
 * strings: the lengths below are those of C strings. */
int auth_parse_credentials(const json_t *body, const char **username, const char **password,
                           size_t *password_len, int strict, char *err, size_t errlen) {
    static const char *const fields[] = {"username", "password", NULL};
    const char *unknown;
    if (svc_json_only_keys(body, fields, &unknown) != SVC_OK) {
        if (unknown) snprintf(err, errlen, "unknown field \"%.40s\"", unknown);
        else snprintf(err, errlen, "request body must be a JSON object");
        return SVC_EINVAL;
    }
    json_t *u = json_object_get(body, "username"), *p = json_object_get(body, "password");
    if (!json_is_string(u) || !json_is_string(p)) {
        snprintf(err, errlen, "username and password must be strings");
        return SVC_EINVAL;
    }
    size_t ulen = json_string_length(u), plen = json_string_length(p);
    *username = json_string_value(u);
    *password = json_string_value(p);
    *password_len = plen;
    if (ulen == 0 || ulen > AUTH_USERNAME_MAX || (strict && !username_ok(*username, ulen))) {
        snprintf(err, errlen, "username must be %s", AUTH_USERNAME_RULE);
        return SVC_EINVAL;
    }
    if (plen == 0 || plen > AUTH_PASSWORD_MAX || (strict && plen < AUTH_PASSWORD_MIN)) {
        snprintf(err, errlen, "password must be %d-%d bytes", AUTH_PASSWORD_MIN, AUTH_PASSWORD_MAX);
        return SVC_EINVAL;
    }
    return SVC_OK;
}

int users_create(svc_db *db, const char *username, const char *hash, const char *role, user *out) {
    sqlite3_stmt *s = svc_db_prepare(db, "INSERT INTO users (username, password_hash, role) VALUES (?1, ?2, ?3)");
    if (!s) return SVC_EIO;
    sqlite3_bind_text(s, 1, username, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, role, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return svc_db_status(rc);
    if (out) {
        out->id = sqlite3_last_insert_rowid(svc_db_conn(db));
        snprintf(out->username, sizeof out->username, "%s", username);
        snprintf(out->role, sizeof out->role, "%s", role);
        snprintf(out->password_hash, sizeof out->password_hash, "%s", hash);
    }
    return SVC_OK;
}

int users_find(svc_db *db, const char *username, user *out) {
    sqlite3_stmt *s = svc_db_prepare(db, "SELECT id, username, role, password_hash FROM users WHERE username = ?1");
    if (!s) return SVC_EIO;
    sqlite3_bind_text(s, 1, username, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->id = sqlite3_column_int64(s, 0);
        snprintf(out->username, sizeof out->username, "%s", (const char *)sqlite3_column_text(s, 1));
        snprintf(out->role, sizeof out->role, "%s", (const char *)sqlite3_column_text(s, 2));
        snprintf(out->password_hash, sizeof out->password_hash, "%s", (const char *)sqlite3_column_text(s, 3));
    }
    sqlite3_reset(s);
    if (rc == SQLITE_ROW) return SVC_OK;
    return rc == SQLITE_DONE ? SVC_ENOTFOUND : svc_db_status(rc);
}

int users_set_hash(svc_db *db, int64_t id, const char *hash) {
    sqlite3_stmt *s = svc_db_prepare(db, "UPDATE users SET password_hash = ?2 WHERE id = ?1");
    if (!s) return SVC_EIO;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_text(s, 2, hash, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return svc_db_status(rc);
}

/* 24 random characters from an alphabet without look-alikes. */
static void generate_password(char out[25]) {
    static const char alphabet[] = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    unsigned char r[24];
    svc_random(r, sizeof r);
    for (int i = 0; i < 24; i++) out[i] = alphabet[r[i] % (sizeof alphabet - 1)];
    out[24] = '\0';
}

static int write_secret_file(const char *path, const char *content) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        svc_error("cannot write %s: %s", path, strerror(errno));
        return SVC_EIO;
    }
    size_t n = strlen(content);
    /* The mode of open() applies only to a new file: an old one may be readable by others. */
    int ok = fchmod(fd, 0600) == 0 && write(fd, content, n) == (ssize_t)n && write(fd, "\n", 1) == 1 &&
             fsync(fd) == 0;
    close(fd);
    return ok ? SVC_OK : SVC_EIO;
}

int users_ensure_admin(svc_db *db, const char *data_dir, const char *username, const char *password) {
    sqlite3_stmt *s = svc_db_prepare(db, "SELECT count(*) FROM users WHERE role = 'admin'");
    if (!s || sqlite3_step(s) != SQLITE_ROW) return SVC_EIO;
    int64_t admins = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (admins > 0) return SVC_OK;
    if (!username_ok(username, strlen(username))) {
        svc_error("invalid configuration: ADMIN_USERNAME=\"%.40s\": expected %s", username, AUTH_USERNAME_RULE);
        return SVC_EINVAL;
    }
    char generated[25], file[4096];
    if (password && *password) {
        size_t n = strlen(password);
        if (n < AUTH_PASSWORD_MIN || n > AUTH_PASSWORD_MAX) {
            svc_error("invalid configuration: ADMIN_PASSWORD: %zu bytes, expected %d-%d", n, AUTH_PASSWORD_MIN,
                      AUTH_PASSWORD_MAX);
            return SVC_EINVAL;
        }
    } else {
        generate_password(generated);
        password = generated;
        snprintf(file, sizeof file, "%s/admin-password", data_dir);
        if (write_secret_file(file, generated) != SVC_OK) return SVC_EIO;
    }
    char hash[SVC_PASSWORD_HASH_MAX];
    if (svc_password_hash(password, strlen(password), hash, sizeof hash) != SVC_OK) return SVC_EIO;
    int rc = users_create(db, username, hash, "admin", NULL);
    if (rc == SVC_EEXIST) {
        svc_error("ADMIN_USERNAME \"%s\" is already a regular account; choose another admin name", username);
        return rc;
    }
    if (rc != SVC_OK) return rc;
    if (password == generated) svc_info("created admin \"%s\"; its password is in %s", username, file);
    else svc_info("created admin \"%s\" with the password from ADMIN_PASSWORD", username);
    return SVC_OK;
}
