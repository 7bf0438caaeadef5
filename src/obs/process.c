/*
 * Process metrics, read from /proc at each render. Names, help texts and
 * units follow the Prometheus client libraries, so dashboards built for those
 * work unchanged.
 *
 * The collector looks its families up by name on every run instead of
 * caching series pointers: six lookups per scrape cost nothing, and the
 * collector stays correct across svc_metrics_reset and re-registration.
 */
#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "obs/internal.h"
#include "svckit/obs.h"

/* /proc/self/stat is one line of ~52 numbers and a 16-byte command name. */
#define STAT_BUF 1024
#define STATM_BUF 256
/* Fields of /proc/self/stat (proc(5), 1-based) counted from field 3, the
 * first after the parenthesised command name. */
#define STAT_UTIME (14 - 3)
#define STAT_STIME (15 - 3)
#define STAT_STARTTIME (22 - 3)

#define CPU_NAME "process_cpu_seconds_total"
#define CPU_HELP "Total user and system CPU time spent in seconds."
#define RSS_NAME "process_resident_memory_bytes"
#define RSS_HELP "Resident memory size in bytes."
#define VSZ_NAME "process_virtual_memory_bytes"
#define VSZ_HELP "Virtual memory size in bytes."
#define FDS_NAME "process_open_fds"
#define FDS_HELP "Number of open file descriptors."
#define MAXFDS_NAME "process_max_fds"
#define MAXFDS_HELP "Maximum number of open file descriptors."
#define START_NAME "process_start_time_seconds"
#define START_HELP "Start time of the process since unix epoch in seconds."

/* Reads a small file whole into buf, NUL-terminated; -1 on failure. */
static ssize_t read_small(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    int err = ferror(f);
    fclose(f);
    if (err) return -1;
    buf[n] = '\0';
    return (ssize_t)n;
}

/* Reads utime+stime and starttime, in clock ticks. The command name may hold
 * spaces and parentheses, so fields are counted from the last ')'. */
static int read_stat(unsigned long long *cpu_ticks, unsigned long long *start_ticks) {
    char buf[STAT_BUF];
    if (read_small("/proc/self/stat", buf, sizeof buf) < 0) return -1;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    p++;
    unsigned long long utime = 0, stime = 0, start = 0;
    int found = 0;
    for (int field = 0; field <= STAT_STARTTIME; field++) {
        while (*p == ' ') p++;
        if (!*p) return -1;
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        switch (field) {
        case STAT_UTIME: utime = v; found++; break;
        case STAT_STIME: stime = v; found++; break;
        case STAT_STARTTIME: start = v; found++; break;
        }
        while (*end && *end != ' ') end++;
        p = end;
    }
    if (found != 3) return -1;
    *cpu_ticks = utime + stime;
    *start_ticks = start;
    return 0;
}

/* Seconds since the epoch at which the machine booted (the btime line of
 * /proc/stat); constant, so read once. The file can be many KB on big
 * machines (the intr line), hence line by line. */
static long long boot_time(void) {
    static _Atomic long long cached = -1;
    long long bt = atomic_load_explicit(&cached, memory_order_relaxed);
    if (bt >= 0) return bt;
    FILE *f = fopen("/proc/stat", "re");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        if (strncmp(line, "btime ", 6) == 0) {
            char *end;
            long long v = strtoll(line + 6, &end, 10);
            if (end != line + 6 && v > 0) bt = v;
            break;
        }
    }
    free(line);
    fclose(f);
    if (bt >= 0) atomic_store_explicit(&cached, bt, memory_order_relaxed);
    return bt;
}

/* Entries of /proc/self/fd, less the one opendir itself holds. */
static long count_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n > 0 ? n - 1 : 0;
}

static void set_gauge(const char *name, const char *help, double v) {
    svc_gauge_set(svc_metric_with(svc_metric_gauge(name, help, 0, NULL), NULL), v);
}

int svc__process_usage(double *cpu_seconds, double *rss_bytes) {
    long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    unsigned long long cpu_ticks, start_ticks, size, resident;
    char buf[STATM_BUF];
    if (tck <= 0 || page <= 0 || read_stat(&cpu_ticks, &start_ticks) != 0 ||
        read_small("/proc/self/statm", buf, sizeof buf) < 0 || sscanf(buf, "%llu %llu", &size, &resident) != 2)
        return SVC_EIO;
    *cpu_seconds = (double)cpu_ticks / (double)tck;
    *rss_bytes = (double)resident * (double)page;
    return SVC_OK;
}

static void collect_process(void *ud) {
    (void)ud;
    long tck = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);

    unsigned long long cpu_ticks, start_ticks;
    if (tck > 0 && read_stat(&cpu_ticks, &start_ticks) == 0) {
        svc__counter_set(svc_metric_with(svc__metric_counter_f64(CPU_NAME, CPU_HELP, 0, NULL),
                                         NULL),
                         (double)cpu_ticks / (double)tck);
        long long bt = boot_time();
        if (bt >= 0) set_gauge(START_NAME, START_HELP, (double)bt + (double)start_ticks / (double)tck);
    }

    char buf[STATM_BUF];
    unsigned long long size, resident;
    if (page > 0 && read_small("/proc/self/statm", buf, sizeof buf) >= 0 &&
        sscanf(buf, "%llu %llu", &size, &resident) == 2) {
        set_gauge(VSZ_NAME, VSZ_HELP, (double)size * (double)page);
        set_gauge(RSS_NAME, RSS_HELP, (double)resident * (double)page);
    }

    long fds = count_open_fds();
    if (fds >= 0) set_gauge(FDS_NAME, FDS_HELP, (double)fds);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        set_gauge(MAXFDS_NAME, MAXFDS_HELP,
                  rl.rlim_cur == RLIM_INFINITY ? 18446744073709551615.0 : (double)rl.rlim_cur);
}

void svc_metrics_register_process(void) {
    /* Registered up front so the families are listed even if a read fails. */
    svc__metric_counter_f64(CPU_NAME, CPU_HELP, 0, NULL);
    svc_metric_gauge(RSS_NAME, RSS_HELP, 0, NULL);
    svc_metric_gauge(VSZ_NAME, VSZ_HELP, 0, NULL);
    svc_metric_gauge(FDS_NAME, FDS_HELP, 0, NULL);
    svc_metric_gauge(MAXFDS_NAME, MAXFDS_HELP, 0, NULL);
    svc_metric_gauge(START_NAME, START_HELP, 0, NULL);
    svc_metrics_on_collect(collect_process, NULL);
}
