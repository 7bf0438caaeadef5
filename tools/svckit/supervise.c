/*
 * The supervisor loop behind `svckit run`.
 *
 * One thread, one poll(2) over a signalfd and every child's stdout and stderr
 * pipe. Each child runs in its own process group, so a signal reaches the
 * helpers it forked too, and the terminal's Ctrl-C reaches only the
 * supervisor, which then stops everyone in order. The supervisor makes itself
 * a child subreaper: descendants orphaned by a dying child become its
 * children, are reaped, and are waited for at shutdown. That is also what it
 * takes to be PID 1 in a container.
 *
 * Start order: an instance whose entry says [after=NAME] waits until every
 * instance of NAME in the plan is ready (ready.c probes it), or until
 * SVCKIT_READY_TIMEOUT has passed since the last of them started; then it
 * starts anyway, with one warning. Restarts after a crash do not wait.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

extern char **environ;

#define BACKOFF_MIN_MS 100        /* first restart delay */
#define BACKOFF_MAX_MS 10000      /* the delay doubles up to this */
#define BACKOFF_RESET_NS (30ull * 1000000000ull) /* a run this long resets the delay */
#define KILL_WAIT_NS (5ull * 1000000000ull)      /* after SIGKILL, give up waiting after this */
#define KILL_RESCAN_MS 100        /* while killing, look for new orphans this often */
#define STREAMS_MAX (4 * SVC__INSTANCES_MAX)     /* open pipes, old ones included */
#define DRAIN_READS_MAX 64        /* reads of one pipe when a child exits */
#define PROBE_INTERVAL_MS 100     /* between readiness attempts */

typedef struct proc {
    svc__instance *in;
    pid_t pid;              /* 0 when not running; also its process group */
    pid_t pgid;             /* the process group it last started (0: never started);
                               it outlives pid while helpers remain in it */
    unsigned signalled;     /* the signal_all round that last signalled pgid */
    uint64_t started_ns;
    uint64_t first_started_ns; /* 0 until the first start */
    uint64_t restart_at_ns; /* when pid is 0 and no stop is under way */
    uint64_t backoff_ms;
    int waiting;            /* not started yet: waits for its after= */
    int watched;            /* another instance waits for this one */
    int ready;              /* watched, and found ready since it last started */
    uint64_t probe_at_ns;   /* the next attempt, when none is under way */
    svc__probe probe;
} proc;

/* One pipe from a child. It outlives the child when a grandchild keeps it. */
typedef struct stream {
    int fd;
    proc *owner;
    pid_t pid; /* the child it was made for */
    svc__linebuf lb;
} stream;

static struct {
    proc *procs;
    size_t nprocs;
    stream *streams[STREAMS_MAX];
    size_t nstreams;
    int sigfd;
    int devnull;
    int stopping;
    int killing;
    int unclean;
    double shutdown_s;
    double ready_s;
    uint64_t deadline_ns; /* stopping: when SIGKILL comes; killing: when we give up */
} S;

static const int handled_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD};
#define NHANDLED (sizeof handled_signals / sizeof handled_signals[0])

static const char *sig_name(int sig) {
    const char *n = sigabbrev_np(sig);
    return n ? n : "?";
}

static void describe(int status, char *out, size_t len) {
    if (WIFEXITED(status)) {
        snprintf(out, len, "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        snprintf(out, len, "killed by signal %d (SIG%s)%s", WTERMSIG(status), sig_name(WTERMSIG(status)),
                 WCOREDUMP(status) ? ", core dumped" : "");
    } else {
        snprintf(out, len, "changed state (0x%x)", (unsigned)status);
    }
}

/* After its stop signal: exit 0, or dying of (or exiting as the shell does
 * after) SIGTERM, SIGINT or the stop signal it was sent, is a clean stop. */
static int clean_stop(int status, int stop_sig) {
    if (WIFEXITED(status)) {
        int c = WEXITSTATUS(status);
        return c == 0 || c == 128 + SIGTERM || c == 128 + SIGINT || c == 128 + stop_sig;
    }
    if (!WIFSIGNALED(status)) return 0;
    int sig = WTERMSIG(status);
    return sig == SIGTERM || sig == SIGINT || sig == stop_sig;
}

/* ---- streams --------------------------------------------------------------- */

static void stream_close(size_t i) {
    stream *s = S.streams[i];
    svc__linebuf_drain(&s->lb, s->owner->in->name, s->owner->in->color, 1);
    close(s->fd);
    free(s);
    S.streams[i] = S.streams[--S.nstreams];
}

/* Reads at most max_reads times, or until the pipe is empty; returns 0 once
 * the stream is closed (at EOF). The bound keeps a chatty grandchild from
 * holding the loop. */
static int stream_read(size_t i, int max_reads) {
    stream *s = S.streams[i];
    while (max_reads-- > 0) {
        ssize_t r = read(s->fd, s->lb.data + s->lb.len, sizeof s->lb.data - s->lb.len);
        if (r > 0) {
            s->lb.len += (size_t)r;
            svc__linebuf_drain(&s->lb, s->owner->in->name, s->owner->in->color, 0);
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) return 1;
        stream_close(i);
        return 0;
    }
    return 1;
}

static int stream_add(int fd, proc *p) {
    if (S.nstreams == STREAMS_MAX) {
        /* Only pipes kept open by stray grandchildren pile up; drop the oldest. */
        for (size_t i = 0; i < S.nstreams; i++)
            if (S.streams[i]->pid != S.streams[i]->owner->pid) {
                stream_close(i);
                break;
            }
        if (S.nstreams == STREAMS_MAX) return SVC_EAGAIN;
    }
    stream *s = malloc(sizeof *s);
    if (!s) return SVC_ENOMEM;
    s->fd = fd;
    s->owner = p;
    s->pid = p->pid;
    s->lb.len = 0;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    S.streams[S.nstreams++] = s;
    return SVC_OK;
}

/* ---- children -------------------------------------------------------------- */

/* Between fork and exec: only async-signal-safe calls. */
static void child_exec(proc *p, int outw, int errw, int exw, pid_t parent) {
    setpgid(0, 0);
    /* The safety net: if the supervisor dies without stopping us, we get our
     * stop signal anyway. */
    prctl(PR_SET_PDEATHSIG, p->in->stop_signal);
    if (getppid() != parent) _exit(127);
    if (dup2(S.devnull, STDIN_FILENO) < 0 || dup2(outw, STDOUT_FILENO) < 0 || dup2(errw, STDERR_FILENO) < 0)
        goto fail;
    /* Undo what exec would keep: ignored signals (our SIGPIPE, and whatever
     * svckit itself was started ignoring, as nohup ignores SIGHUP: a child
     * that inherits an ignored stop signal never stops on it) and the blocked
     * ones. */
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    environ = p->in->env.vars;
    execvp(p->in->argv[0], p->in->argv);
fail:;
    int e = errno;
    ssize_t w = write(exw, &e, sizeof e);
    (void)w;
    _exit(127);
}

static void schedule_restart(proc *p, const char *what) {
    uint64_t now = svc_now_ns();
    if (p->started_ns && now - p->started_ns >= BACKOFF_RESET_NS) p->backoff_ms = BACKOFF_MIN_MS;
    uint64_t delay = p->backoff_ms;
    p->backoff_ms = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
    p->restart_at_ns = now + delay * 1000000ull;
    svc__out_self("%s %s, restarting in %gs", p->in->name, what, (double)delay / 1000.0);
}

/* 1 when p's entry says after= q's entry. */
static int waits_for(const proc *p, const proc *q) {
    const svc__entry *e = p->in->entry;
    for (int k = 0; k < e->nafter; k++)
        if (!strcmp(e->after[k], q->in->entry->name)) return 1;
    return 0;
}

static void spawn(proc *p) {
    int out[2] = {-1, -1}, err[2] = {-1, -1}, ex[2] = {-1, -1};
    char why[160];
    if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || pipe2(ex, O_CLOEXEC)) {
        snprintf(why, sizeof why, "could not start (pipe: %s)", strerror(errno));
        goto fail;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, sizeof why, "could not start (fork: %s)", strerror(errno));
        goto fail;
    }
    if (pid == 0) child_exec(p, out[1], err[1], ex[1], parent);
    /* Also here, so the group exists before we ever signal it. */
    setpgid(pid, pid);
    close(out[1]);
    close(err[1]);
    close(ex[1]);
    int e = 0;
    ssize_t r;
    do r = read(ex[0], &e, sizeof e);
    while (r < 0 && errno == EINTR);
    close(ex[0]);
    p->pid = p->pgid = pid;
    p->started_ns = svc_now_ns();
    if (!p->first_started_ns) p->first_started_ns = p->started_ns;
    p->restart_at_ns = 0;
    p->probe_at_ns = p->started_ns;
    if (stream_add(out[0], p) != SVC_OK) close(out[0]);
    if (stream_add(err[0], p) != SVC_OK) close(err[0]);
    if (r == (ssize_t)sizeof e) {
        svc__out_self("cannot run %s: %s: %s", p->in->name, p->in->argv[0], strerror(e));
    } else {
        if (p->in->port) svc__out_self("started %s (pid %d, PORT=%d)", p->in->name, (int)pid, p->in->port);
        else svc__out_self("started %s (pid %d)", p->in->name, (int)pid);
        if (p->watched && p->in->entry->ready == SVC__READY_STARTED) p->ready = 1;
    }
    return;
fail:
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0) close(out[i]);
        if (err[i] >= 0) close(err[i]);
        if (ex[i] >= 0) close(ex[i]);
    }
    p->started_ns = 0;
    schedule_restart(p, why);
}

static proc *find_proc(pid_t pid) {
    for (size_t i = 0; i < S.nprocs; i++)
        if (S.procs[i].pid == pid) return &S.procs[i];
    return NULL;
}

static void on_exit_status(proc *p, int status) {
    /* Print what it said before it died ahead of the news of its death. */
    for (size_t i = S.nstreams; i-- > 0;)
        if (S.streams[i]->pid == p->pid) stream_read(i, DRAIN_READS_MAX);
    pid_t pgid = p->pid;
    p->pid = 0;
    p->ready = 0;
    svc__probe_close(&p->probe);
    char what[96];
    describe(status, what, sizeof what);
    if (S.stopping) {
        if (clean_stop(status, p->in->stop_signal)) {
            svc__out_self("%s stopped", p->in->name);
        } else {
            S.unclean = 1;
            svc__out_self("%s %s", p->in->name, what);
        }
        return;
    }
    /* Whatever it left behind in its group goes too: a restart starts clean
     * and nothing keeps holding its port. */
    kill(-pgid, SIGKILL);
    schedule_restart(p, what);
}

/* Reaps every exited child, ours or adopted. Returns 1 while any child is left. */
static int reap(void) {
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            proc *p = find_proc(pid);
            if (p) on_exit_status(p, status);
            continue;
        }
        if (pid == 0) return 1;
        if (errno == EINTR) continue;
        return 0; /* ECHILD */
    }
}

/* Sends sig to every process group we started and to every other child we
 * have (orphans we adopted, or what we inherited as PID 1). With own_stop,
 * each group gets its entry's stop signal instead, and so does an orphan
 * still in an entry's group (a helper whose parent died): that group got it
 * above while its leader runs, so the orphan is then left alone, never sent
 * a second, other signal. Other orphans get sig, as nothing tells which
 * entry they came from. */
static proc *group_owner(pid_t pgrp) {
    for (size_t i = 0; i < S.nprocs; i++)
        if (S.procs[i].pgid == pgrp) return &S.procs[i];
    return NULL;
}

static void signal_all(int sig, int own_stop) {
    static unsigned round;
    round++;
    for (size_t i = 0; i < S.nprocs; i++)
        if (S.procs[i].pid > 0) kill(-S.procs[i].pid, own_stop ? S.procs[i].in->stop_signal : sig);
    /* A /proc of another PID namespace (unshare -p without --mount-proc) would
     * make us signal strangers whose parent has our number: use it only when
     * /proc/self is us. */
    pid_t self = getpid(), own_group = getpgrp();
    char link[32];
    ssize_t ln = readlink("/proc/self", link, sizeof link - 1);
    if (ln <= 0) return;
    link[ln] = '\0';
    int64_t proc_self;
    if (svc_parse_i64(link, &proc_self) != SVC_OK || proc_self != self) return;
    DIR *d = opendir("/proc");
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9') continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%.20s/stat", de->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = '\0';
        /* "pid (comm) state ppid pgrp ...": comm may hold anything, even ')'. */
        char *rp = strrchr(buf, ')');
        int pid, ppid, pgrp;
        char state;
        if (!rp || sscanf(buf, "%d", &pid) != 1 || sscanf(rp + 1, " %c %d %d", &state, &ppid, &pgrp) != 3) continue;
        if (ppid != self || find_proc(pid)) continue;
        proc *owner = pgrp > 1 ? group_owner(pgrp) : NULL;
        if (owner) {
            /* Once a round however many orphans the group holds. */
            if (owner->pid <= 0 && owner->signalled != round) {
                owner->signalled = round;
                kill(-pgrp, own_stop ? owner->in->stop_signal : sig);
            }
            continue;
        }
        if (pgrp > 1 && pgrp != own_group) kill(-pgrp, sig);
        kill(pid, sig);
    }
    closedir(d);
}

static void begin_stop(int sig) {
    size_t running = 0;
    for (size_t i = 0; i < S.nprocs; i++) {
        running += S.procs[i].pid > 0;
        svc__probe_close(&S.procs[i].probe);
    }
    S.stopping = 1;
    S.deadline_ns = svc_now_ns() + (uint64_t)(S.shutdown_s * 1e9);
    svc__out_self("received SIG%s, stopping %zu process%s (SIGKILL in %gs)", sig_name(sig), running,
                  running == 1 ? "" : "es", S.shutdown_s);
    signal_all(SIGTERM, 1);
}

static void kill_now(const char *why) {
    for (size_t i = 0; i < S.nprocs; i++)
        if (S.procs[i].pid > 0) {
            S.unclean = 1;
            svc__out_self("%s %s, sending SIGKILL", S.procs[i].in->name, why);
        }
    S.killing = 1;
    S.unclean = 1;
    S.deadline_ns = svc_now_ns() + KILL_WAIT_NS;
    signal_all(SIGKILL, 0);
}

/* ---- start order --------------------------------------------------------------- */

/* 1 while an instance that has not started yet waits for q. */
static int awaited(const proc *q) {
    for (size_t i = 0; i < S.nprocs; i++)
        if (S.procs[i].waiting && waits_for(&S.procs[i], q)) return 1;
    return 0;
}

static void probe_result(proc *q, int rc, uint64_t now) {
    if (rc > 0) {
        q->ready = 1;
        svc__out_self("%s ready", q->in->name);
    } else if (rc < 0) {
        q->probe_at_ns = now + PROBE_INTERVAL_MS * 1000000ull;
    }
}

/* Starts the attempts that are due and ends those past their deadline. Only
 * what someone still waits for is probed. */
static void probe_due(uint64_t now) {
    for (size_t i = 0; i < S.nprocs; i++) {
        proc *q = &S.procs[i];
        if (!q->watched || q->ready || q->pid <= 0 || !awaited(q)) {
            svc__probe_close(&q->probe);
        } else if (q->probe.fd >= 0) {
            if (now >= q->probe.deadline_ns) probe_result(q, svc__probe_step(&q->probe, q->in, 0, now), now);
        } else if (now >= q->probe_at_ns) {
            if (svc__probe_start(&q->probe, q->in, now) < 0) probe_result(q, -1, now);
        }
    }
}

/* Starts every waiting instance whose after= are all ready, or have all been
 * started for longer than the ready timeout (then with a warning). Returns 1
 * while some instance still waits. */
static int start_waiting(uint64_t now) {
    int left = 0;
    for (int again = 1; again;) {
        again = 0;
        left = 0;
        for (size_t i = 0; i < S.nprocs; i++) {
            proc *p = &S.procs[i];
            if (!p->waiting) continue;
            const proc *late = NULL;
            uint64_t last_start = 0;
            int all_started = 1;
            for (size_t j = 0; j < S.nprocs; j++) {
                const proc *q = &S.procs[j];
                if (!waits_for(p, q)) continue;
                if (!q->first_started_ns) all_started = 0;
                else if (q->first_started_ns > last_start) last_start = q->first_started_ns;
                if (!q->ready && !late) late = q;
            }
            if (late) {
                if (!all_started || now < last_start + (uint64_t)(S.ready_s * 1e9)) {
                    left = 1;
                    continue;
                }
                svc__out_self("warning: %s not ready after %gs (%s); starting %s anyway", late->in->name, S.ready_s,
                              late->probe.why[0] ? late->probe.why : late->pid > 0 ? "no answer yet" : "not running",
                              p->in->name);
            }
            p->waiting = 0;
            spawn(p);
            again = 1; /* what waited for p may be able to go too */
        }
    }
    return left;
}

/* ---- setup and loop ----------------------------------------------------------- */

static int setup_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < NHANDLED; i++) sigaddset(&set, handled_signals[i]);
    /* Blocked signals stay pending until signalfd reads them, even for PID 1:
     * the kernel drops default-action signals to an init only when they are
     * not blocked. */
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) return SVC_EIO;
    signal(SIGPIPE, SIG_IGN);
    S.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return S.sigfd < 0 ? SVC_EIO : SVC_OK;
}

static int poll_timeout_ms(uint64_t now) {
    uint64_t next = UINT64_MAX;
    if (S.killing) return KILL_RESCAN_MS;
    if (S.stopping) {
        next = S.deadline_ns;
    } else {
        for (size_t i = 0; i < S.nprocs; i++)
            if (!S.procs[i].pid && S.procs[i].restart_at_ns && S.procs[i].restart_at_ns < next)
                next = S.procs[i].restart_at_ns;
    }
    if (next == UINT64_MAX) return -1;
    if (next <= now) return 0;
    uint64_t ms = (next - now + 999999) / 1000000;
    return ms > 60000 ? 60000 : (int)ms;
}

static void handle_signals(void) {
    struct signalfd_siginfo si;
    for (;;) {
        ssize_t r = read(S.sigfd, &si, sizeof si);
        if (r != (ssize_t)sizeof si) return;
        int sig = (int)si.ssi_signo;
        if (sig == SIGCHLD) continue; /* reaped after this loop, whatever the signal */
        if (!S.stopping) {
            begin_stop(sig);
        } else if (!S.killing) {
            svc__out_self("received SIG%s again", sig_name(sig));
            kill_now("still running");
        }
    }
}

static void setup_stdio(void) {
    S.devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* tcsetpgrp from what is then a background group is allowed only with
 * SIGTTOU blocked. */
static int set_foreground(pid_t pgrp) {
    sigset_t ttou, old;
    sigemptyset(&ttou);
    sigaddset(&ttou, SIGTTOU);
    sigprocmask(SIG_BLOCK, &ttou, &old);
    int rc = tcsetpgrp(STDIN_FILENO, pgrp);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* The terminal's Ctrl-C should reach the supervisor alone, not also a make
 * or a script that started it, which would die of it (and say so) while the
 * processes stop cleanly: run in the terminal's foreground group but not as
 * its leader, we move to a group of our own and make that the foreground.
 * Returns the group to give the terminal back to at the end, or 0. */
static pid_t take_terminal(void) {
    if (!isatty(STDIN_FILENO)) return 0;
    pid_t own = getpgrp();
    if (tcgetpgrp(STDIN_FILENO) != own || own == getpid() || setpgid(0, 0) != 0) return 0;
    if (set_foreground(getpid()) != 0) {
        setpgid(0, own);
        return 0;
    }
    return own;
}

int svc__supervise(svc__plan *plan) {
    memset(&S, 0, sizeof S);
    S.sigfd = -1;
    S.shutdown_s = plan->shutdown_s;
    S.ready_s = plan->ready_s;
    int width = 6;
    for (size_t i = 0; i < plan->n; i++)
        if ((int)strlen(plan->inst[i].name) > width) width = (int)strlen(plan->inst[i].name);
    svc__out_setup(plan->color, width);

    setup_stdio();
    if (S.devnull < 0) {
        fprintf(stderr, "svckit: /dev/null: %s\n", strerror(errno));
        return SVC__EXIT_FAIL;
    }
    if (setup_signals() != SVC_OK) {
        fprintf(stderr, "svckit: signals: %s\n", strerror(errno));
        close(S.devnull);
        return SVC__EXIT_FAIL;
    }
    S.procs = calloc(plan->n, sizeof *S.procs);
    if (!S.procs) {
        fprintf(stderr, "svckit: out of memory\n");
        close(S.sigfd);
        close(S.devnull);
        return SVC__EXIT_FAIL;
    }
    pid_t terminal_owner = take_terminal();
    /* Orphaned descendants become our children, so we reap and stop them. */
    if (getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        svc__out_self("warning: cannot become a subreaper (%s); orphans escape", strerror(errno));
    S.nprocs = plan->n;
    for (size_t i = 0; i < plan->n; i++) {
        S.procs[i].in = &plan->inst[i];
        S.procs[i].backoff_ms = BACKOFF_MIN_MS;
        S.procs[i].probe.fd = -1;
    }
    for (size_t i = 0; i < S.nprocs; i++)
        for (size_t j = 0; j < S.nprocs; j++)
            if (waits_for(&S.procs[i], &S.procs[j])) {
                S.procs[i].waiting = 1;
                S.procs[j].watched = 1;
            }
    svc__out_self("version %s, %zu process%s; Ctrl-C stops %s", SVC_VERSION, plan->n, plan->n == 1 ? "" : "es",
                  plan->n == 1 ? "it" : "them all");
    for (size_t i = 0; i < S.nprocs; i++)
        if (!S.procs[i].waiting) spawn(&S.procs[i]);

    struct pollfd pfds[1 + STREAMS_MAX + SVC__INSTANCES_MAX];
    stream *polled[STREAMS_MAX];
    proc *probed[SVC__INSTANCES_MAX];
    for (;;) {
        uint64_t now = svc_now_ns();
        int waiting = 0;
        if (!S.stopping) {
            for (size_t i = 0; i < S.nprocs; i++)
                if (!S.procs[i].pid && S.procs[i].restart_at_ns && S.procs[i].restart_at_ns <= now)
                    spawn(&S.procs[i]);
            waiting = start_waiting(now);
            probe_due(now);
        } else {
            if (!reap()) break;
            if (S.killing) {
                if (now >= S.deadline_ns) {
                    svc__out_self("giving up: some processes did not die after SIGKILL");
                    break;
                }
                signal_all(SIGKILL, 0); /* catches orphans adopted since the last round */
            } else if (now >= S.deadline_ns) {
                char why[64];
                snprintf(why, sizeof why, "did not stop within %gs", S.shutdown_s);
                kill_now(why);
            }
        }
        size_t n = 0;
        pfds[n++] = (struct pollfd){.fd = S.sigfd, .events = POLLIN};
        for (size_t i = 0; i < S.nstreams; i++) {
            polled[i] = S.streams[i];
            pfds[n++] = (struct pollfd){.fd = S.streams[i]->fd, .events = POLLIN};
        }
        size_t npolled = S.nstreams, nprobed = 0;
        for (size_t i = 0; i < S.nprocs; i++) {
            short ev = svc__probe_events(&S.procs[i].probe);
            if (!ev) continue;
            probed[nprobed++] = &S.procs[i];
            pfds[n++] = (struct pollfd){.fd = S.procs[i].probe.fd, .events = ev};
        }
        /* While something waits, look at deadlines and due attempts often. */
        int timeout = poll_timeout_ms(svc_now_ns());
        if (waiting && (timeout < 0 || timeout > PROBE_INTERVAL_MS)) timeout = PROBE_INTERVAL_MS;
        int rc = poll(pfds, n, timeout);
        if (rc < 0 && errno != EINTR) {
            svc__out_self("poll: %s", strerror(errno));
            break;
        }
        if (rc <= 0) continue;
        /* Streams may close (and others move) while we go; match by pointer. */
        for (size_t k = 0; k < npolled; k++) {
            if (!pfds[1 + k].revents) continue;
            for (size_t i = 0; i < S.nstreams; i++)
                if (S.streams[i] == polled[k]) {
                    stream_read(i, 1);
                    break;
                }
        }
        for (size_t k = 0; k < nprobed; k++) {
            short rev = pfds[1 + npolled + k].revents;
            if (rev) probe_result(probed[k], svc__probe_step(&probed[k]->probe, probed[k]->in, rev, svc_now_ns()),
                                  svc_now_ns());
        }
        if (pfds[0].revents) {
            handle_signals();
            reap();
        }
    }

    /* Whatever the pipes still hold is printed before we go. */
    while (S.nstreams) {
        if (stream_read(0, DRAIN_READS_MAX)) stream_close(0);
    }
    int code = S.unclean ? SVC__EXIT_FAIL : SVC__EXIT_OK;
    svc__out_self(code == 0 ? "all processes stopped" : "stopped, not all cleanly");
    free(S.procs);
    close(S.sigfd);
    close(S.devnull);
    if (terminal_owner) set_foreground(terminal_owner);
    return code;
}
