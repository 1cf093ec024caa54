/* The clock-jump nemesis: one node's WALL clock stepped by hours (LD_PRELOAD, built by hosts.py).
 *
 * clock_gettime(CLOCK_REALTIME / CLOCK_REALTIME_COARSE), gettimeofday and time return the real
 * wall clock plus the offset in seconds written in the file named by
 * RAFTQ_JEPSEN_WALL_OFFSET_FILE (re-read at most every 200 ms of real monotonic time; a missing
 * or unreadable file is offset 0). The monotonic clocks, and so Raft's timers and every sleep,
 * are left alone: a real clock step (NTP, a wrong RTC) moves the wall clock only. libfaketime
 * (the clock nemesis), when also preloaded after this library, applies underneath.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static double offset_s = 0.0;
static double read_at = -1.0;

static int (*real_clock_gettime)(clockid_t, struct timespec *) = NULL;

static int call_real(clockid_t id, struct timespec *ts) {
    if (real_clock_gettime == NULL)
        real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    return real_clock_gettime(id, ts);
}

static double current_offset(void) {
    struct timespec now;
    if (call_real(CLOCK_MONOTONIC, &now) != 0) return offset_s;
    double t = now.tv_sec + now.tv_nsec / 1e9;
    if (read_at >= 0 && t - read_at < 0.2) return offset_s;
    read_at = t;
    const char *path = getenv("RAFTQ_JEPSEN_WALL_OFFSET_FILE");
    double value = 0.0;
    FILE *f = path ? fopen(path, "r") : NULL;
    if (f != NULL) {
        if (fscanf(f, "%lf", &value) != 1) value = 0.0;
        fclose(f);
    }
    offset_s = value;
    return offset_s;
}

static void shift(struct timespec *ts) {
    double off = current_offset();
    long long ns = (long long)ts->tv_nsec + (long long)(off * 1e9) % 1000000000LL;
    long long s = (long long)ts->tv_sec + (long long)off;
    while (ns < 0) { ns += 1000000000LL; s -= 1; }
    while (ns >= 1000000000LL) { ns -= 1000000000LL; s += 1; }
    ts->tv_sec = (time_t)s;
    ts->tv_nsec = (long)ns;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    int rc = call_real(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) shift(ts);
    return rc;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    (void)tz;
    struct timespec ts;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    if (rc == 0) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return rc;
}

time_t time(time_t *out) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return (time_t)-1;
    if (out != NULL) *out = ts.tv_sec;
    return ts.tv_sec;
}
