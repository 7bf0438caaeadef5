/*
 * The NATS connection settings of the environment, read the one way every
 * svckit program reads them: the services (the messaging module,
 * src/msg/conn.c) and the svckit command-line tool (tools/svckit/gather.c).
 *
 *   NATS_URL               the servers (nats:// or tls://, comma-separated;
 *                          user:password@ or token@ in a URL)
 *   NATS_TLS_CA, NATS_TLS_CERT, NATS_TLS_KEY
 *                          TLS to every server (src/net/tls.h: only in a
 *                          program linked with TLS; others refuse it)
 *   NATS_NKEY_SEED_FILE, NATS_CREDS
 *                          NKEY or user-JWT sign-in (src/net/nkey.h)
 *   NATS_NO_ADVERTISED     never add the servers a cluster announces
 *
 * docs/messaging.md lists them with their defaults. Not thread-safe (reads
 * the environment); the loaded settings are read-only afterwards.
 */
#ifndef SVC_NET_NATSENV_H
#define SVC_NET_NATSENV_H

#include <stddef.h>

#include "net/nats.h"

typedef struct svc__nats_env {
    svc_nats_server *servers;        /* SVC_NATS_MAX_SERVERS slots, nservers used */
    int nservers;
    svc_nkey_creds *creds;           /* NULL: no NKEY or creds sign-in */
    svc_tls_ctx *tls;                /* NULL: no server asks for TLS */
    int no_advertised;
} svc__nats_env;

/*
 * Reads url (NATS_URL's value, not "none") and the variables above into e
 * (zeroed first). SVC_OK, or another status with err set to one line naming
 * the variable (a URL shown without its credentials). Either way
 * svc__nats_env_free(e) frees what was made.
 */
int svc__nats_env_load(svc__nats_env *e, const char *url, char *err, size_t errlen);
/* Wipes the credentials and frees everything; e is zeroed. Only once no
 * connection made with e is left. */
void svc__nats_env_free(svc__nats_env *e);
/* url as an error or log line shows it: every "user:pass@" or "token@" as
 * "***@"; at most cap - 1 bytes into out. */
void svc__nats_url_shown(const char *url, char *out, size_t cap);

#endif
