/* The TCP store in one process: the server on its background thread, clients
 * on this and other threads. Every operation (the common suite), the
 * handshake and the secret, and the faults a server must survive: a wrong
 * magic, garbage, a huge length prefix, half a message then gone; and what a
 * client sees when the server goes away or was never there. */
#include "store_suite.h"
#include "dist/net.h"
#include "dist/store/tcp_wire.h"

#include <sys/socket.h>

static int g_port;

static dt_store *open_client(void *ctx)
{
    (void)ctx;
    dt_store_opts o = DT_STORE_OPTS_INIT;
    o.timeout_ms = 30000;
    return dt_store_tcp("127.0.0.1", g_port, false, &o);
}

static dt_store *open_prefixed_client(void *ctx)
{
    dt_store *c = open_client(ctx);
    dt_store *p = c ? dt_store_prefix(c, "pre") : NULL;
    dt_store_release(c);
    return p;
}

static dt_store *start_server(const char *secret, int64_t timeout_ms)
{
    dt_store_opts o = DT_STORE_OPTS_INIT;
    o.timeout_ms = timeout_ms;
    o.secret = secret;
    return dt_store_tcp("127.0.0.1", 0, true, &o);
}

/* ---- raw connections, to speak (or break) the protocol by hand */

static int raw_connect(int port)
{
    int fd = -1;
    if (dt__net_connect("127.0.0.1", port, dt_deadline_ns(10000), &fd) < 0) return -1;
    return fd;
}

/* The handshake of a client without a secret; 0 when welcomed. */
static int raw_handshake(int fd)
{
    unsigned char hello[8], ch[DT__WIRE_CHALLENGE], mac[32] = {0}, st[4];
    dt__le32_put(hello, DT__WIRE_MAGIC);
    dt__le32_put(hello + 4, DT__WIRE_VERSION);
    int64_t dl = dt_deadline_ns(10000);
    if (dt__net_send_all(fd, hello, 8, dl, "raw") < 0 || dt__net_recv_all(fd, ch, sizeof ch, dl, "raw") < 0 ||
        dt__net_send_all(fd, mac, 32, dl, "raw") < 0 || dt__net_recv_all(fd, st, 4, dl, "raw") < 0)
        return -1;
    return (int)dt__le32_get(st);
}

/* Whether the server closed fd (EOF or reset before the deadline). */
static bool closed_by_server(int fd)
{
    char buf[256];
    for (;;) {
        int rc = dt__net_recv_all(fd, buf, 1, dt_deadline_ns(20000), "raw");
        if (rc == DT_EPEER) return true;
        if (rc < 0) return false;   /* timeout: still open */
    }
}

/* The server still answers a fresh client correctly. */
static void assert_serving(void)
{
    dt_store *c = open_client(NULL);
    DT_ASSERT_MSG(c, "client: %s", dt_last_error());
    int64_t v = 0;
    DT_ASSERT_OK(dt_store_add(c, "alive", 1, &v));
    DT_ASSERT(v >= 1);
    dt_store_release(c);
}

static void t_port_and_desc(void)
{
    DT_ASSERT(g_port > 0 && g_port < 65536);
    dt_store *c = open_client(NULL);
    DT_ASSERT(c);
    DT_ASSERT_EQ(dt_store_port(c), g_port);
    dt_store_release(c);
}

static void t_wrong_magic(void)
{
    int fd = raw_connect(g_port);
    DT_ASSERT(fd >= 0);
    DT_ASSERT_OK(dt__net_send_all(fd, "GET / HTTP/1.0\r\n\r\n", 18, dt_deadline_ns(5000), "raw"));
    DT_ASSERT(closed_by_server(fd));
    dt__net_close(fd);
    assert_serving();
}

static void t_garbage_after_handshake(void)
{
    int fd = raw_connect(g_port);
    DT_ASSERT(fd >= 0);
    DT_ASSERT_EQ(raw_handshake(fd), 0);
    unsigned char junk[600];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(i * 37 + 11);
    junk[0] = 20; junk[1] = junk[2] = junk[3] = 0;  /* a 20-byte body with an unknown op */
    junk[4] = 200;
    DT_ASSERT_OK(dt__net_send_all(fd, junk, sizeof junk, dt_deadline_ns(5000), "raw"));
    DT_ASSERT(closed_by_server(fd));
    dt__net_close(fd);
    /* A body whose key length runs past the body. */
    fd = raw_connect(g_port);
    DT_ASSERT_EQ(raw_handshake(fd), 0);
    unsigned char bad[13] = {9, 0, 0, 0, DT__OP_SET, 0xff, 0xff, 0, 0, 'k', 'e', 'y', '!'};
    DT_ASSERT_OK(dt__net_send_all(fd, bad, sizeof bad, dt_deadline_ns(5000), "raw"));
    DT_ASSERT(closed_by_server(fd));
    dt__net_close(fd);
    assert_serving();
}

static void t_version_mismatch(void)
{
    int fd = raw_connect(g_port);
    unsigned char hello[8], ch[DT__WIRE_CHALLENGE];
    dt__le32_put(hello, DT__WIRE_MAGIC);
    dt__le32_put(hello + 4, 99);
    DT_ASSERT_OK(dt__net_send_all(fd, hello, 8, dt_deadline_ns(5000), "raw"));
    DT_ASSERT_OK(dt__net_recv_all(fd, ch, sizeof ch, dt_deadline_ns(20000), "raw"));
    DT_ASSERT_EQ(dt__le32_get(ch + 4), DT__WIRE_VERSION);
    DT_ASSERT(closed_by_server(fd));
    dt__net_close(fd);
    assert_serving();
}

static void t_huge_length(void)
{
    /* A length past the cap: rejected at once. */
    int fd = raw_connect(g_port);
    DT_ASSERT_EQ(raw_handshake(fd), 0);
    unsigned char hdr[4];
    dt__le32_put(hdr, 0xffffffffu);
    DT_ASSERT_OK(dt__net_send_all(fd, hdr, 4, dt_deadline_ns(5000), "raw"));
    DT_ASSERT(closed_by_server(fd));
    dt__net_close(fd);

    /* Lengths just under the cap (each claims ~128 MiB) with a little data behind
     * them: the server holds what arrived, not what was announced. */
    enum { NCONN = 8, SENT = 32 << 10 };
    dt_store *c = open_client(NULL);
    DT_ASSERT(c);
    DT_ASSERT_OK(dt_store_set(c, "sync", "1", 1));
    dt_mem_stats before, after;
    dt_mem_get_stats(&before);
    int fds[NCONN];
    unsigned char *chunk = dt_calloc(1, SENT, DT_MEM_OTHER);
    for (int i = 0; i < NCONN; i++) {
        fds[i] = raw_connect(g_port);
        DT_ASSERT(fds[i] >= 0);
        DT_ASSERT_EQ(raw_handshake(fds[i]), 0);
        dt__le32_put(hdr, DT__WIRE_MAX_FRAME - 1);
        DT_ASSERT_OK(dt__net_send_all(fds[i], hdr, 4, dt_deadline_ns(5000), "raw"));
        chunk[0] = DT__OP_SET;
        DT_ASSERT_OK(dt__net_send_all(fds[i], chunk, SENT, dt_deadline_ns(5000), "raw"));
    }
    dt_free(chunk);
    /* Two round trips: the server has read what those connections sent. */
    DT_ASSERT_OK(dt_store_set(c, "sync", "2", 1));
    DT_ASSERT_OK(dt_store_set(c, "sync", "3", 1));
    dt_mem_get_stats(&after);
    int64_t grew = after.total_current - before.total_current;
    DT_ASSERT_MSG(grew < (4 << 20), "server memory grew by %lld bytes for %d x %d bytes sent", (long long)grew,
                  NCONN, SENT);
    for (int i = 0; i < NCONN; i++) dt__net_close(fds[i]);
    ASSERT_GET(c, "sync", "3");
    dt_store_release(c);
    assert_serving();
}

static void t_half_message_then_gone(void)
{
    dt_store *c = open_client(NULL);
    DT_ASSERT(c);
    /* Another client is blocked in get while the bad one comes and goes. */
    int fd = raw_connect(g_port);
    DT_ASSERT_EQ(raw_handshake(fd), 0);
    unsigned char half[10] = {40, 0, 0, 0, DT__OP_SET, 3, 0, 0, 0, 'a'};
    DT_ASSERT_OK(dt__net_send_all(fd, half, sizeof half, dt_deadline_ns(5000), "raw"));
    dt__net_close(fd);
    /* Half a hello, then gone. */
    fd = raw_connect(g_port);
    DT_ASSERT_OK(dt__net_send_all(fd, "DTS", 3, dt_deadline_ns(5000), "raw"));
    dt__net_close(fd);
    DT_ASSERT_OK(dt_store_set(c, "half", "ok", 2));
    ASSERT_GET(c, "half", "ok");
    dt_store_release(c);
    assert_serving();
}

static void t_many_clients(void)
{
    /* 200 connections open at once, each served in turn. */
    enum { N = 200 };
    dt_store *c[N];
    for (int i = 0; i < N; i++) {
        c[i] = open_client(NULL);
        DT_ASSERT_MSG(c[i], "client %d: %s", i, dt_last_error());
        DT_ASSERT_OK(dt_store_add(c[i], "many", 1, NULL));
    }
    int64_t v = 0;
    DT_ASSERT_OK(dt_store_add(c[0], "many", 0, &v));
    DT_ASSERT_EQ(v, N);
    /* A port scanner's touch: connect, close. */
    for (int i = 0; i < 20; i++) dt__net_close(raw_connect(g_port));
    for (int i = 0; i < N; i++) dt_store_release(c[i]);
    assert_serving();
}

static void t_secret(void)
{
    dt_store *srv = start_server("s3cret", 20000);
    DT_ASSERT_MSG(srv, "server: %s", dt_last_error());
    int port = dt_store_port(srv);
    dt_store_opts o = DT_STORE_OPTS_INIT;
    o.timeout_ms = 20000;
    o.secret = "s3cret";
    dt_store *good = dt_store_tcp("127.0.0.1", port, false, &o);
    DT_ASSERT_MSG(good, "right secret: %s", dt_last_error());
    DT_ASSERT_OK(dt_store_set(good, "k", "v", 1));
    ASSERT_GET(srv, "k", "v");
    o.secret = "wrong";
    DT_ASSERT(dt_store_tcp("127.0.0.1", port, false, &o) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_EAUTH);
    DT_ASSERT_CONTAINS(dt_last_error(), "secret");
    o.secret = NULL;   /* none: DTRAIN_SECRET is not set in this test */
    DT_ASSERT(dt_store_tcp("127.0.0.1", port, false, &o) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_EAUTH);
    DT_ASSERT_CONTAINS(dt_last_error(), "DTRAIN_SECRET");
    /* A raw client that skips the challenge (zeros) gets no command run. */
    int fd = raw_connect(port);
    DT_ASSERT_EQ(raw_handshake(fd), DT_EAUTH);
    DT_ASSERT(closed_by_server(fd));
    dt__net_close(fd);
    /* The secret from the environment, on both sides. */
    setenv("DTRAIN_SECRET", "s3cret", 1);
    o.secret = NULL;
    dt_store *env = dt_store_tcp("127.0.0.1", port, false, &o);
    DT_ASSERT_MSG(env, "DTRAIN_SECRET: %s", dt_last_error());
    ASSERT_GET(env, "k", "v");
    dt_store_release(env);
    /* A client with a secret against a server without one: a configuration error. */
    DT_ASSERT(dt_store_tcp("127.0.0.1", g_port, false, &o) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_EAUTH);
    unsetenv("DTRAIN_SECRET");
    ASSERT_GET(good, "k", "v");
    dt_store_release(good);
    dt_store_release(srv);
}

/* A server of its own and one client of it. */
static void own_server(dt_store **srv, dt_store **c)
{
    *srv = start_server(NULL, 20000);
    DT_ASSERT(*srv);
    dt_store_opts o = DT_STORE_OPTS_INIT;
    o.timeout_ms = 20000;
    *c = dt_store_tcp("127.0.0.1", dt_store_port(*srv), false, &o);
    DT_ASSERT(*c);
}

static void t_server_gone(void)
{
    dt_store *srv, *c;
    own_server(&srv, &c);
    DT_ASSERT_OK(dt_store_set(c, "x", "1", 1));
    dt_store_release(srv);   /* the hosting store goes: its server shuts down */
    void *v = NULL;
    size_t n = 0;
    int rc = dt_store_get(c, "x", &v, &n);
    DT_ASSERT_MSG(rc == DT_EPEER, "get after the server left: %s (%s)", dt_errname(rc), dt_last_error());
    DT_ASSERT_ERR(dt_store_set(c, "x", "2", 1), DT_ECLOSED);
    DT_ASSERT_CONTAINS(dt_last_error(), "lost");
    dt_store_release(c);
}

static void *release_later(void *p)
{
    dt_sleep_ms(100);
    dt_store_release(p);
    return NULL;
}

static void t_server_gone_while_blocked(void)
{
    dt_store *srv, *c;
    own_server(&srv, &c);
    pthread_t th;
    pthread_create(&th, NULL, release_later, srv);
    const char *k = "never";
    int rc = dt_store_wait(c, &k, 1, 20000);
    pthread_join(th, NULL);
    DT_ASSERT_MSG(rc == DT_EPEER, "wait while the server left: %s (%s)", dt_errname(rc), dt_last_error());
    dt_store_release(c);
}

static void t_no_server(void)
{
    /* A port nobody listens on: take a free one and close it. */
    int lfd, port;
    DT_ASSERT_OK(dt__net_listen("127.0.0.1", 0, 1, &lfd, &port));
    dt__net_close(lfd);
    dt_store_opts o = DT_STORE_OPTS_INIT;
    o.timeout_ms = 300;
    DT_ASSERT(dt_store_tcp("127.0.0.1", port, false, &o) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_ETIMEOUT);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    DT_ASSERT_CONTAINS(dt_last_error(), addr);
    DT_ASSERT_CONTAINS(dt_last_error(), "attempt");
}

static void t_bad_create(void)
{
    DT_ASSERT(dt_store_tcp(NULL, 1234, false, NULL) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
    DT_ASSERT(dt_store_tcp("127.0.0.1", 0, false, NULL) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
    DT_ASSERT(dt_store_tcp("", 0, true, NULL) == NULL);
    DT_ASSERT_CONTAINS(dt_last_error(), "0.0.0.0");
    /* The port is taken: listening fails with the address named. */
    dt_store_opts o = DT_STORE_OPTS_INIT;
    o.timeout_ms = 1000;
    DT_ASSERT(dt_store_tcp("127.0.0.1", g_port, true, &o) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_ESYS);
    DT_ASSERT_CONTAINS(dt_last_error(), "in use");
}

typedef struct {
    int port, rc;
} joiner_arg;

static void *joiner_main(void *p)
{
    joiner_arg *a = p;
    dt_store_opts o = DT_STORE_OPTS_INIT;
    o.timeout_ms = 30000;
    /* Started before the server listens: the client retries. */
    dt_store *c = dt_store_tcp("127.0.0.1", a->port, false, &o);
    a->rc = c ? 0 : dt_last_error_code();
    if (c) a->rc = dt_store_set(c, "joined", "1", 1);
    dt_store_release(c);
    return NULL;
}

static void t_wait_for_workers(void)
{
    dt_store_opts o = DT_STORE_OPTS_INIT;
    o.timeout_ms = 200;
    o.num_workers = 2;
    o.wait_for_workers = true;
    DT_ASSERT(dt_store_tcp("127.0.0.1", 0, true, &o) == NULL);   /* nobody else joins */
    DT_ASSERT_EQ(dt_last_error_code(), DT_ETIMEOUT);
    DT_ASSERT_CONTAINS(dt_last_error(), "1 joined");
    /* Two more clients: the server's creation returns once all three joined. */
    int lfd, port;
    DT_ASSERT_OK(dt__net_listen("127.0.0.1", 0, 1, &lfd, &port));
    dt__net_close(lfd);
    joiner_arg a[2] = {{port, 1}, {port, 1}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, joiner_main, &a[i]);
    o.timeout_ms = 30000;
    o.num_workers = 3;
    dt_store *srv = dt_store_tcp("127.0.0.1", port, true, &o);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    DT_ASSERT_MSG(srv, "server: %s", dt_last_error());
    DT_ASSERT_EQ(a[0].rc, 0);
    DT_ASSERT_EQ(a[1].rc, 0);
    ASSERT_GET(srv, "joined", "1");
    dt_store_release(srv);
}

static void t_wildcard_host(void)
{
    /* Every interface, asked for explicitly; the hosting client dials loopback. */
    dt_store_opts o = DT_STORE_OPTS_INIT;
    o.timeout_ms = 5000;
    dt_store *srv = dt_store_tcp("0.0.0.0", 0, true, &o);
    DT_ASSERT_MSG(srv, "server: %s", dt_last_error());
    dt_store *c = dt_store_tcp("localhost", dt_store_port(srv), false, &o);
    DT_ASSERT_MSG(c, "client via localhost: %s", dt_last_error());
    DT_ASSERT_OK(dt_store_set(c, "any", "1", 1));
    ASSERT_GET(srv, "any", "1");
    dt_store_release(c);
    dt_store_release(srv);
}

static void t_ipv6(void)
{
    dt_store_opts o = DT_STORE_OPTS_INIT;
    o.timeout_ms = 5000;
    dt_store *srv = dt_store_tcp("::1", 0, true, &o);
    if (!srv) {
        fprintf(stderr, "skip t_ipv6: no ::1 here (%s)\n", dt_last_error());
        return;
    }
    dt_store *c = dt_store_tcp("::1", dt_store_port(srv), false, &o);
    DT_ASSERT_MSG(c, "client: %s", dt_last_error());
    DT_ASSERT_OK(dt_store_set(c, "v6", "yes", 3));
    ASSERT_GET(srv, "v6", "yes");
    dt_store_release(c);
    dt_store_release(srv);
}

int main(void)
{
    dt_store *srv = start_server(NULL, 30000);
    if (!srv) { fprintf(stderr, "server: %s\n", dt_last_error()); return 1; }
    g_port = dt_store_port(srv);
    store_suite(srv, open_client, NULL, "tcp");
    dt_store *p = dt_store_prefix(srv, "pre");
    store_suite(p, open_prefixed_client, NULL, "pre");
    dt_store_release(p);
    DT_RUN(t_port_and_desc);
    DT_RUN(t_wrong_magic);
    DT_RUN(t_garbage_after_handshake);
    DT_RUN(t_version_mismatch);
    DT_RUN(t_huge_length);
    DT_RUN(t_half_message_then_gone);
    DT_RUN(t_many_clients);
    DT_RUN(t_secret);
    DT_RUN(t_server_gone);
    DT_RUN(t_server_gone_while_blocked);
    DT_RUN(t_no_server);
    DT_RUN(t_bad_create);
    DT_RUN(t_wait_for_workers);
    DT_RUN(t_wildcard_host);
    DT_RUN(t_ipv6);
    dt_store_release(srv);
    return DT_TEST_END();
}
