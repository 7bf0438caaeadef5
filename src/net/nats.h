/*
 * The NATS protocol client (src/net, below the runtime: it knows no app): a small NATS client on a libuv loop, written for
 * svckit (https://docs.nats.io/reference/reference-protocols/nats-protocol).
 *
 * One svc_nats is one TCP connection owned by one loop: every function here
 * must be called on that loop's thread (the few reads marked "any thread"
 * aside). It connects in the background (uv_getaddrinfo + uv_tcp, rotating
 * over the servers of NATS_URL), answers the server's PINGs and sends its
 * own (SVC_NATS_PING_MS; SVC_NATS_MAX_PINGS_OUT unanswered: dead), reconnects
 * every reconnect_wait_ms plus jitter, resubscribes everything, and keeps
 * publishes made while disconnected in a bounded buffer that is sent first
 * after the reconnection. Output of one loop iteration is coalesced into one
 * uv_write (flushed from prepare/check handles).
 *
 * Credentials: user:password or a token from the URL, or an NKEY (a bare
 * user seed, or the user JWT and seed of a .creds file, nkey.h) whose
 * signature of the INFO nonce goes in CONNECT. Servers: the configured ones
 * plus those the cluster announces in INFO connect_urls (validated as
 * configured URLs; at most SVC_NATS_MAX_SERVERS in all), unless
 * no_advertised is set.
 *
 * TLS (tls.h) when a server's URL is tls:// (or the owner marks it so) and
 * opts.tls is set: after the server's INFO, which comes in the clear, the
 * handshake runs over the same stream, then CONNECT; a server that offers
 * no TLS to a client configured for it, or requires TLS of one that is not,
 * is refused (never plaintext instead).
 *
 * What it does not do: JetStream as an API (src/msg/jetstream.c speaks it
 * over request-reply).
 */
#ifndef SVC_NET_NATS_H
#define SVC_NET_NATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/tls.h"
#include "svckit/core.h"
#include "svckit/obs.h"
#include "net/nkey.h"

/* Longest protocol line we accept from a server (INFO carries JSON). */
#define SVC_NATS_MAX_LINE (64 * 1024)
/* A server may announce a larger max_payload; we never accept more. */
#define SVC_NATS_MAX_PAYLOAD_CAP (64 * 1024 * 1024)
/* Before INFO says otherwise (the NATS default). */
#define SVC_NATS_DEFAULT_MAX_PAYLOAD (1024 * 1024)
/* Servers in a connection's pool: configured plus announced. */
#define SVC_NATS_MAX_SERVERS 16
/* An INFO nonce longer than this is a protocol error (nats-server's are 22). */
#define SVC_NATS_MAX_NONCE 128
#define SVC_NATS_MAX_URL 512
#define SVC_NATS_PING_MS 5000
#define SVC_NATS_MAX_PINGS_OUT 2
/* From the start of a connection attempt to the PONG of its CONNECT. */
#define SVC_NATS_CONNECT_TIMEOUT_MS 2000
/* Random extra wait (0 to this) before every connection attempt after the
 * first, so that the instances that lost one server do not stampede the
 * next one of the pool together. */
#define SVC_NATS_RECONNECT_JITTER_MS 100
/* Unsent output while connected beyond which publishes fail (SVC_EAGAIN). */
#define SVC_NATS_MAX_OUTPUT (64 * 1024 * 1024)
/* Header fields of one message we parse; more is a malformed message. */
#define SVC_NATS_MAX_HEADERS 256
/* How long a closing connection may take to write what it still holds. */
#define SVC_NATS_CLOSE_FLUSH_MS 1000
/* -ERR lines from the server: logged at most once per interval per
 * connection, with the count of those left out (every one is counted). */
#define SVC_NATS_ERR_LOG_INTERVAL_MS 1000
/* Bytes kept of the subject an -ERR says was refused (svc__nats_err_denied_sub). */
#define SVC_NATS_MAX_DENIED_SUBJECT 128

/* ---- messages ------------------------------------------------------------- */

/*
 * A received message, owned by whoever the callback handed it to; one
 * allocation, freed with svc__nats_msg_free. Strings are NUL-terminated;
 * data has len bytes (plus a NUL). status is the code of a "NATS/1.0 503"
 * header line (0 without one). Header names and values point into the
 * message; repeated names appear as they came.
 */
typedef struct svc_nats_msg {
    char *subject;
    char *reply;                     /* NULL: none */
    char *data;
    size_t len;
    int status;                      /* -1: the header block was malformed (dropped) */
    size_t nhdrs;
    const char **names, **values;
    size_t *name_lens;               /* strlen(names[i]), for quick lookups */
    size_t wire_bytes;               /* header + payload bytes, for accounting */
} svc_nats_msg;

/*
 * Builds a message from its parts (the header block as sent: "NATS/1.0...
 * \r\n\r\n", or NULL/0). SVC_OK with *out set; SVC_EINVAL for a malformed
 * header block (no NATS/1.0 line, a line without ':' or with a control byte,
 * an empty name, more than SVC_NATS_MAX_HEADERS fields); SVC_ENOMEM.
 */
int svc__nats_msg_new(const char *subject, size_t subject_len, const char *reply, size_t reply_len,
                      const char *hdr, size_t hdr_len, const char *data, size_t len, svc_nats_msg **out);
void svc__nats_msg_free(svc_nats_msg *m);   /* NULL: no-op */
/* The first value of a header, by case-insensitive name; NULL if absent. */
const char *svc__nats_msg_header(const svc_nats_msg *m, const char *name);

/* Header blocks for publishing: begin, add fields, end. A name must be an
 * RFC 9110 token and a value free of CR, LF and NUL: SVC_EINVAL otherwise
 * (nothing added). */
void svc__nats_hdr_begin(svc_buf *b);
int svc__nats_hdr_add(svc_buf *b, const char *name, const char *value);
/* Adds a field the caller has already checked as svc__nats_hdr_add would
 * (name a token, value without CR, LF and NUL), of the given lengths. */
void svc__nats_hdr_put(svc_buf *b, const char *name, size_t name_len, const char *value, size_t value_len);
void svc__nats_hdr_end(svc_buf *b);

/* ---- the protocol parser ----------------------------------------------------
 * Incremental: feed any split of the server's bytes. Exposed for the unit
 * tests and the fuzz target; svc_nats embeds one. */

enum {
    SVC_NATS_OP_INFO = 1,            /* arg: the JSON */
    SVC_NATS_OP_MSG,                 /* subject, sid, reply, hdr, data */
    SVC_NATS_OP_PING,
    SVC_NATS_OP_PONG,
    SVC_NATS_OP_OK,
    SVC_NATS_OP_ERR,                 /* arg: the message, quotes removed */
};

typedef struct svc_nats_op {
    int type;
    const char *arg;
    size_t arg_len;
    const char *subject, *reply;     /* MSG; reply NULL if none; NUL-terminated */
    size_t subject_len, reply_len;
    uint64_t sid;
    const char *hdr;                 /* HMSG: the header block, else NULL */
    size_t hdr_len;
    const char *data;
    size_t len;
} svc_nats_op;

/* Returns 0 to go on, non-zero to stop parsing (the value is returned). */
typedef int (*svc_nats_op_fn)(void *ud, const svc_nats_op *op);

typedef struct svc_nats_parser {
    int state;
    size_t max_payload;              /* refuse larger messages */
    char *line;                      /* the control line being read */
    size_t line_len;
    char *subject, *reply;           /* of the message whose payload is read */
    uint64_t sid;
    size_t hdr_len, total;
    char *payload;                   /* total + 2 bytes (CRLF) */
    size_t got;
    char error[128];                 /* why parsing failed */
} svc_nats_parser;

void svc__nats_parser_init(svc_nats_parser *p, size_t max_payload);
void svc__nats_parser_free(svc_nats_parser *p);
/*
 * Parses len bytes, calling fn for each complete operation. Returns 0 when
 * all were consumed; -1 on a protocol violation (p->error says which: an
 * unknown operation, a line over SVC_NATS_MAX_LINE, a bad argument count or
 * number, a payload over max_payload, a header size over the total, a
 * payload not followed by CRLF), after which the parser must be reset
 * (init again) with a new connection; or fn's non-zero value.
 */
int svc__nats_parse(svc_nats_parser *p, const char *buf, size_t len, svc_nats_op_fn fn, void *ud);

/* ---- servers ------------------------------------------------------------------ */

typedef struct svc_nats_server {
    char host[256];
    int port;
    char user[128], pass[128];       /* from nats://user:pass@host; token: user only */
    int tls;                         /* TLS required: tls://, or set by the owner */
} svc_nats_server;

/* Parses "nats://[user[:pass]@]host[:port]" or "tls://..." (tls set; port
 * 4222 by default; [v6] allowed). SVC_OK or SVC_EINVAL (other scheme, empty
 * host, bad port, too long). */
int svc__nats_url_parse(const char *url, svc_nats_server *out);
/* Parses a comma-separated list of such URLs (NATS_URL): blanks around each
 * are ignored, and so are empty entries. Fills out[0..*n) with at most max
 * servers. SVC_OK; SVC_EINVAL when one is bad (*n: the entries parsed before
 * it) or there is none; SVC_ERANGE when there are more than max (the first
 * max are in out). */
int svc__nats_urls_parse(const char *list, svc_nats_server *out, int max, int *n);

/*
 * The subject of a refused subscription in the text of an -ERR (nats-server
 * says 'Permissions Violation for Subscription to "S"', maybe with a queue
 * after it): 1 with S in out (NUL-terminated, at most cap - 1 bytes, any
 * byte outside printable ASCII as '?'); 0 when msg says something else or
 * S is empty. Pure; msg is the server's and need not be NUL-terminated.
 */
int svc__nats_err_denied_sub(const char *msg, size_t len, char *out, size_t cap);
/* 1 if s is a header field name (an RFC 9110 token), else 0. */
int svc__nats_header_name_ok(const char *s);

/* ---- the connection ------------------------------------------------------------ */

typedef struct svc_nats svc_nats;

enum { SVC_NATS_CONNECTED = 1, SVC_NATS_DISCONNECTED, SVC_NATS_RECONNECTED };

/* A message for subscription sid: the callee owns msg. Loop thread. */
typedef void (*svc_nats_msg_fn)(svc_nats *nc, svc_nats_msg *msg, void *sub_ud);
/* Connection events (SVC_NATS_CONNECTED the first time, then DISCONNECTED
 * and RECONNECTED). Loop thread. */
typedef void (*svc_nats_event_fn)(svc_nats *nc, int event, void *ud);
/* Flush done: ok 1 when the server answered the PING, 0 when the connection
 * was lost or closed first. */
typedef void (*svc_nats_flush_fn)(svc_nats *nc, int ok, void *ud);

typedef struct svc_nats_opts {
    const svc_nats_server *servers;  /* copied */
    int nservers;
    const char *name;                /* CONNECT "name" */
    int reconnect_wait_ms;
    size_t reconnect_buffer;         /* bytes of publishes kept while disconnected */
    int ping_ms;                     /* 0: SVC_NATS_PING_MS */
    svc_series *server_errors;       /* counts every -ERR; NULL: not counted */
    const svc_nkey_creds *creds;     /* NKEY sign-in; NULL: none. Must outlive the connection */
    int no_advertised;               /* 1: never add the servers INFO announces to the pool */
    svc_tls_ctx *tls;                /* for servers with tls set; NULL: they are refused. The
                                        owner's, kept until the connection is freed */
    /* The server refused a subscription (svc__nats_err_denied_sub): called
     * on the loop with the subject, and that -ERR is then not logged here
     * (it is counted in server_errors). NULL: logged as any -ERR. */
    void (*on_sub_denied)(svc_nats *nc, const char *subject, void *ud);
    svc_nats_event_fn on_event;
    void *ud;
} svc_nats_opts;

/* Creates the connection on loop and starts connecting. NULL: no memory. */
svc_nats *svc__nats_new(uv_loop_t *loop, const svc_nats_opts *o);
/*
 * Writes what is queued (for at most SVC_NATS_CLOSE_FLUSH_MS), closes, and
 * frees nc once its handles are closed; no callback runs after this
 * returns. NULL: no-op.
 */
void svc__nats_close(svc_nats *nc);
void *svc__nats_ud(const svc_nats *nc);

/* 1 once CONNECT was answered, until the connection is lost. Any thread. */
int svc__nats_connected(const svc_nats *nc);
/* The server's max_payload (the default before the first INFO). Any thread. */
size_t svc__nats_max_payload(const svc_nats *nc);
/* Bytes waiting in the reconnect buffer. Any thread. */
size_t svc__nats_buffered(const svc_nats *nc);
/* The server connected to ("host:port"), or "". */
const char *svc__nats_url(const svc_nats *nc);

/* Subscribes (now if connected, and again after every reconnection). Returns
 * the sid (> 0), or 0 when out of memory. queue NULL: none. The subject and
 * queue are the caller's to validate (svc__msg_subject_check). */
uint64_t svc__nats_sub(svc_nats *nc, const char *subject, const char *queue, svc_nats_msg_fn fn, void *ud);
/* Unsubscribes (UNSUB now, and not subscribed again after a reconnection).
 * What the server sent before it read the UNSUB is still delivered, so that
 * a drain (UNSUB, then a flush) serves every message already on its way. */
void svc__nats_unsub(svc_nats *nc, uint64_t sid);

/*
 * Publishes (PUB, or HPUB with a header block from svc__nats_hdr_*). reply
 * may be NULL. SVC_OK (queued: written at the end of this loop iteration, or
 * kept in the reconnect buffer while disconnected); SVC_ERANGE (larger than
 * the server's max_payload); SVC_EAGAIN (reconnect buffer full, or
 * SVC_NATS_MAX_OUTPUT unsent); SVC_ECLOSED (closing).
 */
int svc__nats_pub(svc_nats *nc, const char *subject, const char *reply, const char *hdr, size_t hdr_len,
                  const void *data, size_t len);
/*
 * svc__nats_pub for the answer to a message this connection received (a
 * request's reply): while the connection is established it is written at
 * once even when publishes are held, because it needs no subscription of
 * another connection, and a full reconnect buffer does not refuse it (the
 * caller would otherwise wait out its deadline). It may overtake what the
 * hold keeps back. Disconnected: buffered as svc__nats_pub.
 */
int svc__nats_reply(svc_nats *nc, const char *subject, const char *hdr, size_t hdr_len, const void *data,
                    size_t len);
/* Hold: publishes stay in the reconnect buffer even once connected (SUBs
 * still go out), until release sends them. svckit holds a worker's buffer
 * after a disconnection until the subscriptions that another connection of
 * the process makes (events, on worker 0) are back, so that nothing it
 * buffered for them is lost. */
void svc__nats_hold(svc_nats *nc);
void svc__nats_release(svc_nats *nc);
/* 1 when a publish goes out now: connected and not held (0 while it would
 * wait in the reconnect buffer). Loop thread. */
int svc__nats_sending(const svc_nats *nc);
/* Waiting out the pause between connection attempts: try now instead (the
 * owner learnt the server is back). Else nothing. Loop thread. */
void svc__nats_retry_now(svc_nats *nc);
/* Sends a PING; fn runs once at its PONG (ok 1) or when the connection is
 * lost or closed (ok 0; also at once when not connected). SVC_OK or
 * SVC_ENOMEM (fn will not run). */
int svc__nats_flush(svc_nats *nc, svc_nats_flush_fn fn, void *ud);

#endif
