/*
 * `svckit run`: options, the plan (which instances, with which port, argv and
 * environment), the checks done before anything starts, and --dry-run.
 *
 * Everything that can be known before the first fork is checked here, so that
 * a mistake (unknown name, busy port, program not built) stops the run at once
 * with one clear line instead of a restart loop.
 */
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define DEFAULT_SHUTDOWN_S 10.0
#define SHUTDOWN_GRACE_S 2.0   /* on top of SHUTDOWN_TIMEOUT: time to exit after draining */
#define SHUTDOWN_MAX_S 3600.0
#define DEFAULT_READY_S 30.0   /* SVCKIT_READY_TIMEOUT: the longest wait for an after= */

static const char run_usage[] =
    "usage: svckit run [options] [name ...]\n"
    "\n"
    "Starts the processes of a Procfile, prefixes every line they print with\n"
    "their name, restarts any that exits (backoff 0.1 s doubling to 10 s), and on\n"
    "Ctrl-C or SIGTERM stops them all: SIGTERM (or the entry's [stop=SIG]),\n"
    "then SIGKILL after the timeout. An entry with [after=NAME] starts once\n"
    "NAME is ready.\n"
    "With names, only those run; without, every entry not marked [manual].\n"
    "\n"
    "options:\n"
    "  -f, --procfile FILE  the Procfile (default ./Procfile)\n"
    "  -s, --scale NAME=N   run N instances of NAME: NAME, NAME.2, ... NAME.N,\n"
    "                       with PORT p, p+1, ... (also selects NAME)\n"
    "      --skip-missing   skip entries whose program is not there (not built)\n"
    "  -n, --dry-run        print name, port and command of each instance; exit\n"
    "  -h, --help           this text\n"
    "\n"
    "Procfile lines:  name [port=N, scale_port=M, stop=SIG, after=NAME, ready=PROBE, manual]: command args...\n"
    "  $NAME, ${NAME}, ${NAME:-default} expand from the environment; leading\n"
    "  NAME=value words set the child's environment; no shell is involved.\n"
    "  Each child gets PORT (when declared), SVCKIT_INSTANCE (0, 1, ...) and\n"
    "  SVCKIT_PROCESS (its name). Instance i of a --scale gets PORT N+i, or\n"
    "  M+i-1 with scale_port=M (a range that takes no other entry's port).\n"
    "  stop=SIG (TERM, INT, QUIT, HUP, USR1, USR2) is the signal that stops\n"
    "  the entry's processes; default TERM.\n"
    "  after=NAME (repeatable): start only when every instance of NAME is\n"
    "  ready. ready=tcp (the default with a port: a TCP connect succeeds) or\n"
    "  ready=/path (GET /path on its port answers 2xx) says when that is;\n"
    "  without a port, an entry is ready once started.\n"
    "  On a terminal each child also gets LOG_FORMAT=text and, with colour,\n"
    "  LOG_COLOR=always, unless they are set.\n"
    "\n"
    "environment:\n"
    "  SHUTDOWN_TIMEOUT  seconds to drain after the stop signal (default 10);\n"
    "                    svckit sends SIGKILL 2 s after that\n"
    "  SVCKIT_READY_TIMEOUT  seconds an entry waits for its after= (default 30);\n"
    "                    then it starts anyway, with a warning\n"
    "  NO_COLOR          no colours even on a terminal\n"
    "\n"
    "exit status: 0 when every process stopped cleanly, 1 on failure, 2 on a\n"
    "bad command line or Procfile.\n";

typedef struct scale_opt {
    char name[SVC__NAME_MAX + 1];
    int n;
} scale_opt;

typedef struct run_opts {
    const char *procfile;
    scale_opt scale[SVC__PROCFILE_MAX_ENTRIES];
    size_t nscale;
    const char *names[SVC__PROCFILE_MAX_ENTRIES];
    size_t nnames;
    int skip_missing;
    int dry_run;
    int tty; /* stdout is a terminal */
} run_opts;

static int usage_error(const char *fmt, ...) SVC_PRINTF(1, 2);
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "svckit run: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see svckit run --help)\n");
    va_end(ap);
    return SVC__EXIT_USAGE;
}

static int parse_scale(run_opts *o, const char *arg) {
    const char *eq = strchr(arg, '=');
    int64_t n;
    if (!eq || eq == arg || (size_t)(eq - arg) > SVC__NAME_MAX || svc_parse_i64(eq + 1, &n) != SVC_OK ||
        n < 0 || n > SVC__SCALE_MAX)
        return usage_error("--scale wants NAME=N with N from 0 to 64, got '%s'", arg);
    scale_opt *s = NULL;
    for (size_t i = 0; i < o->nscale; i++)
        if (strlen(o->scale[i].name) == (size_t)(eq - arg) && !memcmp(o->scale[i].name, arg, (size_t)(eq - arg)))
            s = &o->scale[i];
    if (!s) {
        if (o->nscale == SVC__PROCFILE_MAX_ENTRIES) return usage_error("too many --scale options");
        s = &o->scale[o->nscale++];
        memcpy(s->name, arg, (size_t)(eq - arg));
        s->name[eq - arg] = '\0';
    }
    s->n = (int)n;
    return SVC__EXIT_OK;
}

/* Returns -1 when options are fine, else the exit code. */
static int parse_opts(run_opts *o, int argc, char **argv) {
    int only_names = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_names || a[0] != '-' || a[1] == '\0') {
            if (o->nnames == SVC__PROCFILE_MAX_ENTRIES) return usage_error("too many names");
            o->names[o->nnames++] = a;
        } else if (!strcmp(a, "--")) {
            only_names = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(run_usage, stdout);
            return SVC__EXIT_OK;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--procfile")) {
            if (++i == argc) return usage_error("%s needs a file", a);
            o->procfile = argv[i];
        } else if (!strncmp(a, "--procfile=", 11)) {
            o->procfile = a + 11;
        } else if (!strcmp(a, "-s") || !strcmp(a, "--scale")) {
            if (++i == argc) return usage_error("%s needs NAME=N", a);
            if (parse_scale(o, argv[i]) != SVC__EXIT_OK) return SVC__EXIT_USAGE;
        } else if (!strncmp(a, "--scale=", 8)) {
            if (parse_scale(o, a + 8) != SVC__EXIT_OK) return SVC__EXIT_USAGE;
        } else if (!strcmp(a, "--skip-missing")) {
            o->skip_missing = 1;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--dry-run")) {
            o->dry_run = 1;
        } else {
            return usage_error("unknown option '%s'", a);
        }
    }
    return -1;
}

/* A number of seconds from the environment (fractions allowed), 0 to max. */
static int env_seconds(const svc__env *env, const char *name, double def, double max, double *out) {
    const char *v = svc__env_get(env, name, strlen(name));
    double s = def;
    if (v && *v) {
        char *end;
        errno = 0;
        s = strtod(v, &end);
        if (errno || *end || end == v || !isfinite(s) || s < 0 || s > max) {
            fprintf(stderr, "svckit: %s must be a number of seconds from 0 to %.0f, got '%s'\n", name, max, v);
            return SVC_EINVAL;
        }
    }
    *out = s;
    return SVC_OK;
}

/* 1 when the program of argv[0] can be executed, resolved like execvp. */
static int program_exists(const char *prog, const svc__env *env) {
    struct stat st;
    if (strchr(prog, '/')) return stat(prog, &st) == 0 && S_ISREG(st.st_mode) && access(prog, X_OK) == 0;
    const char *path = svc__env_get(env, "PATH", 4);
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    char buf[4096];
    for (const char *p = path;;) {
        const char *colon = strchr(p, ':');
        size_t dl = colon ? (size_t)(colon - p) : strlen(p);
        int n = dl ? snprintf(buf, sizeof buf, "%.*s/%s", (int)dl, p, prog) : snprintf(buf, sizeof buf, "%s", prog);
        if (n > 0 && (size_t)n < sizeof buf && stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
            return 1;
        if (!colon) return 0;
        p = colon + 1;
    }
}

static void plan_free(svc__plan *plan) {
    for (size_t i = 0; i < plan->n; i++) {
        svc__words_free(&plan->inst[i].words);
        svc__env_free(&plan->inst[i].env);
    }
    free(plan->inst);
    memset(plan, 0, sizeof *plan);
}

static int selected(const run_opts *o, const svc__entry *e, int *scale) {
    *scale = 1;
    int named = 0, scaled = 0;
    for (size_t i = 0; i < o->nnames; i++)
        if (!strcmp(o->names[i], e->name)) named = 1;
    for (size_t i = 0; i < o->nscale; i++)
        if (!strcmp(o->scale[i].name, e->name)) {
            *scale = o->scale[i].n;
            scaled = 1;
        }
    if (scaled) return *scale > 0;
    return o->nnames ? named : !e->manual;
}

/* Fills one instance: environment, then argv expanded against it. */
static int build_instance(svc__instance *in, const svc__entry *e, int index, const svc__env *base, int tty,
                          int color, char *err, size_t errlen) {
    in->entry = e;
    in->index = index;
    if (index == 0) snprintf(in->name, sizeof in->name, "%s", e->name);
    else snprintf(in->name, sizeof in->name, "%s.%d", e->name, index + 1);
    /* Extra instances take ports of their own range when the entry names one,
     * so that they never take another service's port. */
    int port = !e->port ? 0 : index && e->scale_port ? e->scale_port + index - 1 : e->port + index;
    if (port > 65535) {
        snprintf(err, errlen, "%s: port %d is above 65535", in->name, port);
        return SVC_ERANGE;
    }
    in->port = port;
    in->stop_signal = e->stop_signal ? e->stop_signal : SIGTERM;
    for (size_t i = 0; i < base->n; i++)
        if (svc__env_put(&in->env, base->vars[i]) != SVC_OK) goto oom;
    char num[16];
    if (in->port) {
        snprintf(num, sizeof num, "%d", in->port);
        if (svc__env_set(&in->env, "PORT", num) != SVC_OK) goto oom;
    }
    snprintf(num, sizeof num, "%d", index);
    if (svc__env_set(&in->env, "SVCKIT_INSTANCE", num) != SVC_OK) goto oom;
    if (svc__env_set(&in->env, "SVCKIT_PROCESS", in->name) != SVC_OK) goto oom;
    char werr[160];
    if (svc__words_split(e->command, &in->env, &in->words, werr, sizeof werr) != SVC_OK) {
        snprintf(err, errlen, "%s: %s", in->name, werr);
        return SVC_EINVAL;
    }
    /* Inline assignments win over everything, as with env(1). */
    for (size_t i = 0; i < in->words.nassign; i++)
        if (svc__env_put(&in->env, in->words.argv[i]) != SVC_OK) goto oom;
    /* The child writes into a pipe, but its lines end on our terminal: say so,
     * unless the user has chosen (empty is no choice, as for the services). */
    const char *fmt = svc__env_get(&in->env, "LOG_FORMAT", 10);
    if (tty && !(fmt && *fmt) && svc__env_set(&in->env, "LOG_FORMAT", "text") != SVC_OK) goto oom;
    const char *col = svc__env_get(&in->env, "LOG_COLOR", 9);
    if (color && !(col && *col) && svc__env_set(&in->env, "LOG_COLOR", "always") != SVC_OK) goto oom;
    in->argv = in->words.argv + in->words.nassign;
    return SVC_OK;
oom:
    snprintf(err, errlen, "out of memory");
    return SVC_ENOMEM;
}

static int build_plan(const run_opts *o, const svc__procfile *pf, const svc__env *base, svc__plan *plan) {
    for (size_t i = 0; i < o->nnames; i++)
        if (!svc__procfile_find(pf, o->names[i])) goto unknown_name;
    for (size_t i = 0; i < o->nscale; i++)
        if (!svc__procfile_find(pf, o->scale[i].name)) {
            fprintf(stderr, "svckit: --scale %s: no such process in %s\n", o->scale[i].name, o->procfile);
            return SVC__EXIT_USAGE;
        }
    size_t total = 0;
    for (size_t i = 0; i < pf->n; i++) {
        int scale;
        if (selected(o, &pf->entries[i], &scale)) total += (size_t)scale;
    }
    if (total > SVC__INSTANCES_MAX) {
        fprintf(stderr, "svckit: %zu instances is more than the limit of %d\n", total, SVC__INSTANCES_MAX);
        return SVC__EXIT_USAGE;
    }
    plan->inst = calloc(total ? total : 1, sizeof *plan->inst);
    if (!plan->inst) {
        fprintf(stderr, "svckit: out of memory\n");
        return SVC__EXIT_FAIL;
    }
    int color = 0;
    for (size_t i = 0; i < pf->n; i++) {
        const svc__entry *e = &pf->entries[i];
        int scale;
        if (!selected(o, e, &scale)) continue;
        for (int k = 0; k < scale; k++) {
            svc__instance *in = &plan->inst[plan->n++];
            char err[300];
            int rc = build_instance(in, e, k, base, o->tty, plan->color, err, sizeof err);
            if (rc != SVC_OK) {
                fprintf(stderr, "svckit: %s\n", err);
                return rc == SVC_ENOMEM ? SVC__EXIT_FAIL : SVC__EXIT_USAGE;
            }
            in->color = color++;
            if (!program_exists(in->argv[0], &in->env)) {
                if (!o->skip_missing) {
                    fprintf(stderr,
                            "svckit: %s: program '%s' not found or not executable (Procfile line %d; not built "
                            "yet? --skip-missing skips it)\n",
                            in->name, in->argv[0], e->line);
                    return SVC__EXIT_FAIL;
                }
                if (k == 0) fprintf(stderr, "svckit: skipping %s: '%s' not found\n", e->name, in->argv[0]);
                svc__words_free(&in->words);
                svc__env_free(&in->env);
                memset(in, 0, sizeof *in);
                plan->n--;
                color--;
            }
        }
    }
    if (plan->n == 0) {
        fprintf(stderr, "svckit: nothing to run\n");
        return SVC__EXIT_FAIL;
    }
    return -1;
unknown_name:;
    svc_buf b = {0};
    for (size_t i = 0; i < pf->n; i++) svc_buf_printf(&b, "%s%s", i ? ", " : "", pf->entries[i].name);
    for (size_t i = 0; i < o->nnames; i++)
        if (!svc__procfile_find(pf, o->names[i]))
            fprintf(stderr, "svckit: no process '%s' in %s (known: %s)\n", o->names[i], o->procfile,
                    b.len ? b.data : "none");
    svc_buf_free(&b);
    return SVC__EXIT_USAGE;
}

/* 1 when binding host:port fails with "address in use". The check binds the
 * address the service will listen on (HOST when it is numeric, else the
 * wildcard addresses, which conflict with a listener on any address), with
 * SO_REUSEADDR so that TIME_WAIT leftovers of a previous run do not count.
 * The socket never listens. Other failures are left for the service to
 * report. */
static int port_busy(const char *host, int port) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    if (host && *host && getaddrinfo(host, service, &hints, &res) != 0) res = NULL;
    if (!res && getaddrinfo(NULL, service, &hints, &res) != 0) return 0;
    int busy = 0;
    for (struct addrinfo *ai = res; ai && !busy; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno == EADDRINUSE) busy = 1;
        close(fd);
    }
    freeaddrinfo(res);
    return busy;
}

/* Fails when two instances want one port or a port is taken already. */
static int check_ports(const svc__plan *plan) {
    for (size_t i = 0; i < plan->n; i++) {
        const svc__instance *a = &plan->inst[i];
        if (!a->port) continue;
        for (size_t j = 0; j < i; j++)
            if (plan->inst[j].port == a->port) {
                fprintf(stderr, "svckit: %s and %s both want port %d; change a [port=N] or a --scale\n",
                        plan->inst[j].name, a->name, a->port);
                return SVC__EXIT_USAGE;
            }
        if (port_busy(svc__env_get(&a->env, "HOST", 4), a->port)) {
            fprintf(stderr,
                    "svckit: port %d for %s is already in use; stop what listens there "
                    "(ss -ltnp 'sport = :%d' shows it) or give %s another port\n",
                    a->port, a->name, a->port, a->name);
            return SVC__EXIT_FAIL;
        }
    }
    return -1;
}

static void print_plan(const svc__plan *plan) {
    int w = 4;
    for (size_t i = 0; i < plan->n; i++)
        if ((int)strlen(plan->inst[i].name) > w) w = (int)strlen(plan->inst[i].name);
    for (size_t i = 0; i < plan->n; i++) {
        const svc__instance *in = &plan->inst[i];
        svc_buf b = {0};
        for (size_t k = 0; k < in->words.n; k++) {
            if (k) svc_buf_putc(&b, ' ');
            svc__shell_quote(&b, in->words.argv[k]);
        }
        char port[8] = "-";
        if (in->port) snprintf(port, sizeof port, "%d", in->port);
        printf("%-*s  %-5s  %s\n", w, in->name, port, b.data ? b.data : "");
        svc_buf_free(&b);
    }
    fflush(stdout);
}

int svc__cmd_run(int argc, char **argv) {
    run_opts o = {.procfile = "Procfile"};
    int rc = parse_opts(&o, argc, argv);
    if (rc >= 0) return rc;

    svc__env base = {0};
    svc__procfile pf = {0};
    svc__plan plan = {0};
    char err[512];
    if (svc__env_from_environ(&base) != SVC_OK) {
        fprintf(stderr, "svckit: out of memory\n");
        rc = SVC__EXIT_FAIL;
        goto out;
    }
    if (env_seconds(&base, "SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_S, SHUTDOWN_MAX_S, &plan.shutdown_s) != SVC_OK ||
        env_seconds(&base, "SVCKIT_READY_TIMEOUT", DEFAULT_READY_S, SHUTDOWN_MAX_S, &plan.ready_s) != SVC_OK) {
        rc = SVC__EXIT_USAGE;
        goto out;
    }
    plan.shutdown_s += SHUTDOWN_GRACE_S;
    const char *no_color = svc__env_get(&base, "NO_COLOR", 8), *term = svc__env_get(&base, "TERM", 4);
    o.tty = isatty(STDOUT_FILENO);
    plan.color = o.tty && !(no_color && *no_color) && !(term && !strcmp(term, "dumb"));
    int prc = svc__procfile_load(o.procfile, &base, &pf, err, sizeof err);
    if (prc != SVC_OK) {
        fprintf(stderr, "svckit: %s\n", err);
        if (prc == SVC_EIO && !strcmp(o.procfile, "Procfile"))
            fprintf(stderr, "svckit: run it where the Procfile is, or name one with -f FILE\n");
        rc = prc == SVC_EIO ? SVC__EXIT_FAIL : SVC__EXIT_USAGE;
        goto out;
    }
    if ((rc = build_plan(&o, &pf, &base, &plan)) >= 0) goto out;
    if (o.dry_run) {
        print_plan(&plan);
        rc = SVC__EXIT_OK;
        goto out;
    }
    if ((rc = check_ports(&plan)) >= 0) goto out;
    rc = svc__supervise(&plan);
out:
    plan_free(&plan);
    svc__procfile_free(&pf);
    svc__env_free(&base);
    return rc;
}
