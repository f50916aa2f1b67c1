/* dtrun_worker: the test programs dtrun runs in the tests/tools/dtrun scripts, one
 * per mode (argv[1]):
 *   env                 print the launcher's variables, one NAME=value line each
 *   fail-once           rank 1 fails (recorded error, exit 3) on attempt 0; all succeed after
 *   fail CODE           rank 1 records an error and exits CODE at once; the others sleep
 *   crash SIG           rank 1 raises signal SIG; the others sleep
 *   sleep SECS DIR      write DIR/<rank>.pids (own pid and a forked grandchild's), print
 *                       "sleeping rank=R world=W restart=C group=G", sleep
 *   ignore-term SECS    ignore SIGTERM, then sleep
 *   lines N LEN         print N lines of LEN bytes of one letter per rank, in small pieces
 *   oom                 rank 1 allocates and touches memory until the kernel kills it
 *   store               meet the other ranks through the store at MASTER_ADDR:MASTER_PORT
 *                       (a client when TORCHELASTIC_USE_AGENT_STORE=True, else rank 0 hosts)
 *   freeport            print a TCP port free on 127.0.0.1 now
 *   pg-attempt          init a process group by env://, print whether a key rank 0 set on
 *                       an earlier attempt is visible ("attempt N mark seen|clean"), set it;
 *                       rank 1 then fails on attempt 0
 * Exits 2 on a bad mode. */
#define _GNU_SOURCE
#include <dtrain/dtrain.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}

static void sleep_s(double s) { dt_sleep_ms((int64_t)(s * 1000)); }

static int mode_env(void)
{
    static const char *names[] = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                                  "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT",
                                  "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS", "TORCHELASTIC_RUN_ID",
                                  "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_ERROR_FILE", "OMP_NUM_THREADS",
                                  "DTRAIN_NUM_THREADS"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const char *v = getenv(names[i]);
        printf("%s=%s\n", names[i], v ? v : "<unset>");
    }
    return 0;
}

static int store_meet(void)
{
    int rank = env_int("RANK", 0), world = env_int("WORLD_SIZE", 1);
    const char *addr = getenv("MASTER_ADDR");
    const char *agent = getenv("TORCHELASTIC_USE_AGENT_STORE");
    bool client = agent && strcmp(agent, "True") == 0;
    dt_store_opts so = DT_STORE_OPTS_INIT;
    so.timeout_ms = 60000;
    dt_store *tcp = dt_store_tcp(addr ? addr : "127.0.0.1", env_int("MASTER_PORT", 0), !client && rank == 0, &so);
    if (!tcp) { fprintf(stderr, "store: %s\n", dt_last_error()); return 1; }
    char prefix[64], key[32];
    snprintf(prefix, sizeof prefix, "/worker/attempt_%d", env_int("TORCHELASTIC_RESTART_COUNT", 0));
    dt_store *s = dt_store_prefix(tcp, prefix);
    int64_t n = 0;
    int rc = s ? dt_store_add(s, "arrived", 1, &n) : -1;
    snprintf(key, sizeof key, "rank%d", rank);
    if (rc == 0) rc = dt_store_set(s, key, "x", 1);
    for (int r = 0; rc == 0 && r < world; r++) {
        snprintf(key, sizeof key, "rank%d", r);
        const char *keys[1] = {key};
        rc = dt_store_wait(s, keys, 1, -1);
    }
    if (rc < 0) { fprintf(stderr, "store: %s\n", dt_last_error()); return 1; }
    printf("store ok rank=%d world=%d t=%lld\n", rank, world, (long long)dt_wall_ms());
    fflush(stdout);
    /* rank 0 may host: it leaves last, after everyone said so */
    if (dt_store_add(s, "left", 1, &n) == 0 && rank == 0 && !client) {
        while (n < world && dt_store_add(s, "left", 0, &n) == 0) dt_sleep_ms(5);
    }
    dt_store_release(s);
    dt_store_release(tcp);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    int rank = env_int("RANK", 0);
    if (!strcmp(mode, "env")) return mode_env();
    if (!strcmp(mode, "fail-once")) {
        int attempt = env_int("TORCHELASTIC_RESTART_COUNT", 0);
        if (attempt == 0 && rank == 1) {
            dt_set_error(DT_EIO, "rank %d gives up on attempt %d", rank, attempt);
            return 3;   /* the exit handler writes the error file */
        }
        sleep_s(0.2);
        printf("attempt %d ok\n", attempt);
        return 0;
    }
    if (!strcmp(mode, "pg-attempt")) {
        int attempt = env_int("TORCHELASTIC_RESTART_COUNT", 0);
        dt_pg *pg = dt_init_process_group("shm", "env://", NULL);
        if (!pg) { fprintf(stderr, "init: %s\n", dt_last_error()); return 1; }
        const char *key = "attempt-mark";
        bool seen = false;
        if (dt_store_check(dt_pg_store(pg), &key, 1, &seen) < 0) { fprintf(stderr, "check: %s\n", dt_last_error()); return 1; }
        printf("attempt %d mark %s\n", attempt, seen ? "seen" : "clean");
        fflush(stdout);
        if (dt_pg_barrier(pg, NULL, NULL) < 0) { fprintf(stderr, "barrier: %s\n", dt_last_error()); return 1; }
        if (rank == 0 && dt_store_set(dt_pg_store(pg), key, "x", 1) < 0) return 1;
        if (dt_pg_barrier(pg, NULL, NULL) < 0) { fprintf(stderr, "barrier: %s\n", dt_last_error()); return 1; }
        if (attempt == 0 && rank == 1) return 3;
        dt_destroy_process_group(pg);
        return 0;
    }
    if (!strcmp(mode, "fail") && argc > 2) {
        if (rank == 1) {
            sleep_s(0.1);
            dt_set_error(DT_EPEER, "boom from rank %d", rank);
            return atoi(argv[2]);
        }
        sleep_s(60);
        return 0;
    }
    if (!strcmp(mode, "crash") && argc > 2) {
        if (rank == 1) { sleep_s(0.1); raise(atoi(argv[2])); }
        sleep_s(60);
        return 0;
    }
    if (!strcmp(mode, "sleep") && argc > 3) {
        pid_t child = fork();
        if (child == 0) { sleep_s(atof(argv[2])); _exit(0); }
        char path[4096];
        snprintf(path, sizeof path, "%s/%d.pids", argv[3], rank);
        FILE *f = fopen(path, "w");
        if (!f) return 1;
        fprintf(f, "%d %d\n", (int)getpid(), (int)child);
        fclose(f);
        printf("sleeping rank=%d world=%d restart=%d group=%d\n", rank, env_int("WORLD_SIZE", -1),
               env_int("TORCHELASTIC_RESTART_COUNT", -1), env_int("GROUP_RANK", -1));
        fflush(stdout);
        sleep_s(atof(argv[2]));
        return 0;
    }
    if (!strcmp(mode, "ignore-term") && argc > 2) {
        signal(SIGTERM, SIG_IGN);
        printf("ignoring SIGTERM\n");
        fflush(stdout);
        if (rank == 1) { sleep_s(0.2); return 1; }
        sleep_s(atof(argv[2]));
        return 0;
    }
    if (!strcmp(mode, "lines") && argc > 3) {
        int n = atoi(argv[2]), len = atoi(argv[3]);
        char *line = malloc((size_t)len + 1);
        memset(line, 'a' + rank % 26, (size_t)len);
        line[len] = '\n';
        for (int i = 0; i < n; i++) {
            /* pieces of 7 bytes: a launcher that does not assemble lines would mix them */
            for (int off = 0; off <= len; off += 7) {
                int k = len + 1 - off < 7 ? len + 1 - off : 7;
                if (write(1, line + off, (size_t)k) != k) return 1;
            }
        }
        free(line);
        return 0;
    }
    if (!strcmp(mode, "oom")) {
        if (rank != 1) { sleep_s(60); return 0; }
        for (;;) {
            char *p = malloc(1 << 20);
            if (!p) { sleep_s(60); return 1; }   /* overcommit off: wait for the killer anyway */
            memset(p, 1, 1 << 20);
        }
    }
    if (!strcmp(mode, "store")) return store_meet();
    if (!strcmp(mode, "freeport")) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t l = sizeof a;
        if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || getsockname(fd, (struct sockaddr *)&a, &l) < 0) return 1;
        printf("%d\n", ntohs(a.sin_port));
        close(fd);
        return 0;
    }
    fprintf(stderr, "dtrun_worker: unknown mode '%s'\n", mode);
    return 2;
}
