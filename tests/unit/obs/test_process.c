/* Process metrics (src/obs/process.c): present, plausible, and tracking the
 * process as it changes. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "metrics_util.h"
#include "svckit/obs.h"
#include "../test.h"

static const char *const families[] = {
    "process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
    "process_open_fds",          "process_max_fds",               "process_start_time_seconds",
};

TEST(process_metrics_present_once) {
    svc_metrics_register_process();
    svc_metrics_register_process(); /* idempotent */
    char *text = render_all();
    REQUIRE(text != NULL);
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        char line[128];
        snprintf(line, sizeof line, "# HELP %s ", families[i]);
        CHECK_EQ(count_lines(text, line), 1);
        snprintf(line, sizeof line, "%s ", families[i]);
        if (count_lines(text, line) != 1)
            test_fail(__FILE__, __LINE__, "%s: %d sample lines", families[i],
                      count_lines(text, line));
    }
    CHECK_EQ(count_lines(text, "# TYPE process_cpu_seconds_total counter\n"), 1);
    CHECK_EQ(count_lines(text, "# TYPE process_open_fds gauge\n"), 1);
    free(text);
}

TEST(process_metrics_plausible) {
    svc_metrics_register_process();
    char *text = render_all();
    REQUIRE(text != NULL);
    double rss = sample(text, "process_resident_memory_bytes");
    double vsz = sample(text, "process_virtual_memory_bytes");
    double fds = sample(text, "process_open_fds");
    double max = sample(text, "process_max_fds");
    double cpu = sample(text, "process_cpu_seconds_total");
    double start = sample(text, "process_start_time_seconds");
    free(text);

    CHECK(rss > 0);
    CHECK(rss == (double)(long long)rss);
    CHECK(rss < 64.0 * 1024 * 1024 * 1024);
    CHECK(vsz >= rss);
    CHECK(fds >= 3);
    struct rlimit rl;
    REQUIRE(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    CHECK(max == (rl.rlim_cur == RLIM_INFINITY ? 18446744073709551615.0 : (double)rl.rlim_cur));
    CHECK(max >= fds);
    CHECK(cpu >= 0 && cpu < 3600);
    /* The test child was forked moments ago; btime has 1 s resolution. */
    double now = (double)time(NULL);
    if (!(start > now - 120 && start < now + 2))
        test_fail(__FILE__, __LINE__, "start time %.2f, now %.0f", start, now);
}

TEST(open_fds_tracks_descriptors) {
    svc_metrics_register_process();
    char *text = render_all();
    REQUIRE(text != NULL);
    double before = sample(text, "process_open_fds");
    free(text);
    int fd[5];
    for (int i = 0; i < 5; i++) REQUIRE((fd[i] = open("/dev/null", O_RDONLY)) >= 0);
    text = render_all();
    REQUIRE(text != NULL);
    CHECK_EQ(sample(text, "process_open_fds"), before + 5);
    free(text);
    for (int i = 0; i < 5; i++) close(fd[i]);
    text = render_all();
    REQUIRE(text != NULL);
    CHECK_EQ(sample(text, "process_open_fds"), before);
    free(text);
}

TEST(cpu_and_rss_track_work) {
    svc_metrics_register_process();
    char *text = render_all();
    REQUIRE(text != NULL);
    double cpu0 = sample(text, "process_cpu_seconds_total");
    double rss0 = sample(text, "process_resident_memory_bytes");
    free(text);

    /* Burn 0.3 s of CPU and touch 64 MiB. */
    size_t big = 64u << 20;
    volatile char *mem = malloc(big);
    REQUIRE(mem != NULL);
    for (size_t i = 0; i < big; i += 4096) mem[i] = 1;
    struct timespec t0, t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    do {
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1e9 + (t.tv_nsec - t0.tv_nsec) < 3e8);

    text = render_all();
    REQUIRE(text != NULL);
    double cpu1 = sample(text, "process_cpu_seconds_total");
    double rss1 = sample(text, "process_resident_memory_bytes");
    free(text);
    free((void *)mem);
    if (!(cpu1 - cpu0 >= 0.2 && cpu1 - cpu0 < 5))
        test_fail(__FILE__, __LINE__, "cpu %.3f -> %.3f", cpu0, cpu1);
    if (!(rss1 - rss0 >= 60.0 * 1024 * 1024))
        test_fail(__FILE__, __LINE__, "rss %.0f -> %.0f", rss0, rss1);
}

TEST(process_metrics_survive_reset) {
    svc_metrics_register_process();
    svc_metrics_reset();
    char *text = render_all();
    REQUIRE(text != NULL);
    CHECK_STR(text, "");
    free(text);
    svc_metrics_register_process();
    text = render_all();
    REQUIRE(text != NULL);
    CHECK(sample(text, "process_resident_memory_bytes") > 0);
    free(text);
}
