/*
 * TLS for the NATS client (src/net/tls.c): mbed TLS driven through its I/O
 * callbacks on memory buffers, so that the ciphertext travels on the
 * client's own libuv stream and its one-write-at-a-time output (nats.c)
 * stays as it is.
 *
 * Linked only into the programs that opt in. nats.c and the messaging module
 * reach this code through one weak symbol, svc__tls: a program linked
 * without `-Wl,--require-defined=svc__tls` (what `make TLS=1` adds, with
 * mbed TLS's three libraries) never pulls tls.o out of libsvckit.a, so it
 * carries no mbed TLS, and &svc__tls is NULL there: a tls:// URL or NATS_TLS_* then
 * stops the service at start with the remedy (src/msg/conn.c).
 *
 * What the server must prove: a certificate chain to the CA file (or the
 * system's, /etc/ssl/certs/ca-certificates.crt) and the host name or IP
 * address of the URL; TLS 1.2 (mbed TLS 2.28 has no 1.3 in Debian's build). A client certificate is presented when configured.
 */
#ifndef SVC_NET_TLS_H
#define SVC_NET_TLS_H

#include <stddef.h>

/* Bytes of plaintext decrypted at a time (one TLS record at most). */
#define SVC_TLS_READ_CHUNK (16 * 1024)
/* Room for the reason of a failure ("server certificate refused: ..."). */
#define SVC_TLS_MAX_ERROR 256

/* The configuration (trusted CAs, client certificate): made once, shared by
 * every session; read-only after creation, so sessions of several threads
 * may use one. */
typedef struct svc_tls_ctx svc_tls_ctx;
/* One connection's TLS session; used on its connection's loop thread only. */
typedef struct svc_tls svc_tls;

/* Callbacks of input and output: 0 to go on; non-zero stops and is
 * returned. */
typedef int (*svc_tls_ready_fn)(void *ud);
typedef int (*svc_tls_data_fn)(void *ud, const char *data, size_t len);

typedef struct svc_tls_ops {
    /*
     * ca: a PEM file of trusted CAs (NULL: the system's store). cert and key:
     * PEM files of the client certificate (chain) and its private key, both
     * or neither. NULL on failure, with the reason (the file and mbed TLS's
     * words) in err. Free with ctx_free (NULL: no-op).
     */
    svc_tls_ctx *(*ctx_new)(const char *ca, const char *cert, const char *key, char *err, size_t errlen);
    void (*ctx_free)(svc_tls_ctx *ctx);
    /* A client session for host (a DNS name or an IP address, which the
     * server's certificate must match), its ClientHello already queued for
     * output. NULL: out of memory. Free with session_free (NULL: no-op),
     * never from inside one of its own callbacks. */
    svc_tls *(*session_new)(svc_tls_ctx *ctx, const char *host);
    void (*session_free)(svc_tls *t);
    /*
     * Takes len bytes read from the socket. Calls ready once, when the
     * handshake (verification included) has succeeded, then plain with
     * every piece of decrypted data. Returns 0 when all was taken (there may
     * be output: call output), a callback's non-zero value, or -1 when TLS
     * failed (error says why; the session is then unusable).
     */
    int (*input)(svc_tls *t, const char *data, size_t len, svc_tls_ready_fn ready, svc_tls_data_fn plain,
                 void *ud);
    /*
     * Encrypts len bytes of plaintext (len 0: none; plaintext before ready
     * is refused with -1) and hands every queued byte of ciphertext to out,
     * handshake records included. Returns 0, out's non-zero value, or -1.
     */
    int (*output)(svc_tls *t, const char *plain, size_t len, svc_tls_data_fn out, void *ud);
    /* Whether ciphertext waits for output (after input: the handshake's
     * records, or an alert): 1 or 0. */
    int (*pending)(const svc_tls *t);
    /* Why the last call returned -1 ("" if it did not). */
    const char *(*error)(const svc_tls *t);
} svc_tls_ops;

/* Whether the subjectAltName extension of crt lists the IP address ip (len
 * 4 or 16 bytes, network order): 1 or 0. For the verification of an address
 * URL, and for fuzz/tls_san_fuzz.c. */
struct mbedtls_x509_crt;
int svc__tls_san_has_ip(const struct mbedtls_x509_crt *crt, const unsigned char *ip, size_t len);

/* Defined by tls.c; NULL in a program that did not opt in. (The definition
 * is weak too, from this declaration: it is the only one, so that changes
 * nothing.) */
extern const svc_tls_ops svc__tls __attribute__((weak));

#endif
