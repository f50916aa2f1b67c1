/* The socket helpers (src/dist/net.c): listening on exactly the address asked
 * for, connecting with retry until a deadline, exact reads and writes with
 * deadlines, and the errors each failure gives. */
#include "dt_test.h"
#include "dist/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void t_addr_str(void)
{
    char b[64];
    DT_ASSERT_STREQ(dt__net_addr_str("10.0.0.1", 29500, b, sizeof b), "10.0.0.1:29500");
    DT_ASSERT_STREQ(dt__net_addr_str("::1", 80, b, sizeof b), "[::1]:80");
    for (int i = 0; i < 1000; i++) {
        double j = dt__net_jitter01();
        DT_ASSERT(j >= 0.0 && j < 1.0);
    }
}

static void t_listen_exact(void)
{
    int fd, port;
    DT_ASSERT_OK(dt__net_listen("127.0.0.1", 0, 4, &fd, &port));
    DT_ASSERT(port > 0);
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    DT_ASSERT_EQ(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    DT_ASSERT_EQ(sa.sin_family, AF_INET);
    DT_ASSERT_EQ(ntohl(sa.sin_addr.s_addr), INADDR_LOOPBACK);   /* not the wildcard */
    DT_ASSERT_EQ(ntohs(sa.sin_port), port);
    /* The same port again: in use, the address named. */
    int fd2;
    DT_ASSERT_ERR(dt__net_listen("127.0.0.1", port, 4, &fd2, NULL), DT_ESYS);
    char want[32];
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    DT_ASSERT_CONTAINS(dt_last_error(), want);
    dt__net_close(fd);
    DT_ASSERT_ERR(dt__net_listen(NULL, 0, 4, &fd, NULL), DT_EINVAL);
    DT_ASSERT_ERR(dt__net_listen("no-such-host.invalid", 0, 4, &fd, NULL), DT_EINVAL);
    DT_ASSERT_ERR(dt__net_listen("127.0.0.1", 70000, 4, &fd, NULL), DT_EINVAL);
}

static int accept_wait(int lfd)
{
    int fd = -1;
    return dt__net_accept_until(lfd, dt_deadline_ns(10000), &fd, "listener") == 0 ? fd : -1;
}

static void t_send_recv(void)
{
    int lfd, port, c = -1;
    DT_ASSERT_OK(dt__net_listen("127.0.0.1", 0, 4, &lfd, &port));
    DT_ASSERT_OK(dt__net_connect("127.0.0.1", port, dt_deadline_ns(5000), &c));
    int s = accept_wait(lfd);
    DT_ASSERT(s >= 0);
    char peer[64], want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    DT_ASSERT_STREQ(dt__net_peer_str(c, peer, sizeof peer), want);
    DT_ASSERT_STREQ(dt__net_peer_str(-1, peer, sizeof peer), "?");
    /* Nobody else connects: accept times out, naming the listener. */
    int none = -1;
    DT_ASSERT_ERR(dt__net_accept_until(lfd, dt_deadline_ns(30), &none, "the listener"), DT_ETIMEOUT);
    DT_ASSERT_CONTAINS(dt_last_error(), "the listener");
    /* More than the socket buffers hold, so both sides wait on poll. */
    size_t n = 8u << 20;
    unsigned char *a = dt_alloc(n, DT_MEM_OTHER), *b = dt_alloc(n, DT_MEM_OTHER);
    for (size_t i = 0; i < n; i++) a[i] = (unsigned char)(i ^ (i >> 9));
    pid_t pid = fork();
    if (pid == 0) _exit(dt__net_send_all(c, a, n, dt_deadline_ns(30000), "peer") == 0 ? 0 : 1);
    DT_ASSERT_OK(dt__net_recv_all(s, b, n, dt_deadline_ns(30000), "peer"));
    int st = 0;
    waitpid(pid, &st, 0);
    DT_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    DT_ASSERT(memcmp(a, b, n) == 0);
    dt_free(a);
    dt_free(b);
    /* Nothing arrives: a timeout naming the label. */
    char x;
    DT_ASSERT_ERR(dt__net_recv_all(s, &x, 1, dt_deadline_ns(50), "the peer 'p'"), DT_ETIMEOUT);
    DT_ASSERT_CONTAINS(dt_last_error(), "the peer 'p'");
    /* The peer closes: DT_EPEER. */
    dt__net_close(c);
    DT_ASSERT_ERR(dt__net_recv_all(s, &x, 1, dt_deadline_ns(5000), "the peer"), DT_EPEER);
    /* Writing to a closed peer: DT_EPEER, and no SIGPIPE kills us. */
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++) rc = dt__net_send_all(s, "hello", 5, dt_deadline_ns(5000), "the peer");
    DT_ASSERT_EQ(rc, DT_EPEER);
    dt__net_close(s);
    dt__net_close(lfd);
}

typedef struct {
    int port;
    int delay_ms;
    int lfd;
} late_arg;

static void *listen_late(void *p)
{
    late_arg *a = p;
    dt_sleep_ms(a->delay_ms);
    int port;
    if (dt__net_listen("127.0.0.1", a->port, 4, &a->lfd, &port) < 0) a->lfd = -1;
    return NULL;
}

static void t_connect_retry(void)
{
    int lfd, port;
    DT_ASSERT_OK(dt__net_listen("127.0.0.1", 0, 4, &lfd, &port));
    dt__net_close(lfd);
    /* Nobody listens: a timeout after some attempts, close to the deadline. */
    int fd = -1;
    int64_t t0 = dt_now_ns();
    DT_ASSERT_ERR(dt__net_connect("127.0.0.1", port, dt_deadline_ns(200), &fd), DT_ETIMEOUT);
    DT_ASSERT(dt_now_ns() - t0 >= 200 * 1000000LL);
    DT_ASSERT_CONTAINS(dt_last_error(), "attempt");
    DT_ASSERT_CONTAINS(dt_last_error(), "refused");
    /* The server comes later: the client's retries reach it. */
    late_arg a = {port, 150, -1};
    pthread_t th;
    pthread_create(&th, NULL, listen_late, &a);
    int rc = dt__net_connect("127.0.0.1", port, dt_deadline_ns(30000), &fd);
    pthread_join(th, NULL);
    DT_ASSERT_MSG(a.lfd >= 0, "late listener could not bind");
    DT_ASSERT_OK(rc);
    dt__net_close(fd);
    dt__net_close(a.lfd);
    DT_ASSERT_ERR(dt__net_connect("127.0.0.1", 0, dt_deadline_ns(10), &fd), DT_EINVAL);
    DT_ASSERT_ERR(dt__net_connect("no-such-host.invalid", 80, dt_deadline_ns(50), &fd), DT_ETIMEOUT);
}

static void t_ipv6(void)
{
    int lfd, port, c = -1;
    if (dt__net_listen("::1", 0, 4, &lfd, &port) < 0) {
        fprintf(stderr, "skip t_ipv6: %s\n", dt_last_error());
        return;
    }
    DT_ASSERT_OK(dt__net_connect("::1", port, dt_deadline_ns(5000), &c));
    int s = accept_wait(lfd);
    DT_ASSERT(s >= 0);
    char peer[64], want[64];
    snprintf(want, sizeof want, "[::1]:%d", port);
    DT_ASSERT_STREQ(dt__net_peer_str(c, peer, sizeof peer), want);
    DT_ASSERT_OK(dt__net_send_all(c, "v6", 2, dt_deadline_ns(5000), "v6"));
    char b[2];
    DT_ASSERT_OK(dt__net_recv_all(s, b, 2, dt_deadline_ns(5000), "v6"));
    DT_ASSERT(memcmp(b, "v6", 2) == 0);
    dt__net_close(c);
    dt__net_close(s);
    dt__net_close(lfd);
}

int main(void)
{
    DT_RUN(t_addr_str);
    DT_RUN(t_listen_exact);
    DT_RUN(t_send_recv);
    DT_RUN(t_connect_retry);
    DT_RUN(t_ipv6);
    return DT_TEST_END();
}
