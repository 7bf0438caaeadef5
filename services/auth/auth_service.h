/*
 * auth: internal interfaces between its files.
 *
 *   main.c   routes, handlers, keys, rate limiting
 *   users.c  the accounts in SQLite, credential checks, the first admin
 *   cookie.c the login cookie: Secure from COOKIE_SECURE and TRUSTED_PROXIES
 */
#ifndef AUTH_SERVICE_H
#define AUTH_SERVICE_H

#include "svckit.h"

#define AUTH_USERNAME_MIN 3
#define AUTH_USERNAME_MAX 32
#define AUTH_USERNAME_RULE "3-32 characters of a-z 0-9 . _ -, not ending in a dot"
#define AUTH_PASSWORD_MIN 8
#define AUTH_PASSWORD_MAX SVC_PASSWORD_MAX
#define AUTH_PASSWORD_RULE "8-128 bytes"
#define AUTH_TRUSTED_PROXIES_MAX 32     /* entries of TRUSTED_PROXIES */

typedef struct user {
    int64_t id;
    char username[AUTH_USERNAME_MAX + 1];
    char role[16];
    char password_hash[SVC_PASSWORD_HASH_MAX];
} user;

/* The bodies of /auth/register (username AUTH_USERNAME_RULE) and
 * /auth/login (strings of sane length), both {"username","password"} and no
 * other field, as declared routes (svckit/schema.h). */
extern const svc_schema auth_register_body;
extern const svc_schema auth_login_body;
/*
 * Reads a body checked against one of them, and checks the password's
 * length in bytes (what a schema, counting characters, cannot say): strict
 * (register) AUTH_PASSWORD_RULE, else at most AUTH_PASSWORD_MAX. Pointers
 * are into body. SVC_OK or SVC_EINVAL with a message.
 */
int auth_read_credentials(const json_t *body, const char **name, const char **pass, size_t *password_len,
                          int strict, char *err, size_t errlen);

int users_open(const char *data_dir, svc_db **out);
/* SVC_OK, SVC_EEXIST (taken) or an error. */
int users_create(svc_db *db, const char *username, const char *hash, const char *role, user *out);
/* SVC_OK or SVC_ENOTFOUND. */
int users_find(svc_db *db, const char *username, user *out);
int users_set_hash(svc_db *db, int64_t id, const char *hash);
/* Creates the admin account if no admin exists: with password, or with a
 * generated one written to DATA_DIR/admin-password (0600). */
int users_ensure_admin(svc_db *db, const char *data_dir, const char *username, const char *password);

/* cookie.c. Declares COOKIE_SECURE and TRUSTED_PROXIES (before svc_app_run);
 * reads them (on_start: SVC_EINVAL after logging the bad one); the
 * Set-Cookie value carrying token for ttl seconds, from the request's arena
 * (NULL when out of memory). */
typedef struct cookie_network {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int prefix;             /* bits that must match */
} cookie_network;

/* The cookie's configuration, part of the service's state (no globals). */
typedef struct cookie_config {
    enum { SECURE_AUTO, SECURE_ALWAYS, SECURE_NEVER } mode;
    cookie_network proxies[AUTH_TRUSTED_PROXIES_MAX];
    int nproxies;
} cookie_config;

void cookie_declare(svc_app *app);
int cookie_configure(svc_app *app, cookie_config *cc);
const char *cookie_for(svc_req *req, const cookie_config *cc, const char *token, int64_t ttl);

#endif
