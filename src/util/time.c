/* Time: monotonic clock, wall clock, sleeps and deadlines (every timeout in the
 * library is a deadline computed here). */
#include <dtrain/util.h>

#include <errno.h>
#include <time.h>
#include <unistd.h>

int64_t dt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

double dt_now_s(void) { return (double)dt_now_ns() * 1e-9; }

int64_t dt_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

void dt_sleep_ms(int64_t ms)
{
    if (ms <= 0) return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

int64_t dt_deadline_ns(int64_t timeout_ms)
{
    if (timeout_ms < 0) return INT64_MAX;
    return dt_now_ns() + timeout_ms * 1000000LL;
}

int64_t dt_ms_left(int64_t deadline_ns)
{
    if (deadline_ns == INT64_MAX) return -1;
    int64_t left = deadline_ns - dt_now_ns();
    return left > 0 ? (left + 999999) / 1000000 : 0;
}

int dt_num_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
