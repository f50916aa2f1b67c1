/* dtbench: collective bandwidth and latency, in the manner of nccl-tests.
 * One process per rank, joined by env:// (MASTER_ADDR, MASTER_PORT, RANK,
 * WORLD_SIZE), so it runs under the launcher:
 *     build/bin/dtrun --standalone --nproc_per_node=2 build/bin/dtbench all_reduce
 * or by hand with those variables set. Rank 0 prints '#' header lines, then
 * one row per message size:
 *     bytes count dtype time_us algbw_GBps busbw_GBps wrong
 * bytes/count: the whole buffer (for all_gather the gathered output, for
 *   reduce_scatter and all_to_all the input), as nccl-tests counts them;
 * time_us: the slowest rank's median over --iters timed calls (after --warmup
 *   untimed ones); every call is timed on its own, with no barrier between;
 * algbw = bytes / time; busbw = algbw x 2(n-1)/n (all_reduce), (n-1)/n
 *   (all_gather, reduce_scatter, all_to_all), 1 (broadcast, reduce);
 * wrong: with --check, elements that differ from the expected result after
 *   the last timed call, summed over ranks; -1 when not checked.
 * Calls are out of place (broadcast is in place by nature), reductions sum.
 * Each rank pins itself to one core (--bind core, the default when the ranks
 * on this host fit its cores, as mpirun binds), or not (--bind none).
 * Does not: sweep world sizes, run several groups at once, or time anything
 * but the collective call itself. See docs/dtbench.md. */
#define _GNU_SOURCE /* sched_setaffinity */
#include <dtrain/dtrain.h>

#include <ctype.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { OP_ALLREDUCE, OP_ALLGATHER, OP_REDUCE_SCATTER, OP_BROADCAST, OP_REDUCE, OP_ALLTOALL, OP_COUNT } bench_op;
static const char *const OP_NAMES[OP_COUNT] = {"all_reduce", "all_gather", "reduce_scatter", "broadcast", "reduce",
                                               "all_to_all"};

typedef struct {
    bench_op op;
    const char *backend;
    dt_dtype dtype;
    size_t min_bytes, max_bytes;
    double factor;
    int iters, warmup;
    bool check, shared, in_place;
    int bind;   /* -1: auto (core when the ranks on this host fit the cores), 0: none, 1: core */
} bench_cfg;

static void usage(FILE *f)
{
    fprintf(f, "usage: dtbench OP [--backend auto|shm|tcp] [--dtype f32] [--min-bytes 8] [--max-bytes 64M]\n"
               "               [--factor 4] [--iters 20] [--warmup 5] [--check] [--shared-buffers] [--in-place]\n"
               "               [--bind core|none]\n"
               "OP: all_reduce all_gather reduce_scatter broadcast reduce all_to_all\n"
               "dtypes: f32 f64 bf16 f16 i32 i64 u8 (or float32, ...)\n");
}

/* "64M", "4K", "1G", "100": bytes. */
static int parse_bytes(const char *s, size_t *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return -1;
    double mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 0: break;
    case 'K': mul = 1024; end++; break;
    case 'M': mul = 1024 * 1024; end++; break;
    case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
    default: return -1;
    }
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return -1;
    *out = (size_t)(v * mul);
    return 0;
}

static int parse_dtype(const char *s, dt_dtype *out)
{
    char up[16];
    size_t n = strlen(s);
    if (n >= sizeof up) return -1;
    for (size_t i = 0; i <= n; i++) up[i] = (char)toupper((unsigned char)s[i]);
    if (dt_dtype_parse(s, out) == 0 || dt_dtype_parse(up, out) == 0) return 0;
    return -1;
}

static int parse_args(int argc, char **argv, bench_cfg *c)
{
    *c = (bench_cfg){.op = OP_COUNT, .backend = "auto", .dtype = DT_F32, .min_bytes = 8, .max_bytes = 64u << 20,
                     .factor = 4, .iters = 20, .warmup = 5, .bind = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); exit(0); }
        if (!strcmp(a, "--check")) { c->check = true; continue; }
        if (!strcmp(a, "--shared-buffers")) { c->shared = true; continue; }
        if (!strcmp(a, "--in-place")) { c->in_place = true; continue; }
        if (a[0] != '-') {
            for (int k = 0; k < OP_COUNT; k++)
                if (!strcmp(a, OP_NAMES[k]) || (!strcmp(a, "allreduce") && k == OP_ALLREDUCE) ||
                    (!strcmp(a, "allgather") && k == OP_ALLGATHER) || (!strcmp(a, "alltoall") && k == OP_ALLTOALL))
                    c->op = (bench_op)k;
            if (c->op == OP_COUNT) { fprintf(stderr, "dtbench: unknown op '%s'\n", a); return -1; }
            continue;
        }
        if (!v) { fprintf(stderr, "dtbench: %s needs a value\n", a); return -1; }
        i++;
        int bad = 0;
        if (!strcmp(a, "--backend")) c->backend = v;
        else if (!strcmp(a, "--dtype")) bad = parse_dtype(v, &c->dtype);
        else if (!strcmp(a, "--min-bytes")) bad = parse_bytes(v, &c->min_bytes);
        else if (!strcmp(a, "--max-bytes")) bad = parse_bytes(v, &c->max_bytes);
        else if (!strcmp(a, "--factor")) bad = (c->factor = atof(v)) <= 1 ? -1 : 0;
        else if (!strcmp(a, "--iters")) bad = (c->iters = atoi(v)) < 1 ? -1 : 0;
        else if (!strcmp(a, "--warmup")) bad = (c->warmup = atoi(v)) < 0 ? -1 : 0;
        else if (!strcmp(a, "--bind")) bad = !strcmp(v, "core") ? (c->bind = 1, 0) : !strcmp(v, "none") ? (c->bind = 0, 0) : -1;
        else { fprintf(stderr, "dtbench: unknown option %s\n", a); return -1; }
        if (bad) { fprintf(stderr, "dtbench: bad value '%s' for %s\n", v, a); return -1; }
    }
    if (c->op == OP_COUNT) { usage(stderr); return -1; }
    if (c->in_place && c->op == OP_ALLTOALL) { fprintf(stderr, "dtbench: all_to_all has no in-place form\n"); return -1; }
    if (c->min_bytes > c->max_bytes) { fprintf(stderr, "dtbench: --min-bytes above --max-bytes\n"); return -1; }
    return 0;
}

/* Element access in doubles (the values used are small integers, exact in every dtype). */
static double get_el(dt_dtype t, const void *b, size_t i)
{
    switch (t) {
    case DT_F32: return ((const float *)b)[i];
    case DT_F64: return ((const double *)b)[i];
    case DT_BF16: return dt_bf16_to_f32(((const uint16_t *)b)[i]);
    case DT_F16: return dt_f16_to_f32(((const uint16_t *)b)[i]);
    case DT_I32: return ((const int32_t *)b)[i];
    case DT_I64: return (double)((const int64_t *)b)[i];
    default: return ((const uint8_t *)b)[i];
    }
}

static void put_el(dt_dtype t, void *b, size_t i, double v)
{
    switch (t) {
    case DT_F32: ((float *)b)[i] = (float)v; break;
    case DT_F64: ((double *)b)[i] = v; break;
    case DT_BF16: ((uint16_t *)b)[i] = dt_f32_to_bf16((float)v); break;
    case DT_F16: ((uint16_t *)b)[i] = dt_f32_to_f16((float)v); break;
    case DT_I32: ((int32_t *)b)[i] = (int32_t)v; break;
    case DT_I64: ((int64_t *)b)[i] = (int64_t)v; break;
    default: ((uint8_t *)b)[i] = (uint8_t)v; break;
    }
}

/* Rank r's element i (global index within its send buffer): 1..3, so sums over
 * up to 64 ranks stay exact even in bf16 and uint8. */
static double val(int r, size_t i) { return (double)(1 + (r + i) % 3); }

typedef struct {
    dt_pg *pg;
    bench_cfg *c;
    int rank, n;
    size_t esz;
    char *send, *recv;   /* each cap bytes */
    size_t cap;
} bench;

/* Element counts of one call for a buffer of `bytes`: *total is what the row
 * reports, *per the count argument of the call. */
static void counts_for(const bench *b, size_t bytes, size_t *total, size_t *per)
{
    size_t elems = bytes / b->esz;
    switch (b->c->op) {
    case OP_ALLGATHER: case OP_REDUCE_SCATTER: case OP_ALLTOALL:
        *per = elems / (size_t)b->n;
        *total = *per * (size_t)b->n;
        break;
    default: *per = *total = elems; break;
    }
}

/* A call's input and output. --in-place as torch and nccl-tests put them:
 * all_reduce and reduce in one buffer, all_gather's input our block of the
 * output, reduce_scatter's output our block of the input. (broadcast is
 * always in place: its input is root's recv.) */
static char *in_buf(const bench *b, size_t per)
{
    if (b->c->op == OP_BROADCAST) return b->recv;
    if (!b->c->in_place) return b->send;
    switch (b->c->op) {
    case OP_ALLGATHER: return b->recv + (size_t)b->rank * per * b->esz;
    case OP_REDUCE_SCATTER: return b->send;
    default: return b->recv;
    }
}

static char *out_buf(const bench *b, size_t per)
{
    if (b->c->in_place && b->c->op == OP_REDUCE_SCATTER) return b->send + (size_t)b->rank * per * b->esz;
    return b->recv;
}

static int run_once(bench *b, size_t per)
{
    dt_dtype t = b->c->dtype;
    const char *in = in_buf(b, per);
    char *out = out_buf(b, per);
    switch (b->c->op) {
    case OP_ALLREDUCE: return dt_pg_allreduce(b->pg, in, out, per, t, DT_RED_SUM, NULL, NULL);
    case OP_ALLGATHER: return dt_pg_allgather(b->pg, in, out, per, t, NULL, NULL);
    case OP_REDUCE_SCATTER: return dt_pg_reduce_scatter(b->pg, in, out, per, t, DT_RED_SUM, NULL, NULL);
    case OP_BROADCAST: return dt_pg_broadcast(b->pg, out, per, t, 0, NULL, NULL);
    case OP_REDUCE: return dt_pg_reduce(b->pg, in, out, per, t, DT_RED_SUM, 0, NULL, NULL);
    default: return dt_pg_alltoall(b->pg, in, out, per, t, NULL, NULL);
    }
}

/* Inputs for a call of per elements (send; recv for broadcast). */
static void fill(bench *b, size_t per)
{
    dt_dtype t = b->c->dtype;
    size_t in = b->c->op == OP_REDUCE_SCATTER || b->c->op == OP_ALLTOALL ? per * (size_t)b->n : per;
    char *buf = in_buf(b, per);
    if (b->c->op == OP_BROADCAST)
        for (size_t i = 0; i < per; i++) put_el(t, buf, i, b->rank == 0 ? val(0, i) : 0);
    else
        for (size_t i = 0; i < in; i++) put_el(t, buf, i, val(b->rank, i));
}

static double sum_over(int n, size_t i)
{
    double s = 0;
    for (int q = 0; q < n; q++) s += val(q, i);
    return s;
}

/* Elements of this rank's output that differ from the expected result. */
static long long count_wrong(bench *b, size_t per)
{
    dt_dtype t = b->c->dtype;
    int n = b->n, r = b->rank;
    const char *out = out_buf(b, per);
    long long bad = 0;
    switch (b->c->op) {
    case OP_ALLREDUCE:
        for (size_t i = 0; i < per; i++) bad += get_el(t, out, i) != sum_over(n, i);
        break;
    case OP_REDUCE:
        if (r == 0)
            for (size_t i = 0; i < per; i++) bad += get_el(t, out, i) != sum_over(n, i);
        break;
    case OP_ALLGATHER:
        for (int q = 0; q < n; q++)
            for (size_t i = 0; i < per; i++) bad += get_el(t, out, (size_t)q * per + i) != val(q, i);
        break;
    case OP_REDUCE_SCATTER:
        for (size_t i = 0; i < per; i++) bad += get_el(t, out, i) != sum_over(n, (size_t)r * per + i);
        break;
    case OP_BROADCAST:
        for (size_t i = 0; i < per; i++) bad += get_el(t, out, i) != val(0, i);
        break;
    default: /* rank q's block r arrives as our block q */
        for (int q = 0; q < n; q++)
            for (size_t i = 0; i < per; i++) bad += get_el(t, out, (size_t)q * per + i) != val(q, (size_t)r * per + i);
        break;
    }
    return bad;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double bus_factor(bench_op op, int n)
{
    switch (op) {
    case OP_ALLREDUCE: return 2.0 * (n - 1) / n;
    case OP_ALLGATHER: case OP_REDUCE_SCATTER: case OP_ALLTOALL: return (double)(n - 1) / n;
    default: return 1.0;
    }
}

/* Pin this rank to the local_rank-th CPU it may run on (mpirun's default
 * --bind-to core): two ranks then never share a core, where the scheduler
 * would otherwise put them at times and every call would pay two context
 * switches. Returns the CPU, or -1 when not bound. */
static int bind_core(const bench_cfg *c, int local_rank, int local_size)
{
    cpu_set_t allowed;
    if (c->bind == 0 || sched_getaffinity(0, sizeof allowed, &allowed) != 0) return -1;
    int ncpu = CPU_COUNT(&allowed);
    if (local_rank < 0 || (c->bind < 0 && local_size > ncpu)) return -1;
    int want = local_rank % ncpu, k = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        if (k++ != want) continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        return sched_setaffinity(0, sizeof one, &one) == 0 ? cpu : -1;
    }
    return -1;
}

static void *buf_alloc(bench *b, size_t bytes)
{
    if (b->c->shared) return dt_pg_alloc(b->pg, bytes ? bytes : 64);
    return dt_alloc(bytes ? bytes : 64, DT_MEM_COMM);
}

static void buf_free(bench *b, void *p)
{
    if (b->c->shared) dt_pg_free(b->pg, p);
    else dt_free(p);
}

int main(int argc, char **argv)
{
    bench_cfg cfg;
    if (parse_args(argc, argv, &cfg) < 0) return 2;
    dt_pg *pg = dt_init_process_group(cfg.backend, "env://", NULL);
    if (!pg) {
        fprintf(stderr, "dtbench: backend '%s': %s\n", cfg.backend, dt_last_error());
        return dt_last_error_code() == DT_EUNSUPPORTED ? 3 : 1;
    }
    bench b = {.pg = pg, .c = &cfg, .rank = dt_pg_rank(pg), .n = dt_pg_size(pg), .esz = dt_dtype_size(cfg.dtype)};
    int cpu = bind_core(&cfg, dt_pg_local_rank(pg), dt_pg_local_size(pg));
    int bound = 0;
    if (dt_pg_allreduce(pg, &(int){cpu >= 0}, &bound, 1, DT_I32, DT_RED_SUM, NULL, NULL) < 0) {
        fprintf(stderr, "dtbench: %s\n", dt_last_error());
        dt_destroy_process_group(pg);
        return 1;
    }
    /* the largest buffer of the sweep: all_gather's output is the row's bytes, its input 1/n of it */
    b.cap = cfg.max_bytes - cfg.max_bytes % b.esz;
    b.send = buf_alloc(&b, b.cap);
    b.recv = buf_alloc(&b, b.cap);
    double *times = malloc((size_t)cfg.iters * sizeof *times);
    int rc = 0;
    if (!b.send || !b.recv || !times) {
        fprintf(stderr, "dtbench: rank %d: %zu-byte buffers%s: %s\n", b.rank, b.cap,
                cfg.shared ? " (shared: raise DTRAIN_SHM_HEAP_MB?)" : "", dt_last_error());
        rc = 1;
        goto out;
    }
    memset(b.send, 0, b.cap);
    memset(b.recv, 0, b.cap);
    if (b.rank == 0) {
        printf("# dtbench %s, %d ranks, backend %s, dtype %s, %s buffers%s, iters %d, warmup %d%s\n", OP_NAMES[cfg.op],
               b.n, dt_pg_backend(pg), dt_dtype_name(cfg.dtype), cfg.shared ? "shared (dt_pg_alloc)" : "private",
               cfg.in_place ? " in place" : "",
               cfg.iters, cfg.warmup, cfg.check ? ", checked" : "");
        printf("# %d of %d ranks bound to a core; time: slowest rank's median; busbw factor %.3f; wrong: -1 = not checked\n",
               bound, b.n, bus_factor(cfg.op, b.n));
        printf("# %10s %11s %8s %10s %10s %10s %6s\n", "bytes", "count", "dtype", "time_us", "algbw_GBps", "busbw_GBps",
               "wrong");
        fflush(stdout);
    }
    size_t last = (size_t)-1;
    for (double sz = (double)cfg.min_bytes; sz <= (double)cfg.max_bytes * 1.0000001; sz *= cfg.factor) {
        size_t total, per;
        counts_for(&b, (size_t)sz, &total, &per);
        if (total == last) continue;
        last = total;
        fill(&b, per);
        if ((rc = dt_pg_barrier(pg, NULL, NULL)) < 0) break;
        for (int i = 0; i < cfg.warmup && rc == 0; i++) rc = run_once(&b, per);
        for (int i = 0; i < cfg.iters && rc == 0; i++) {
            int64_t t0 = dt_now_ns();
            rc = run_once(&b, per);
            times[i] = (double)(dt_now_ns() - t0) * 1e-3;
        }
        if (rc < 0) break;
        qsort(times, (size_t)cfg.iters, sizeof *times, cmp_double);
        double med = cfg.iters % 2 ? times[cfg.iters / 2] : 0.5 * (times[cfg.iters / 2 - 1] + times[cfg.iters / 2]);
        if (cfg.check && cfg.in_place) { /* the timed calls summed into their own inputs */
            fill(&b, per);
            if ((rc = run_once(&b, per)) < 0) break;
        }
        long long wrong = cfg.check ? count_wrong(&b, per) : -1;
        double slowest = med;
        long long wrong_all = wrong;
        if ((rc = dt_pg_allreduce(pg, &med, &slowest, 1, DT_F64, DT_RED_MAX, NULL, NULL)) < 0) break;
        if (cfg.check && (rc = dt_pg_allreduce(pg, &wrong, &wrong_all, 1, DT_I64, DT_RED_SUM, NULL, NULL)) < 0) break;
        if (b.rank == 0) {
            size_t bytes = total * b.esz;
            double alg = slowest > 0 ? (double)bytes / (slowest * 1e3) : 0; /* bytes/ns = GB/s */
            printf("%12zu %11zu %8s %10.2f %10.3f %10.3f %6lld\n", bytes, total, dt_dtype_name(cfg.dtype), slowest, alg,
                   alg * bus_factor(cfg.op, b.n), wrong_all);
            fflush(stdout);
        }
    }
    if (rc < 0) fprintf(stderr, "dtbench: rank %d: %s\n", b.rank, dt_last_error());
out:
    free(times);
    if (b.send) buf_free(&b, b.send);
    if (b.recv) buf_free(&b, b.recv);
    dt_destroy_process_group(pg);
    return rc < 0 ? 1 : rc;
}
