/*
 * Internal to src/http: the HTTP/1.1 transport. It accepts connections on
 * each worker's own SO_REUSEPORT listener, frames requests with http_parser
 * (and a scanner for what RFC 9112 forbids and the parser tolerates), fills
 * an svc_req and hands it to the runtime (svc__dispatch), and writes the
 * response the runtime gives back through svc_req_ops.finish. The runtime
 * reaches it only through svc__http_transport (runtime/module.h).
 *
 * Reading order: listen.c (the transport: listeners, descriptors, the
 * worker hooks), conn.c (bytes in, framing, timeouts, bytes out),
 * serialize.c (status line, headers, chunks).
 */
#ifndef SVC_HTTP_INTERNAL_H
#define SVC_HTTP_INTERNAL_H

#include <http_parser.h>
#include <stdatomic.h>
#include <uv.h>

#include "runtime/internal.h"

#define SVC_READ_BUFFER (64 * 1024)
/* Stop reading a connection when this much input waits behind a request. */
#define SVC_PENDING_HIGH_WATER (64 * 1024)
/* Stop processing pipelined requests while this much output is unsent. */
#define SVC_OUTPUT_HIGH_WATER (1024 * 1024)
/* After the last response on a closing connection, read and discard for this
 * long so that unread input does not turn our close into a RST that destroys
 * the response in flight. */
#define SVC_LINGER_MS 2000
/* Once a drain stops accepting (new SYNs dropped), the listener stays open
 * this long, so that handshakes already under way complete and are answered
 * rather than reset by its close. */
#define SVC_ACCEPT_GRACE_MS 200
/* The longest chunk-size line (size and extensions) of a chunked request
 * body; extensions are ignored, so no client needs more. */
#define SVC_HTTP_MAX_CHUNK_LINE 4096
/* Descriptors kept free of client connections for everything else a service
 * opens (log, loops, NATS, SQLite, outbound calls); the rest of RLIMIT_NOFILE
 * is shared by the workers' connections (at most half the limit is kept). */
#define SVC_FD_RESERVE 128
/* Connections accepted per wakeup of a listener, so that one busy listener
 * cannot hold its loop; the rest wait for the next turn. */
#define SVC_ACCEPT_BATCH 64
/* After accept fails for want of descriptors or memory, the listener is not
 * watched for this long, or until one of the worker's connections closes. */
#define SVC_ACCEPT_RETRY_MS 100
/* At most one log line per this many ms about failed accepts. */
#define SVC_ACCEPT_LOG_INTERVAL_MS 1000
/* A request refused at its head (head hooks, routing) whose Content-Length
 * body is at most this is read and dropped, keeping the connection; a
 * larger or chunked one is not read, and the connection closes. */
#define SVC_HTTP_DISCARD_BODY_BYTES (64 * 1024)

typedef struct svc_conn svc_conn;
typedef struct http_state http_state;
typedef struct http_worker http_worker;

/* Why accept failed, for http_accept_errors_total{reason}. */
enum { ACCEPT_ERR_EMFILE, ACCEPT_ERR_ENFILE, ACCEPT_ERR_OTHER };

/* The transport on one worker (that worker's loop thread only). */
struct http_worker {
    svc_worker *w;
    http_state *hs;
    int listen_fd;
    uv_poll_t listener;              /* readable: connections to accept */
    uv_timer_t accept_retry;
    int listening;
    int accept_paused;               /* listener not watched: at the cap, or out of fds */
    uint64_t accept_until;           /* stopping: the listener closes after this (loop time) */
    svc_conn *conns;                 /* every open connection, a list */
    int nconns;
    char *readbuf;                   /* shared by every connection of the loop */
    char date[64];                   /* "Date: ...\r\n", refreshed by the tick */
    size_t date_len;
    time_t date_s;                   /* the second date was made for */
};

/* The transport on one app. */
struct http_state {
    svc_app *app;
    http_worker *workers;            /* one per worker, from open */
    int nworkers;
    /* Per worker: connections (answered or lingering) at which a worker stops
     * accepting until one closes; derived from RLIMIT_NOFILE at start. */
    int accept_cap;
    atomic_llong accept_logged_ms;   /* the last line about failed accepts */
    atomic_long accept_unlogged;     /* failed accepts since that line */
    svc_series *s_rejected;          /* connections refused at the cap */
    svc_series *s_bad_requests;      /* framing errors */
    svc_series *s_accept_errors[3];  /* by ACCEPT_ERR_* */
};

/* Connection states, for timeouts and shutdown. */
enum {
    CONN_IDLE,       /* between requests (keep-alive), or fresh */
    CONN_HEADERS,    /* inside a request's header section */
    CONN_BODY,       /* inside a request's body */
    CONN_HANDLING,   /* request dispatched; input paused */
    CONN_LINGER,     /* final response sent, discarding input before close */
    CONN_CLOSED,
};

/* The raw-byte scanner (conn.c) that enforces, over a request's header
 * section and chunked body, what http_parser tolerates (bare CR or LF,
 * obs-fold, whitespace before a colon or after a chunk size) or does not
 * count (whitespace toward the size limit). */
typedef struct svc_hscan {
    unsigned char state;
    unsigned char first_line;        /* still in the request line */
    unsigned short line;             /* bytes of the current chunk-size line */
    size_t bytes;                    /* of the header section (or trailers) so far */
    uint64_t chunk_left;             /* chunk size being read, then its data left */
} svc_hscan;

struct svc_conn {
    uv_tcp_t tcp;                    /* first: handle <-> conn casts */
    svc_worker *w;
    http_worker *hw;
    svc_conn *prev, *next;
    http_parser parser;
    svc_hscan scan;
    int state;
    uint64_t deadline;               /* uv_now() ms; 0: none */
    size_t queued_mark;              /* unsent output at the last idle check */
    svc_req *req;                    /* the request being parsed or handled */
    char *pending;                   /* input not yet parsed (malloc) */
    size_t pending_len, pending_cap, pending_off;
    svc_buf out;                     /* output not yet handed to uv_write */
    size_t writing;                  /* bytes in uv_write requests */
    unsigned reading : 1;
    unsigned close_after : 1;        /* close once the output is written */
    unsigned closing : 1;            /* uv_close called */
    unsigned received : 1;           /* any byte of the current request */
    unsigned in_process : 1;         /* inside conn_process (re-entrancy) */
    unsigned eof : 1;                /* the client half-closed */
    unsigned resuming : 1;           /* inside conn_resume */
    unsigned resume_again : 1;       /* output went out meanwhile: look at pending again */
    int nrequests;
    char peer[48];
};

/* listen.c */
extern const svc_transport svc__http_transport;
/* The transport's metrics (open; the fuzz target calls it too). */
void svc__http_metrics_setup(http_state *hs);

/* conn.c */
extern const svc_req_ops svc__http_req_ops;
/* Starts watching hw's listening socket (hw->listen_fd) on its loop. */
int svc__http_listen(http_worker *hw);
/* Timeouts of hw's connections, the Date header; once stopping, the
 * listener's close when its grace is over. */
void svc__http_tick(http_worker *hw);
/* A drain's first step: new handshakes are refused; the listener closes
 * SVC_ACCEPT_GRACE_MS later (conn.c says why). */
void svc__http_stop_accepting(http_worker *hw);
/* Closes the idle connections (force: every connection, and the listener). */
void svc__http_close_idle(http_worker *hw, int force);
/* Serves an already-connected socket (non-blocking) on hw, from its loop
 * thread; on success the connection owns fd, else the caller still does.
 * Used to drain the accept queue, and by the fuzz target (fuzz/http_fuzz.c),
 * which drives the real connection code over a socketpair. */
int svc__conn_open_fd(http_worker *hw, int fd);
/* Queues what is in c->out for the client. */
void svc__conn_flush(svc_conn *c);

/* serialize.c */
/* Status line, headers and body of a final response, into out. */
void svc__http_serialize(http_worker *hw, svc_res *res, svc_buf *out);
/* svc_res_stream_start's head, and one chunk of a streamed body, into out. */
void svc__http_stream_head(http_worker *hw, svc_res *res, svc_buf *out);
void svc__http_stream_chunk(svc_res *res, svc_buf *out, const void *data, size_t len);
/* Refreshes hw's Date header if the second changed. */
void svc__http_date_tick(http_worker *hw);

#endif
