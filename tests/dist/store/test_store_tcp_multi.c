/* The TCP store across real processes (fork): world sizes 1..4 meeting
 * through it, clients started before their server, many clients adding at
 * once, a blocked get woken from another process, clients killed (SIGKILL) in
 * the middle of a request or while parked, and the server's process killed
 * under its clients. Children report through their exit status. */
#include "multi.h"
#include "dist/net.h"
#include "dist/store/tcp_wire.h"

#include <pthread.h>

static dt_store *client(int port, int64_t timeout_ms)
{
    dt_store_opts o = DT_STORE_OPTS_INIT;
    o.timeout_ms = timeout_ms;
    return dt_store_tcp("127.0.0.1", port, false, &o);
}

static dt_store *server(int port, int64_t timeout_ms)
{
    dt_store_opts o = DT_STORE_OPTS_INIT;
    o.timeout_ms = timeout_ms;
    return dt_store_tcp("127.0.0.1", port, true, &o);
}

static int free_port(void)
{
    int fd, port = -1;
    if (dt__net_listen("127.0.0.1", 0, 1, &fd, &port) < 0) return -1;
    dt__net_close(fd);
    return port;
}

static int rank_child(int port, int i, int n)
{
    dt_store *s = client(port, 60000);
    if (!s) return -1;
    int rc = rank_body(s, i + 1, n + 1);
    dt_store_release(s);
    return rc;
}

static void t_world_sizes(void)
{
    for (int world = 1; world <= 4; world++) {
        dt_store *s = server(0, 60000);
        DT_ASSERT_MSG(s, "server: %s", dt_last_error());
        pid_t pids[4];
        spawn(pids, world - 1, rank_child, dt_store_port(s));
        int rc = rank_body(s, 0, world);
        int bad = reap(pids, world - 1);
        DT_ASSERT_MSG(rc == 0, "rank 0: %s", dt_last_error());
        DT_ASSERT_EQ(bad, 0);
        int64_t v = 0;
        DT_ASSERT_OK(dt_store_add(s, "finished", 0, &v));
        DT_ASSERT_EQ(v, world);
        DT_ASSERT_OK(dt_store_num_keys(s, &v));
        DT_ASSERT_EQ(v, world + 2);
        dt_store_release(s);
    }
}

/* ---- clients before the server: they retry until it listens. */

static int early_child(int port, int i, int n)
{
    (void)n;
    dt_store *s = client(port, 60000);
    if (!s) return -1;
    char k[32];
    snprintf(k, sizeof k, "early/%d", i);
    int rc = dt_store_set(s, k, "here", 4);
    dt_store_release(s);
    return rc;
}

static void t_clients_before_server(void)
{
    int port = free_port();
    DT_ASSERT(port > 0);
    pid_t pids[3];
    spawn(pids, 3, early_child, port);
    dt_sleep_ms(200);
    dt_store *s = server(port, 60000);
    DT_ASSERT_MSG(s, "server: %s", dt_last_error());
    const char *keys[3] = {"early/0", "early/1", "early/2"};
    int rc = dt_store_wait(s, keys, 3, 60000);
    DT_ASSERT_EQ(reap(pids, 3), 0);
    DT_ASSERT_OK(rc);
    dt_store_release(s);
}

/* ---- many clients at once: adds give the exact total. */

enum { ADDERS = 16, ADDS = 100 };

static int adder_child(int port, int i, int n)
{
    (void)n;
    dt_store *s = client(port, 60000);
    if (!s) return -1;
    int rc = 0;
    for (int j = 0; j < ADDS && rc == 0; j++) rc = dt_store_add(s, "total", i + 1, NULL);
    /* A blocking get of a key the parent sets once every adder is done. */
    void *v = NULL;
    size_t len = 0;
    if (rc == 0) rc = dt_store_add(s, "adders_done", 1, NULL);
    if (rc == 0) rc = dt_store_get(s, "go_home", &v, &len);
    dt_free(v);
    dt_store_release(s);
    return rc;
}

static void t_many_clients_add(void)
{
    dt_store *s = server(0, 60000);
    DT_ASSERT(s);
    pid_t pids[ADDERS];
    spawn(pids, ADDERS, adder_child, dt_store_port(s));
    int64_t done = 0;
    int rc = 0;
    while (rc == 0 && done < ADDERS) {
        rc = dt_store_add(s, "adders_done", 0, &done);
        dt_sleep_ms(5);
    }
    if (rc == 0) rc = dt_store_set(s, "go_home", "1", 1);   /* wakes 16 parked gets */
    int bad = reap(pids, ADDERS);
    DT_ASSERT_OK(rc);
    DT_ASSERT_EQ(bad, 0);
    int64_t total = 0;
    DT_ASSERT_OK(dt_store_add(s, "total", 0, &total));
    DT_ASSERT_EQ(total, (int64_t)ADDS * ADDERS * (ADDERS + 1) / 2);
    dt_store_release(s);
}

/* ---- a blocked get in another process, woken by a later set here. */

static int getter_child(int port, int i, int n)
{
    (void)i; (void)n;
    dt_store *s = client(port, 60000);
    if (!s) return -1;
    void *v = NULL;
    size_t len = 0;
    int rc = dt_store_get(s, "later", &v, &len);
    if (rc == 0 && (len != 3 || memcmp(v, "now", 3) != 0)) rc = dt_set_error(DT_EINTERNAL, "wrong value");
    dt_free(v);
    dt_store_release(s);
    return rc;
}

static void t_get_woken_across_processes(void)
{
    dt_store *s = server(0, 60000);
    DT_ASSERT(s);
    pid_t pid;
    spawn(&pid, 1, getter_child, dt_store_port(s));
    dt_sleep_ms(100);
    DT_ASSERT_OK(dt_store_set(s, "later", "now", 3));
    DT_ASSERT_EQ(reap(&pid, 1), 0);
    dt_store_release(s);
}

/* ---- clients killed mid-request and while parked. */

static int g_ready_fd = -1;   /* the child writes one byte here when in place */

static int half_request_child(int port, int i, int n)
{
    (void)n;
    int fd = -1;
    DT_CHECK(dt__net_connect("127.0.0.1", port, dt_deadline_ns(30000), &fd));
    unsigned char hello[8], ch[DT__WIRE_CHALLENGE], mac[32] = {0}, st[4];
    dt__le32_put(hello, DT__WIRE_MAGIC);
    dt__le32_put(hello + 4, DT__WIRE_VERSION);
    int64_t dl = dt_deadline_ns(30000);
    DT_CHECK(dt__net_send_all(fd, hello, 8, dl, "srv"));
    DT_CHECK(dt__net_recv_all(fd, ch, sizeof ch, dl, "srv"));
    DT_CHECK(dt__net_send_all(fd, mac, 32, dl, "srv"));
    DT_CHECK(dt__net_recv_all(fd, st, 4, dl, "srv"));
    if (i == 0) {
        /* A SET announcing 32 MiB, 1 MiB of which arrives before the kill. */
        unsigned char *b = dt_calloc(1, (1 << 20) + 5, DT_MEM_OTHER);
        dt__le32_put(b, 32u << 20);
        b[4] = DT__OP_SET;
        DT_CHECK(dt__net_send_all(fd, b, (1 << 20) + 5, dl, "srv"));
    } else {
        unsigned char half[7] = {30, 0, 0, 0, DT__OP_ADD, 5, 0};
        DT_CHECK(dt__net_send_all(fd, half, sizeof half, dl, "srv"));
    }
    char one = 1;
    if (write(g_ready_fd, &one, 1) != 1) return -1;
    pause();
    return 0;
}

static int parked_child(int port, int i, int n)
{
    (void)i; (void)n;
    dt_store *s = client(port, 60000);
    if (!s) return -1;
    char one = 1;
    if (write(g_ready_fd, &one, 1) != 1) return -1;
    const char *k = "parked_key";
    return dt_store_wait(s, &k, 1, 60000);   /* killed while parked on the server */
}

static void t_clients_killed(void)
{
    dt_store *s = server(0, 60000);
    DT_ASSERT(s);
    int port = dt_store_port(s);
    int pfd[2];
    DT_ASSERT_EQ(pipe(pfd), 0);
    g_ready_fd = pfd[1];
    pid_t pids[3];
    spawn(pids, 2, half_request_child, port);
    spawn(pids + 2, 1, parked_child, port);
    /* A healthy client blocked in get while the others die. */
    pid_t getter;
    spawn(&getter, 1, getter_child, port);
    char b;
    for (int i = 0; i < 3; i++) DT_ASSERT_EQ(read(pfd[0], &b, 1), 1);
    dt_sleep_ms(50);   /* let the parked child's wait reach the server */
    for (int i = 0; i < 3; i++) kill(pids[i], SIGKILL);
    for (int i = 0; i < 3; i++) waitpid(pids[i], NULL, 0);
    close(pfd[0]);
    close(pfd[1]);
    /* The server wakes the (dead) parked waiter and the live getter alike. */
    DT_ASSERT_OK(dt_store_set(s, "parked_key", "x", 1));
    DT_ASSERT_OK(dt_store_set(s, "later", "now", 3));
    DT_ASSERT_EQ(reap(&getter, 1), 0);
    int64_t v = 0;
    DT_ASSERT_OK(dt_store_add(s, "after_kills", 1, &v));
    DT_ASSERT_EQ(v, 1);
    dt_store *c = client(port, 10000);
    DT_ASSERT_MSG(c, "new client after the kills: %s", dt_last_error());
    DT_ASSERT_OK(dt_store_add(c, "after_kills", 1, &v));
    DT_ASSERT_EQ(v, 2);
    dt_store_release(c);
    dt_store_release(s);
}

/* ---- the server's process killed under its clients. */

static int server_child(int port, int i, int n)
{
    (void)port; (void)i; (void)n;
    dt_store *s = server(0, 60000);
    if (!s) return -1;
    int p = dt_store_port(s);
    if (write(g_ready_fd, &p, sizeof p) != sizeof p) return -1;
    pause();
    return 0;
}

static void *kill_later(void *arg)
{
    dt_sleep_ms(100);
    kill(*(pid_t *)arg, SIGKILL);
    return NULL;
}

static void t_server_killed(void)
{
    int pfd[2];
    DT_ASSERT_EQ(pipe(pfd), 0);
    g_ready_fd = pfd[1];
    pid_t srv;
    spawn(&srv, 1, server_child, 0);
    int port = 0;
    DT_ASSERT_EQ(read(pfd[0], &port, sizeof port), (ssize_t)sizeof port);
    close(pfd[0]);
    close(pfd[1]);
    dt_store *c = client(port, 20000);
    DT_ASSERT_MSG(c, "client: %s", dt_last_error());
    DT_ASSERT_OK(dt_store_set(c, "k", "v", 1));
    pthread_t th;
    pthread_create(&th, NULL, kill_later, &srv);
    const char *k = "never";
    int rc = dt_store_wait(c, &k, 1, 20000);   /* blocked when the server dies */
    pthread_join(th, NULL);
    waitpid(srv, NULL, 0);
    DT_ASSERT_MSG(rc == DT_EPEER, "wait when the server died: %s (%s)", dt_errname(rc), dt_last_error());
    DT_ASSERT_CONTAINS(dt_last_error(), "tcp store 127.0.0.1:");
    DT_ASSERT_ERR(dt_store_get(c, "k", &(void *){0}, &(size_t){0}), DT_ECLOSED);
    dt_store_release(c);
    /* A new client to the dead server: a timeout within its own, naming the address. */
    DT_ASSERT(client(port, 300) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_ETIMEOUT);
}

int main(void)
{
    signal(SIGPIPE, SIG_DFL);   /* the library must not need it ignored */
    DT_RUN(t_world_sizes);
    DT_RUN(t_clients_before_server);
    DT_RUN(t_many_clients_add);
    DT_RUN(t_get_woken_across_processes);
    DT_RUN(t_clients_killed);
    DT_RUN(t_server_killed);
    return DT_TEST_END();
}
