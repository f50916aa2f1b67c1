/* compare_set, add, delete and num_keys against torch 1.13 itself (its Python
 * binding has no check): the
 * same operations run on torch's HashStore and TCPStore (store_ref.py) and on
 * dtrain's hash, tcp and file stores, and the results must be equal line for
 * line. Skipped, with the reason, where /usr/bin/python3 has no torch. */
#include "dt_test.h"
#include "dt_python.h"

#include <stdlib.h>
#include <unistd.h>

static const char *const OPS[] = {
    "cas k old new", "num_keys", "cas k - v1", "get k", "cas k zz v2", "get k", "cas k - v3", "get k",
    "cas k v1 v2!", "get k", "set e -", "cas e - full", "get e", "cas e full -", "get e",
    "add c 5", "get c", "add c -7", "add c 0", "set n 40", "add n 2", "get n", "add fresh 0", "num_keys",
    "del c", "del c", "num_keys", "cas c - back", "get c", "num_keys", "set k same",
    "cas k same same", "get k", "del k", "num_keys",
};
#define NOPS ((int)(sizeof OPS / sizeof OPS[0]))

static void show(char *out, size_t cap, const void *v, size_t n)
{
    if (n == 0) snprintf(out, cap, "-");
    else snprintf(out, cap, "%.*s", (int)n, (const char *)v);
}

/* Run OPS on s; each result into res[i]. */
static int run(dt_store *s, char res[][64])
{
    int64_t base = 0;
    DT_CHECK(dt_store_num_keys(s, &base));
    for (int i = 0; i < NOPS; i++) {
        char line[128], *f[6] = {0};
        int nf = 0;
        snprintf(line, sizeof line, "%s", OPS[i]);
        for (char *t = strtok(line, " "); t && nf < 6; t = strtok(NULL, " ")) f[nf++] = t;
        for (int j = 2; j < nf; j++)
            if (strcmp(f[j], "-") == 0) f[j] = "";
        void *v = NULL;
        size_t n = 0;
        if (strcmp(f[0], "set") == 0) {
            DT_CHECK(dt_store_set(s, f[1], f[2], strlen(f[2])));
            snprintf(res[i], 64, "ok");
        } else if (strcmp(f[0], "get") == 0) {
            DT_CHECK(dt_store_get(s, f[1], &v, &n));
            show(res[i], 64, v, n);
        } else if (strcmp(f[0], "add") == 0) {
            int64_t out = 0;
            DT_CHECK(dt_store_add(s, f[1], atoll(f[2]), &out));
            snprintf(res[i], 64, "%lld", (long long)out);
        } else if (strcmp(f[0], "cas") == 0) {
            DT_CHECK(dt_store_compare_set(s, f[1], f[2], strlen(f[2]), f[3], strlen(f[3]), &v, &n));
            show(res[i], 64, v, n);
        } else if (strcmp(f[0], "del") == 0) {
            bool del = false;
            DT_CHECK(dt_store_delete(s, f[1], &del));
            snprintf(res[i], 64, "%d", del ? 1 : 0);
        } else {
            int64_t nk = 0;
            DT_CHECK(dt_store_num_keys(s, &nk));
            snprintf(res[i], 64, "%lld", (long long)(nk - base));
        }
        dt_free(v);
    }
    return 0;
}

static char g_ref[NOPS][64];

static void compare(dt_store *s, const char *kind)
{
    DT_ASSERT_MSG(s, "%s store: %s", kind, dt_last_error());
    char res[NOPS][64];
    DT_ASSERT_OK(run(s, res));
    for (int i = 0; i < NOPS; i++)
        DT_ASSERT_MSG(strcmp(res[i], g_ref[i]) == 0, "%s store, op %d '%s': dtrain '%s', torch '%s'", kind, i,
                      OPS[i], res[i], g_ref[i]);
}

static void t_hash(void)
{
    dt_store *s = dt_store_hash(NULL);
    compare(s, "hash");
    dt_store_release(s);
}

static void t_tcp(void)
{
    dt_store_opts o = DT_STORE_OPTS_INIT;
    o.timeout_ms = 30000;
    dt_store *s = dt_store_tcp("127.0.0.1", 0, true, &o);
    compare(s, "tcp");
    dt_store_release(s);
}

static void t_file(void)
{
    char dir[] = "/tmp/dt_store_torch_XXXXXX", path[64];
    DT_ASSERT(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/f", dir);
    dt_store_opts o = DT_STORE_OPTS_INIT;
    o.timeout_ms = 30000;
    dt_store *s = dt_store_file(path, 1, &o);
    compare(s, "file");
    dt_store_release(s);
    rmdir(dir);
}

int main(void)
{
    if (dt_py_sh(DT_PY " -c 'import torch.distributed' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP: " DT_PY " cannot import torch.distributed; no comparison with torch\n");
        return 0;
    }
    char dir[] = "/tmp/dt_store_ref_XXXXXX", ops[64], out[64];
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    snprintf(ops, sizeof ops, "%s/ops", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    FILE *f = fopen(ops, "w");
    for (int i = 0; i < NOPS; i++) fprintf(f, "%s\n", OPS[i]);
    fclose(f);
    int rc = dt_py_sh(DT_PY " %s/store_ref.py %s > %s", DT_TEST_DIR, ops, out);
    f = fopen(out, "r");
    int n = 0;
    while (f && n < NOPS && fgets(g_ref[n], 64, f)) {
        g_ref[n][strcspn(g_ref[n], "\n")] = '\0';
        n++;
    }
    if (f) fclose(f);
    unlink(ops);
    unlink(out);
    rmdir(dir);
    if (rc != 0 || n != NOPS) {
        fprintf(stderr, "FAIL: store_ref.py exited %d with %d of %d results\n", rc, n, NOPS);
        return 1;
    }
    DT_RUN(t_hash);
    DT_RUN(t_tcp);
    DT_RUN(t_file);
    return DT_TEST_END();
}
