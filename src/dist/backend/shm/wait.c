/* Waiting in the shm backend, and the failure record.
 *
 * A waiter spins on the word it waits for (a peer's step or slot flag, or its
 * own p2p bell) for st->spin_iters pauses (about 1 us, counted, so the fast
 * path never reads the clock; none when ranks outnumber cores), then
 * polls it with sched_yield between every st->polls polls until st->yield_ns
 * (1 ms) have passed, so a peer sharing this core runs at once, then sleeps
 * on it with FUTEX_WAIT in slices of at most 10 ms. Between slices it
 * checks the segment's failure record (another rank failed or aborted), its
 * deadline, and whether the peers it waits for are still alive (their pid,
 * zombies counted as dead). Publishers wake sleepers only when the word's
 * waiter count says someone sleeps, so the fast path makes no system call.
 *
 * The failure record in the segment header is claimed by compare-and-swap:
 * the first rank to see a failure writes what happened and which ranks did
 * not take part, then wakes everyone; every other waiter reports that same
 * failure instead of waiting out its own timeout. */
#define _GNU_SOURCE
#include "dist/backend/shm/shm.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define DT__SHM_SLICE_NS 10000000LL       /* longest futex sleep between checks */
#define DT__SHM_LIVE_NS 20000000LL        /* how often peers' pids are checked */

static void futex_wait(_Atomic uint32_t *w, uint32_t val, int64_t ns)
{
    struct timespec ts = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, val, &ts, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

unsigned dt__shm_pauses_per_us(void)
{
    static _Atomic unsigned cached;
    unsigned n = atomic_load_explicit(&cached, memory_order_relaxed);
    if (n) return n;
    int64_t best = INT64_MAX;
    for (int k = 0; k < 3; k++) { /* the fastest of three: the least disturbed */
        int64_t t0 = dt_now_ns();
        for (int i = 0; i < 1000; i++) cpu_relax();
        int64_t t = dt_now_ns() - t0;
        if (t < best) best = t;
    }
    n = best > 0 ? (unsigned)(1000000 / best) : 1000;
    if (n < 8) n = 8;
    if (n > 20000) n = 20000;
    atomic_store_explicit(&cached, n, memory_order_relaxed);
    return n;
}

/* The op's deadline: st->timeout_ms from now, fixed the first time asked. */
static int64_t deadline_of(dt__shm *st, int64_t deadline_ns)
{
    if (deadline_ns != DT__DEADLINE_LAZY) return deadline_ns;
    if (st->deadline_ns == DT__DEADLINE_LAZY) st->deadline_ns = dt_deadline_ns(st->timeout_ms);
    return st->deadline_ns;
}

static void missing_list(uint64_t missing, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < 64 && len + 8 < cap; i++)
        if (missing & (1ull << i)) len += (size_t)snprintf(buf + len, cap - len, "%s%d", len ? ", " : "", i);
}

void dt__shm_wake_all(dt__shm *st)
{
    for (int r = 0; r < st->size; r++) {
        futex_wake(&st->ctrl[r].step);
        futex_wake(&st->ctrl[r].bell);
    }
}

int dt__shm_check(dt__shm *st)
{
    dt__shm_hdr *h = st->hdr;
    int code = atomic_load_explicit(&h->fail_code, memory_order_acquire);
    if (!code) return 0;
    for (int i = 0; i < 1000000 && !atomic_load_explicit(&h->fail_ready, memory_order_acquire); i++) cpu_relax();
    if (!atomic_load_explicit(&h->fail_ready, memory_order_acquire))
        return dt_set_error(code, "shm: group '%s' failed (rank %d recorded it)", st->group, h->fail_rank);
    if (h->fail_rank == st->rank) return dt_set_error(code, "%s", h->fail_msg);
    return dt_set_error(code, "%s (recorded by rank %d in its op #%llu)", h->fail_msg, h->fail_rank,
                        (unsigned long long)h->fail_seq);
}

int dt__shm_fail(dt__shm *st, int code, uint64_t missing, const char *fmt, ...)
{
    dt__shm_hdr *h = st->hdr;
    int32_t expect = 0;
    if (atomic_compare_exchange_strong(&h->fail_code, &expect, code)) {
        char msg[sizeof h->fail_msg - 64];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        char ranks[256];
        missing_list(missing, ranks, sizeof ranks);
        snprintf(h->fail_msg, sizeof h->fail_msg, "%s%s%s", msg, ranks[0] ? "; ranks that did not take part: " : "",
                 ranks);
        h->fail_rank = st->rank;
        h->fail_seq = st->seq;
        h->fail_missing = missing;
        atomic_store_explicit(&h->fail_ready, 1, memory_order_release);
        dt__shm_wake_all(st);
    }
    return dt__shm_check(st);
}

/* Whether rank r's process has exited (a zombie counts). */
static bool peer_dead(dt__shm *st, int r) { return dt__pid_gone(st->ctrl[r].pid); }

void dt__shm_publish(dt__shm *st)
{
    dt__shm_ctrl *me = &st->ctrl[st->rank];
    atomic_store_explicit(&me->step, ++st->step, memory_order_seq_cst);
    if (atomic_load_explicit(&me->step_waiters, memory_order_seq_cst)) futex_wake(&me->step);
}

void dt__shm_publish_slot(dt__shm *st, int p)
{
    atomic_store_explicit(&dt__shm_slot_hdr_at(st, p, st->rank)->flag, st->step + 1, memory_order_release);
    dt__shm_publish(st);
}

void dt__shm_ring(dt__shm *st, int r)
{
    dt__shm_ctrl *c = &st->ctrl[r];
    atomic_fetch_add_explicit(&c->bell, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&c->bell_waiters, memory_order_seq_cst)) futex_wake(&c->bell);
}

static inline bool reached(uint32_t cur, uint32_t s, bool ge) { return ge ? (int32_t)(cur - s) >= 0 : cur != s; }

/* Ranks (other than this one) whose step is still below s. */
static uint64_t behind(dt__shm *st, uint32_t s)
{
    uint64_t m = 0;
    for (int j = 0; j < st->size; j++)
        if (j != st->rank && !reached(atomic_load(&st->ctrl[j].step), s, true)) m |= 1ull << j;
    return m;
}

/* The one wait loop. ge: wait for *w >= v (steps), else *w != v (bells).
 * peers: ranks whose death ends the wait; step_all: on timeout, every rank
 * behind step v is named (else the peers); spin: pauses before yielding. */
static int wait_word(dt__shm *st, _Atomic uint32_t *w, _Atomic uint32_t *waiters, uint32_t v, bool ge,
                     uint64_t peers, bool step_all, int64_t deadline_ns, unsigned spin)
{
    for (unsigned i = 0;; i++) {
        if (reached(atomic_load_explicit(w, memory_order_acquire), v, ge)) return 0;
        if (i == spin) break;
        cpu_relax();
        if ((i & 63) == 63 && atomic_load_explicit(&st->hdr->fail_code, memory_order_relaxed))
            return dt__shm_check(st);
    }
    int64_t t0 = dt_now_ns();
    deadline_ns = deadline_of(st, deadline_ns);
    /* Yielding spin: a peer that shares our core (oversubscribed, or other
     * load) runs at once instead of after our time slice or our sleep. */
    for (;;) {
        if (reached(atomic_load_explicit(w, memory_order_acquire), v, ge)) return 0;
        if (atomic_load_explicit(&st->hdr->fail_code, memory_order_relaxed)) return dt__shm_check(st);
        int64_t now = dt_now_ns();
        if (now - t0 > st->yield_ns || now >= deadline_ns) break;
        sched_yield();
        for (int k = 0; k < st->polls && !reached(atomic_load_explicit(w, memory_order_acquire), v, ge); k++) cpu_relax();
    }
    for (;;) {
        if (reached(atomic_load_explicit(w, memory_order_acquire), v, ge)) return 0;
        int rc = dt__shm_check(st);
        if (rc) return rc;
        int64_t now = dt_now_ns();
        if (now >= deadline_ns) {
            uint64_t m = step_all ? behind(st, v) : peers;
            return dt__shm_fail(st, DT_ETIMEOUT, m, "rank %d gave up after waiting %.3f s", st->rank,
                                (double)(now - t0) * 1e-9);
        }
        if (now - st->last_live_check >= DT__SHM_LIVE_NS) {
            st->last_live_check = now;
            for (int j = 0; j < st->size; j++)
                if ((peers & (1ull << j)) && peer_dead(st, j)) {
                    /* it may have published what we wait for and left since we
                     * looked (we were descheduled in between): a dead peer writes
                     * nothing more, so one more look is the final answer */
                    if (reached(atomic_load_explicit(w, memory_order_acquire), v, ge)) return 0;
                    return dt__shm_fail(st, DT_EPEER, 1ull << j,
                                        "rank %d (pid %d) exited while rank %d waited for it", j,
                                        (int)st->ctrl[j].pid, st->rank);
                }
        }
        int64_t ns = deadline_ns - now;
        if (ns > DT__SHM_SLICE_NS) ns = DT__SHM_SLICE_NS;
        atomic_fetch_add_explicit(waiters, 1, memory_order_seq_cst);
        uint32_t cur = atomic_load_explicit(w, memory_order_seq_cst);
        if (!reached(cur, v, ge)) futex_wait(w, cur, ns);
        atomic_fetch_sub_explicit(waiters, 1, memory_order_seq_cst);
    }
}

int dt__shm_wait_step(dt__shm *st, int r, uint32_t s, int64_t deadline_ns)
{
    if (r == st->rank || reached(st->seen, s, true)) return 0;
    return wait_word(st, &st->ctrl[r].step, &st->ctrl[r].step_waiters, s, true, 1ull << r, false, deadline_ns,
                     st->spin_iters);
}

/* A failure recorded while we were not waiting must not go unseen. */
static int checked(dt__shm *st)
{
    return atomic_load_explicit(&st->hdr->fail_code, memory_order_acquire) ? dt__shm_check(st) : 0;
}

int dt__shm_wait_all(dt__shm *st, uint32_t s, int64_t deadline_ns)
{
    if (reached(st->seen, s, true)) return checked(st);
    for (int j = 0; j < st->size; j++) {
        if (j == st->rank) continue;
        DT_CHECK(wait_word(st, &st->ctrl[j].step, &st->ctrl[j].step_waiters, s, true, 1ull << j, true, deadline_ns,
                           st->spin_iters));
    }
    st->seen = s;
    return checked(st);
}

int dt__shm_wait_posted(dt__shm *st, int p, uint32_t s, int64_t deadline_ns)
{
    for (int j = 0; j < st->size; j++) {
        if (j == st->rank) continue;
        _Atomic uint32_t *flag = &dt__shm_slot_hdr_at(st, p, j)->flag;
        unsigned i = 0;
        while (!reached(atomic_load_explicit(flag, memory_order_acquire), s, true)) {
            if (i++ == st->spin_iters) {
                /* the peer publishes its step after its flag: wait on that word, which sleeps */
                DT_CHECK(wait_word(st, &st->ctrl[j].step, &st->ctrl[j].step_waiters, s, true, 1ull << j, true,
                                   deadline_ns, 0));
                break;
            }
            cpu_relax();
        }
    }
    st->seen = s;
    return checked(st);
}

int dt__shm_wait_bell(dt__shm *st, uint32_t seen, uint64_t peers, int64_t deadline_ns)
{
    dt__shm_ctrl *me = &st->ctrl[st->rank];
    return wait_word(st, &me->bell, &me->bell_waiters, seen, false, peers, false, deadline_ns, st->spin_iters);
}
