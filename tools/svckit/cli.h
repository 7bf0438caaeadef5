/*
 * Internal to the svckit command-line tool (tools/svckit): shared between its
 * files, not part of the library. Layout:
 *
 *   main.c       command dispatch, --help, version, option values
 *   env.c        environment vectors and $VAR expansion
 *   procfile.c   Procfile parsing and the word splitting of its commands
 *   run.c        `svckit run`: options, the plan (instances, ports), dry run
 *   supervise.c  the supervisor loop: spawn, start order, restart, shutdown, reaping
 *   ready.c      readiness probes for the start order ([after=NAME], [ready=...])
 *   output.c     prefixed, coloured, never interleaved output lines
 *   gather.c     asking every instance on NATS ($SRV.*), answers bounded;
 *                what the NATS commands share (--nats, ms options, a round)
 *   status.c     `svckit status`: live instances from NATS discovery
 *   top.c        `svckit top`: the live picture from $SRV.LIVE, in place
 *   call.c       `svckit call`: one request to a service over NATS;
 *                `svckit routes`: every service's routes from $SRV.INFO
 *   nkey.c       `svckit nkey`: a new NKEY user for NATS, or a seed's public key
 *   new.c        `svckit new`: a service skeleton from templates/, which
 *                embed.sh compiles into the binary (svc__templates)
 *
 * The tool is single-threaded; nothing here is thread-safe.
 */
#ifndef SVCKIT_TOOL_CLI_H
#define SVCKIT_TOOL_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <uv.h>

#include "net/natsenv.h"
#include "net/nats.h"
#include "svckit/core.h"

/* The Makefile defines both from VERSION and git. */
#ifndef SVC_VERSION
#define SVC_VERSION "0.0.0"
#endif
#ifndef SVC_GIT_REV
#define SVC_GIT_REV "unknown"
#endif

/* ---- limits --------------------------------------------------------------- */

#define SVC__PROCFILE_MAX_BYTES (1024 * 1024) /* a Procfile larger than this is refused */
#define SVC__PROCFILE_MAX_LINE 8192           /* bytes in one Procfile line */
#define SVC__PROCFILE_MAX_ENTRIES 64          /* processes in one Procfile */
#define SVC__NAME_MAX 32                      /* bytes in a process name */
#define SVC__SCALE_MAX 64                     /* instances of one entry */
#define SVC__INSTANCES_MAX 256                /* instances in one run */
#define SVC__WORDS_MAX 512                    /* words in one command */
#define SVC__EXPANDED_MAX (64 * 1024)         /* bytes of one command after expansion */
#define SVC__LINE_MAX (16 * 1024)             /* longer output lines are cut in pieces */
#define SVC__INSTANCE_NAME_MAX (SVC__NAME_MAX + 12) /* "name.64", room for any int */
#define SVC__AFTER_MAX 8                      /* after=NAME options of one entry */
#define SVC__READY_PATH_MAX 200               /* bytes in a ready=/path */
#define SVC__SERVICE_NAME_MAX 40              /* bytes in `svckit new` NAME */

/* Exit codes of the tool. */
enum { SVC__EXIT_OK = 0, SVC__EXIT_FAIL = 1, SVC__EXIT_USAGE = 2 };

/* ---- environment (env.c) ---------------------------------------------------
 * A NULL-terminated vector of malloc'd "NAME=value" strings, usable as envp. */

typedef struct svc__env {
    char **vars; /* NULL-terminated; NULL while empty */
    size_t n;
    size_t cap;
} svc__env;

/* Copies the process environment (entries without '=' are skipped). */
int svc__env_from_environ(svc__env *e);
/* Sets name to value, replacing an earlier definition. */
int svc__env_set(svc__env *e, const char *name, const char *value);
/* Sets from one "NAME=value" string. SVC_EINVAL when there is no '='. */
int svc__env_put(svc__env *e, const char *assignment);
/* Value of the name of len bytes, or NULL when unset. Valid until the next set. */
const char *svc__env_get(const svc__env *e, const char *name, size_t len);
/* Frees every string; the struct is zeroed and reusable. NULL-safe. */
void svc__env_free(svc__env *e);

/* ---- words (procfile.c) ----------------------------------------------------
 * A command is split into words the way a POSIX shell would for a simple
 * command, without running a shell: blanks separate words; '...' is literal;
 * "..." and bare text expand $NAME, ${NAME} and ${NAME:-default} ("$$" is a
 * literal '$'); a backslash quotes the next character; '#' at the start of a
 * word starts a comment. Expanded values are never split again. Leading words
 * of the form NAME=value are assignments for the program's environment. */

typedef struct svc__words {
    char **argv;    /* NULL-terminated, malloc'd, assignments first */
    size_t n;       /* number of words */
    size_t nassign; /* leading NAME=value words */
} svc__words;

/* Splits cmd, expanding from env (NULL: nothing is set). On error returns
 * SVC_EINVAL or SVC_ERANGE and writes one line of explanation to err. */
int svc__words_split(const char *cmd, const svc__env *env, svc__words *out, char *err, size_t errlen);
void svc__words_free(svc__words *w);

/* ---- Procfile (procfile.c) ------------------------------------------------- */

/* How svckit tells that a process is ready, for those that wait for it. */
typedef enum {
    SVC__READY_STARTED = 0, /* no port, no ready=: once it is started */
    SVC__READY_TCP,         /* [ready=tcp], the default with a port: a TCP connect to it succeeds */
    SVC__READY_HTTP,        /* [ready=/path]: GET /path on its port answers 2xx */
} svc__ready_kind;

typedef struct svc__entry {
    char name[SVC__NAME_MAX + 1];
    int port;        /* from [port=N]; 0 when none */
    int scale_port;  /* from [scale_port=M]: instance i >= 1 listens on M+i-1; 0: N+i */
    int manual;      /* [manual]: started only when named */
    int stop_signal; /* [stop=SIG]: what stops it; SIGTERM when not given */
    svc__ready_kind ready;
    char ready_path[SVC__READY_PATH_MAX + 1]; /* SVC__READY_HTTP */
    /* [after=NAME ...]: started once these are ready. Names until the whole
     * file is read, then also their indexes in the Procfile. */
    char after[SVC__AFTER_MAX][SVC__NAME_MAX + 1];
    int after_idx[SVC__AFTER_MAX];
    int nafter;
    char *command;   /* the text after ':', malloc'd */
    int line;        /* 1-based line in the Procfile */
} svc__entry;

typedef struct svc__procfile {
    svc__entry *entries;
    size_t n;
} svc__procfile;

/* Parses a Procfile held in memory. Annotation values and (for checking) the
 * commands are expanded from env. Every after=NAME must name an entry, and
 * the after= relation must have no cycle. On error returns SVC_EINVAL or
 * SVC_ERANGE, with "line N: ..." in err, and leaves *pf empty. */
int svc__procfile_parse(const char *text, size_t len, const svc__env *env, svc__procfile *pf,
                        char *err, size_t errlen);
/* Reads and parses a file; SVC_EIO with the reason in err when unreadable. */
int svc__procfile_load(const char *path, const svc__env *env, svc__procfile *pf, char *err,
                       size_t errlen);
const svc__entry *svc__procfile_find(const svc__procfile *pf, const char *name);
void svc__procfile_free(svc__procfile *pf);

/* ---- output (output.c) -----------------------------------------------------
 * Every line goes to stdout with one write(2): "<name padded> | <text>\n",
 * the prefix coloured when colour is on. */

#define SVC__COLOR_SELF (-1) /* colour index of the supervisor's own lines */

void svc__out_setup(int color, int width);
int svc__out_color_enabled(void);
/* One line of text (no newline inside expected; it is written as given). */
void svc__out_line(const char *name, int color, const char *text, size_t len);
/* A message from the supervisor itself, prefixed "svckit". */
void svc__out_self(const char *fmt, ...) SVC_PRINTF(1, 2);

/* Bytes read from one child's stdout or stderr, split into lines. */
typedef struct svc__linebuf {
    char data[SVC__LINE_MAX];
    size_t len;
} svc__linebuf;

/* Emits every complete line in lb (and, when lb is full, a piece of at most
 * SVC__LINE_MAX bytes cut at a UTF-8 boundary), keeping the partial rest. With
 * eof set, the rest is emitted too. */
void svc__linebuf_drain(svc__linebuf *lb, const char *name, int color, int eof);

/* ---- the plan and the supervisor (run.c, supervise.c) -------------------- */

typedef struct svc__instance {
    char name[SVC__INSTANCE_NAME_MAX + 1]; /* "products", "products.2", ... */
    const svc__entry *entry;               /* its Procfile entry */
    int index;                             /* 0-based instance of its entry */
    int port;                              /* 0 when none */
    int color;                             /* palette index */
    int stop_signal;                       /* its entry's [stop=SIG] */
    svc__words words;                      /* argv (assignments stripped below) */
    char **argv;                           /* points into words.argv past assignments */
    svc__env env;                          /* the complete environment of the child */
} svc__instance;

typedef struct svc__plan {
    svc__instance *inst;
    size_t n;
    double shutdown_s; /* stop signal to SIGKILL */
    double ready_s;    /* SVCKIT_READY_TIMEOUT: the longest wait for an after= */
    int color;         /* stdout is a terminal that wants colour */
} svc__plan;

/* Runs the supervisor over a checked plan until a signal stops it. Entries
 * with after= start once every instance of those entries (in the plan) is
 * ready, or after ready_s with a warning. Returns the exit code: 0 when every
 * process stopped cleanly after its stop signal. */
int svc__supervise(svc__plan *plan);

/* ---- readiness probes (ready.c) -------------------------------------------- */

#define SVC__PROBE_TIMEOUT_MS 1000  /* one attempt: connect, and the answer for ready=/path */

typedef struct svc__probe {
    int fd;               /* -1 between attempts */
    int sent;             /* the GET is out; waiting for the status line */
    uint64_t deadline_ns; /* of this attempt */
    char buf[64];
    size_t len;
    char addr[64];        /* "127.0.0.1:8081", for messages */
    char why[160];        /* what the last failed attempt saw */
} svc__probe;

/* Starts an attempt on the instance's port: 0 under way (poll for
 * svc__probe_events), -1 failed at once (why set). */
int svc__probe_start(svc__probe *pr, const svc__instance *in, uint64_t now_ns);
/* What to poll the probe's fd for; 0 when no attempt is under way. */
short svc__probe_events(const svc__probe *pr);
/* Advances the attempt with what poll reported (0: nothing, which only checks
 * the deadline): 1 ready, 0 still under way, -1 failed (why set). The fd is
 * closed once it is not 0. */
int svc__probe_step(svc__probe *pr, const svc__instance *in, short revents, uint64_t now_ns);
void svc__probe_close(svc__probe *pr);

/* ---- asking every instance on NATS (gather.c) ------------------------------ */

#define SVC__GATHER_MAX_DOCS 4096 /* answers kept per round; more are dropped, counted */
/* Bytes of answers parsed per round: a server may allow 64 MiB messages, and
 * anyone on NATS may answer $SRV.*; jansson's objects take many times the
 * bytes they were parsed from (16 forged 600 KB answers grew `svckit top` to
 * 732 MB). Real answers are a few KiB each (a LIVE answer at most ~40 KiB),
 * so a round keeps about a hundred instances or more. */
#define SVC__GATHER_MAX_BYTES (512 * 1024)
#define SVC__GATHER_FIELD_MAX 48  /* bytes shown of a name, id, version or host from an answer */

typedef struct svc__gather {
    uv_loop_t *loop;
    svc_nats *nc;
    int connected, lost, stop_on_connect;
    size_t bytes;     /* of the answers parsed this round */
    size_t dropped;   /* answers not kept, in all: past the caps, or not an object with string name and id */
    json_t *docs;     /* this round's answers: objects with string name and id */
    char inbox[64];
} svc__gather;

#define SVC__GATHER_DEFAULT_URL "nats://127.0.0.1:4222"
#define SVC__GATHER_MAX_WAIT_MS 60000 /* the most --wait of status and routes takes */

/* What --nats defaults to: $NATS_URL when set and not empty, else
 * SVC__GATHER_DEFAULT_URL. */
const char *svc__gather_default_url(void);
/* The NATS settings of url (the servers) and of the environment (NATS_TLS_*,
 * NATS_NKEY_SEED_FILE, NATS_CREDS, NATS_NO_ADVERTISED), read as services
 * read them (net/natsenv.h). NULL, said on stderr as "svckit <cmd>: ...",
 * when url is "none" (messaging off) or a setting is bad. Loaded once per
 * process; freed, the secrets wiped, at exit. */
const svc__nats_env *svc__gather_env(const char *cmd, const char *url);
/* A whole number of milliseconds from 1 to max into *out; SVC_EINVAL
 * otherwise. */
int svc__gather_parse_ms(const char *s, int max, int *out);
/* Runs loop until uv_stop (an answer) or ms have passed. */
void svc__gather_run_for(uv_loop_t *loop, int ms);
/* Connects on loop (running it until connected, at most
 * SVC_NATS_CONNECT_TIMEOUT_MS: SVC_ETIMEDOUT) and subscribes the reply inbox.
 * On any result, svc__gather_close frees what was made. */
int svc__gather_open(svc__gather *g, uv_loop_t *loop, const svc__nats_env *env, const char *client_name);
/* svc__gather_open with another handler of what lands in the inbox
 * ("<inbox>.*"): on_msg owns each message; docs stay empty. */
int svc__gather_connect(svc__gather *g, uv_loop_t *loop, const svc__nats_env *env, const char *client_name,
                        svc_nats_msg_fn on_msg, void *ud);
/* Publishes $SRV.<verb> with the inbox as reply subject; answers land in docs
 * while the loop runs. */
int svc__gather_ask(svc__gather *g, const char *verb);
/* This round's answers (the caller owns them; NULL when out of memory), and
 * a fresh empty round. */
json_t *svc__gather_take(svc__gather *g);
/* Closes the connection and frees the answers. Run the loop after it so the
 * client's handles close. */
void svc__gather_close(svc__gather *g);
/* One round on a loop of its own: connects, asks $SRV.<verb> for each of
 * verbs (NULL-terminated), gathers the answers for wait_ms into *docs (the
 * caller owns them) and closes. Says on stderr, as "svckit <cmd>: ...", a
 * connection lost meanwhile or answers dropped (the list may be incomplete),
 * and any failure: SVC_ETIMEDOUT when NATS at url is unreachable; *docs is
 * then NULL. */
int svc__gather_round(const char *cmd, const char *url, const svc__nats_env *env, const char *const verbs[],
                      int wait_ms, json_t **docs);

/* A string from an answer made fit for a terminal: at most
 * SVC__GATHER_FIELD_MAX bytes of s into out (NUL-terminated), printable ASCII
 * only; anything else (escape sequences, control bytes, UTF-8 that would
 * break column widths) becomes '?'. NULL s gives "". */
void svc__gather_clean(char out[SVC__GATHER_FIELD_MAX + 1], const char *s);
/* The same into out of size bytes (size >= 1): at most size - 1 bytes of s. */
void svc__clean(char *out, size_t size, const char *s);
/* a + b, or UINT64_MAX when that overflows: sums of forged counters. */
static inline uint64_t svc__gather_sum(uint64_t a, uint64_t b) {
    uint64_t r;
    return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

/* Subcommands. */
/* The value of option opt at argv[*i], "opt V" (then *i moves past V) or
 * "opt=V"; NULL when argv[*i] is another option, or when V is missing
 * (then *missing is set). main.c. */
const char *svc__opt_value(int argc, char **argv, int *i, const char *opt, int *missing);
int svc__cmd_run(int argc, char **argv);
int svc__cmd_status(int argc, char **argv); /* status.c */
int svc__cmd_new(int argc, char **argv);    /* new.c */
int svc__cmd_top(int argc, char **argv);    /* top.c */
int svc__cmd_call(int argc, char **argv);   /* call.c */
int svc__cmd_routes(int argc, char **argv); /* call.c */
int svc__cmd_nkey(int argc, char **argv);   /* nkey.c */

/* ---- templates of `svckit new` (generated by embed.sh) -------------------- */

typedef struct svc__template {
    const char *path;                /* relative to the new service's folder */
    const unsigned char *data;       /* NUL-terminated */
    size_t len;
} svc__template;
extern const svc__template svc__templates[];
extern const size_t svc__templates_count;

/* 1 if s is a service name `svckit new` takes: 1 to SVC__SERVICE_NAME_MAX
 * of a-z, 0-9 and '-', neither first nor last a '-'. */
int svc__service_name_ok(const char *s);

/* Writes a word to b quoted for a POSIX shell when it needs quoting. */
void svc__shell_quote(svc_buf *b, const char *word);

#endif
