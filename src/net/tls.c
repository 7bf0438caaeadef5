/*
 * TLS for the NATS client (tls.h): mbed TLS with its I/O callbacks pointed at
 * two buffers of the session. input() lends the socket's bytes to recv and
 * send appends records to an output buffer that output() hands on; mbed TLS
 * never touches a file descriptor, so the client keeps its libuv stream, its
 * coalesced writes and its timers.
 */
#include <arpa/inet.h>
#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/tls.h"

/* The system's trusted CAs (Debian's ca-certificates), read when no CA file
 * is given. */
#define SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
/* The most of the output buffer kept once handed on (nats.c's rule). */
#define OUT_KEEP (1024 * 1024)

struct svc_tls_ctx {
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca, cert;
    mbedtls_pk_context key;
    /* Shared by every session: both lock themselves (MBEDTLS_THREADING_C,
     * which Debian's build has). */
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
};

struct svc_tls {
    mbedtls_ssl_context ssl;
    const unsigned char *in;         /* input() lends these bytes to recv */
    size_t in_len;
    unsigned char *out;              /* records waiting for output() */
    size_t out_len, out_cap;
    int out_failed;                  /* send could not grow out */
    int ready;                       /* the handshake succeeded */
    unsigned char ip[16];            /* the server's address, when the URL names one */
    size_t ip_len;                   /* 4 or 16; 0 for a DNS name */
    char error[SVC_TLS_MAX_ERROR];
};

static void tls_ctx_free(svc_tls_ctx *c) {
    if (!c) return;
    mbedtls_ssl_config_free(&c->conf);
    mbedtls_x509_crt_free(&c->ca);
    mbedtls_x509_crt_free(&c->cert);
    mbedtls_pk_free(&c->key);
    mbedtls_ctr_drbg_free(&c->drbg);
    mbedtls_entropy_free(&c->entropy);
    free(c);
}

static svc_tls_ctx *ctx_fail(svc_tls_ctx *c, char *err, size_t errlen, const char *what, const char *file, int rc) {
    char why[128];
    mbedtls_strerror(rc, why, sizeof why);
    snprintf(err, errlen, "%s%s%s: %s", what, *file ? " " : "", file, why);
    tls_ctx_free(c);
    return NULL;
}

static svc_tls_ctx *tls_ctx_new(const char *ca, const char *cert, const char *key, char *err, size_t errlen) {
    if (!cert != !key) {
        snprintf(err, errlen, "a client certificate needs both its certificate and its key");
        return NULL;
    }
    svc_tls_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    mbedtls_ssl_config_init(&c->conf);
    mbedtls_x509_crt_init(&c->ca);
    mbedtls_x509_crt_init(&c->cert);
    mbedtls_pk_init(&c->key);
    mbedtls_entropy_init(&c->entropy);
    mbedtls_ctr_drbg_init(&c->drbg);
    int rc = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy, NULL, 0);
    if (rc) return ctx_fail(c, err, errlen, "cannot seed the random generator", "", rc);
    /* A file of several certificates loads in part when one is bad (rc > 0):
     * that is a refusal too, not a smaller trust store. */
    if ((rc = mbedtls_x509_crt_parse_file(&c->ca, ca ? ca : SYSTEM_CA_FILE)) != 0)
        return ctx_fail(c, err, errlen, "cannot load the CA file", ca ? ca : SYSTEM_CA_FILE,
                        rc > 0 ? MBEDTLS_ERR_X509_INVALID_FORMAT : rc);
    if (cert && (rc = mbedtls_x509_crt_parse_file(&c->cert, cert)) != 0)
        return ctx_fail(c, err, errlen, "cannot load the client certificate", cert,
                        rc > 0 ? MBEDTLS_ERR_X509_INVALID_FORMAT : rc);
    if (key && (rc = mbedtls_pk_parse_keyfile(&c->key, key, NULL)) != 0)
        return ctx_fail(c, err, errlen, "cannot load the client key", key, rc);
    if (key && (rc = mbedtls_pk_check_pair(&c->cert.pk, &c->key)) != 0)
        return ctx_fail(c, err, errlen, "cannot load the client key", key, rc);
    if ((rc = mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT)) != 0)
        return ctx_fail(c, err, errlen, "cannot configure TLS", "", rc);
    mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
    mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
    if (cert && (rc = mbedtls_ssl_conf_own_cert(&c->conf, &c->cert, &c->key)) != 0)
        return ctx_fail(c, err, errlen, "cannot use the client certificate", cert, rc);
    return c;
}

static void tls_session_free(svc_tls *t) {
    if (!t) return;
    mbedtls_ssl_free(&t->ssl);
    free(t->out);
    free(t);
}

static int tls_send(void *ud, const unsigned char *buf, size_t len) {
    svc_tls *t = ud;
    if (t->out_cap - t->out_len < len) {
        size_t cap = t->out_cap ? t->out_cap : 4096;
        while (cap - t->out_len < len) cap *= 2;
        unsigned char *p = realloc(t->out, cap);
        if (!p) {
            t->out_failed = 1;
            return MBEDTLS_ERR_SSL_ALLOC_FAILED;
        }
        t->out = p;
        t->out_cap = cap;
    }
    memcpy(t->out + t->out_len, buf, len);
    t->out_len += len;
    return (int)len;
}

static int tls_recv(void *ud, unsigned char *buf, size_t len) {
    svc_tls *t = ud;
    if (!t->in_len) return MBEDTLS_ERR_SSL_WANT_READ;
    if (len > t->in_len) len = t->in_len;
    memcpy(buf, t->in, len);
    t->in += len;
    t->in_len -= len;
    return (int)len;
}

/* mbed TLS 2.28 matches DNS names only, so addresses are found here. Its
 * parser has already checked the certificate's DER; every read here is
 * bounded by the extensions all the same. */
int svc__tls_san_has_ip(const mbedtls_x509_crt *crt, const unsigned char *ip, size_t len) {
    if (!crt->v3_ext.p) return 0; /* no extensions */
    unsigned char *p = crt->v3_ext.p, *end = p + crt->v3_ext.len;
    size_t n;
    if (mbedtls_asn1_get_tag(&p, end, &n, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)) return 0;
    end = p + n;
    while (p < end) { /* Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue } */
        if (mbedtls_asn1_get_tag(&p, end, &n, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)) return 0;
        unsigned char *ext_end = p + n;
        mbedtls_x509_buf oid = {0};
        int critical;
        if (mbedtls_asn1_get_tag(&p, ext_end, &oid.len, MBEDTLS_ASN1_OID)) return 0;
        oid.p = p;
        p += oid.len;
        (void)mbedtls_asn1_get_bool(&p, ext_end, &critical);
        if (MBEDTLS_OID_CMP(MBEDTLS_OID_SUBJECT_ALT_NAME, &oid)) {
            p = ext_end;
            continue;
        }
        /* extnValue: OCTET STRING { GeneralNames ::= SEQUENCE OF GeneralName } */
        if (mbedtls_asn1_get_tag(&p, ext_end, &n, MBEDTLS_ASN1_OCTET_STRING) ||
            mbedtls_asn1_get_tag(&p, ext_end, &n, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE))
            return 0;
        unsigned char *names_end = p + n;
        while (p < names_end) {
            int tag = *p++;
            if (mbedtls_asn1_get_len(&p, names_end, &n)) return 0;
            if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_IP_ADDRESS) && n == len &&
                !memcmp(p, ip, len))
                return 1;
            p += n;
        }
        return 0;
    }
    return 0;
}

/* Per certificate of the chain, after mbed TLS's own checks (depth 0 is the
 * server's): an IP address of the URL must be among the addresses of the
 * server's certificate. */
static int verify_ip(void *ud, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
    svc_tls *t = ud;
    if (depth == 0 && t->ip_len && !svc__tls_san_has_ip(crt, t->ip, t->ip_len))
        *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
}

/* The alerts a server sends when it refuses a client (RFC 5246, 7.2). One
 * that wants a client certificate and got none says bad certificate (Go's,
 * so nats-server's) or handshake failure. */
static const char *alert_name(unsigned char alert) {
    switch (alert) {
    case MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE: return "handshake failure";
    case MBEDTLS_SSL_ALERT_MSG_BAD_CERT: return "bad certificate";
    case MBEDTLS_SSL_ALERT_MSG_UNKNOWN_CA: return "unknown CA";
    case MBEDTLS_SSL_ALERT_MSG_PROTOCOL_VERSION: return "protocol version";
    case MBEDTLS_SSL_ALERT_MSG_INSUFFICIENT_SECURITY: return "insufficient security";
    default: return "see RFC 5246, 7.2";
    }
}

/* Sets t->error from a failed call (its return value rc) and returns -1. A
 * refused certificate says why (wrong name, expired, unknown issuer), which
 * is what an operator needs. */
static int fail(svc_tls *t, int rc, const char *doing) {
    uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
    char why[128];
    if (t->out_failed || rc == MBEDTLS_ERR_SSL_ALLOC_FAILED)
        snprintf(t->error, sizeof t->error, "out of memory");
    else if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags) {
        const char *r = flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED ? "not issued by a trusted CA"
                        : flags & MBEDTLS_X509_BADCERT_EXPIRED   ? "certificate has expired"
                        : flags & MBEDTLS_X509_BADCERT_FUTURE    ? "certificate is not yet valid"
                        : flags & MBEDTLS_X509_BADCERT_CN_MISMATCH
                            ? (t->ip_len ? "IP address mismatch" : "hostname mismatch")
                            : NULL;
        if (!r) {
            mbedtls_x509_crt_verify_info(why, sizeof why, "", flags);
            why[strcspn(why, "\n")] = '\0';
            r = why;
        }
        snprintf(t->error, sizeof t->error, "server certificate refused: %s", r);
    } else if (rc == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE)
        snprintf(t->error, sizeof t->error, "%s: the server's alert %u (%s)", doing, t->ssl.in_msg[1],
                 alert_name(t->ssl.in_msg[1]));
    else if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
        snprintf(t->error, sizeof t->error, "%s: the server closed the TLS session", doing);
    else {
        mbedtls_strerror(rc, why, sizeof why);
        snprintf(t->error, sizeof t->error, "%s: %s", doing, why);
    }
    return -1;
}

static svc_tls *tls_session_new(svc_tls_ctx *c, const char *host) {
    svc_tls *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    mbedtls_ssl_init(&t->ssl);
    if (mbedtls_ssl_setup(&t->ssl, &c->conf)) {
        tls_session_free(t);
        return NULL;
    }
    mbedtls_ssl_set_bio(&t->ssl, t, tls_send, tls_recv, NULL);
    if (inet_pton(AF_INET, host, t->ip) == 1)
        t->ip_len = 4;
    else if (inet_pton(AF_INET6, host, t->ip) == 1)
        t->ip_len = 16;
    /* A DNS name is checked by mbed TLS and sent as SNI; an address is
     * checked by verify_ip and, as RFC 6066 says, not sent. */
    if (t->ip_len)
        mbedtls_ssl_set_verify(&t->ssl, verify_ip, t);
    else if (mbedtls_ssl_set_hostname(&t->ssl, host)) {
        tls_session_free(t);
        return NULL;
    }
    /* Queues the ClientHello in out; the answer comes through input. */
    if (mbedtls_ssl_handshake(&t->ssl) != MBEDTLS_ERR_SSL_WANT_READ) {
        tls_session_free(t);
        return NULL;
    }
    return t;
}

static int tls_input(svc_tls *t, const char *data, size_t len, svc_tls_ready_fn ready, svc_tls_data_fn plain,
                     void *ud) {
    t->in = (const unsigned char *)data;
    t->in_len = len;
    if (!t->ready) {
        int r = mbedtls_ssl_handshake(&t->ssl);
        if (r == MBEDTLS_ERR_SSL_WANT_READ) return 0;
        if (r) return fail(t, r, "TLS handshake failed");
        t->ready = 1;
        int rc = ready(ud);
        if (rc) return rc;
    }
    unsigned char buf[SVC_TLS_READ_CHUNK];
    for (;;) {
        int n = mbedtls_ssl_read(&t->ssl, buf, sizeof buf);
        if (n > 0) {
            int rc = plain(ud, (const char *)buf, (size_t)n);
            if (rc) return rc;
            continue;
        }
        /* Until recv has handed over every byte: a record that carries no
         * data (a session ticket, say) also ends in WANT_READ. */
        if (n == MBEDTLS_ERR_SSL_WANT_READ) {
            if (!t->in_len) return 0;
            continue;
        }
        return fail(t, n ? n : MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY, "TLS read failed");
    }
}

static int tls_output(svc_tls *t, const char *plain, size_t len, svc_tls_data_fn out, void *ud) {
    if (len && !t->ready) {
        snprintf(t->error, sizeof t->error, "data to send before the TLS handshake completed");
        return -1;
    }
    /* send never blocks, so a write takes as much as fits in a record;
     * loop for the rest. */
    for (size_t done = 0; done < len;) {
        int n = mbedtls_ssl_write(&t->ssl, (const unsigned char *)plain + done, len - done);
        if (n <= 0) return fail(t, n, "TLS write failed");
        done += (size_t)n;
    }
    if (!t->out_len) return 0;
    size_t n = t->out_len;
    t->out_len = 0;
    int rc = out(ud, (const char *)t->out, n);
    /* As nats.c does with its buffers: one burst does not keep its size
     * for the life of the connection. */
    if (t->out_cap > OUT_KEEP) {
        free(t->out);
        t->out = NULL;
        t->out_cap = 0;
    }
    return rc;
}

static int tls_pending(const svc_tls *t) { return t->out_len != 0; }

static const char *tls_error(const svc_tls *t) { return t->error; }

const svc_tls_ops svc__tls = {
    .ctx_new = tls_ctx_new,
    .ctx_free = tls_ctx_free,
    .session_new = tls_session_new,
    .session_free = tls_session_free,
    .input = tls_input,
    .output = tls_output,
    .pending = tls_pending,
    .error = tls_error,
};
