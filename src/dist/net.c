/* dist/net: sockets for the TCP store, the tcp backend and the launcher (see net.h).
 * Blocking behaviour is built from non-blocking sockets and poll(), so every
 * wait has a deadline. Does not frame, authenticate or pick interfaces. */
#define _GNU_SOURCE
#include "dist/net.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

char *dt__net_addr_str(const char *host, int port, char *buf, size_t cap)
{
    if (!host) host = "(null)";
    if (strchr(host, ':')) snprintf(buf, cap, "[%s]:%d", host, port);
    else snprintf(buf, cap, "%s:%d", host, port);
    return buf;
}

double dt__net_jitter01(void)
{
    static _Thread_local uint64_t state;
    if (state == 0) state = (uint64_t)dt_now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
    /* xorshift64* */
    state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
    return (double)((state * 0x2545f4914f6cdd1dull) >> 11) * (1.0 / 9007199254740992.0);
}

void dt__net_close(int fd)
{
    if (fd < 0) return;
    int e = errno;
    close(fd);
    errno = e;
}

int dt__net_set_nonblock(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return dt_set_error_errno(DT_ESYS, errno, "fcntl(F_GETFL)");
    fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    if (fcntl(fd, F_SETFL, fl) < 0) return dt_set_error_errno(DT_ESYS, errno, "fcntl(F_SETFL)");
    return 0;
}

int dt__net_set_nodelay(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        return dt_set_error_errno(DT_ESYS, errno, "setsockopt(TCP_NODELAY)");
    return 0;
}

/* getaddrinfo for host:port; passive for listening. */
static int resolve(const char *host, int port, bool passive, struct addrinfo **res, const char *addr)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : AI_ADDRCONFIG);
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int g = getaddrinfo(host, portstr, &hints, res);
    if (g == EAI_SYSTEM) return dt_set_error_errno(DT_ESYS, errno, "resolving %s", addr);
    if (g != 0) return dt_set_error(DT_EINVAL, "resolving %s: %s", addr, gai_strerror(g));
    return 0;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

int dt__net_listen(const char *host, int port, int backlog, int *fd_out, int *port_out)
{
    char addr[300];
    if (!host || !*host)
        return dt_set_error(DT_EINVAL, "listen: no host given (use 0.0.0.0 or :: for every interface)");
    dt__net_addr_str(host, port, addr, sizeof addr);
    if (port < 0 || port > 65535 || !fd_out) return dt_set_error(DT_EINVAL, "listen on %s: bad port or output", addr);
    struct addrinfo *res = NULL;
    DT_CHECK(resolve(host, port, true, &res, addr));
    int err = 0, fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) { err = errno; continue; }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, backlog > 0 ? backlog : 128) == 0) break;
        err = errno;
        dt__net_close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) return dt_set_error_errno(DT_ESYS, err, "listen on %s", addr);
    int p = bound_port(fd);
    if (p < 0) {
        err = errno;
        dt__net_close(fd);
        return dt_set_error_errno(DT_ESYS, err, "getsockname after listen on %s", addr);
    }
    *fd_out = fd;
    if (port_out) *port_out = p;
    return 0;
}

int dt__net_accept(int lfd, int *fd_out)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED || errno == EINTR || errno == EPROTO)
            return 1;
        return dt_set_error_errno(DT_ESYS, errno, "accept");
    }
    int rc = dt__net_set_nodelay(fd);
    if (rc < 0) { dt__net_close(fd); return rc; }
    *fd_out = fd;
    return 0;
}

int dt__net_accept_until(int lfd, int64_t deadline_ns, int *fd_out, const char *label)
{
    for (;;) {
        int rc = dt__net_accept(lfd, fd_out);
        if (rc <= 0) return rc;
        DT_CHECK(dt__net_wait(lfd, POLLIN, deadline_ns, label));
    }
}

char *dt__net_peer_str(int fd, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0 ||
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(buf, cap, "?");
        return buf;
    }
    return dt__net_addr_str(host, atoi(serv), buf, cap);
}

int dt__net_wait(int fd, short events, int64_t deadline_ns, const char *label)
{
    for (;;) {
        int64_t left = dt_ms_left(deadline_ns);
        int ms = left < 0 ? -1 : left > 60000 ? 60000 : (int)left;
        struct pollfd p = {.fd = fd, .events = events, .revents = 0};
        int n = poll(&p, 1, ms);
        if (n > 0) return 0;   /* ready, or an error/hangup the next call reports */
        if (n < 0 && errno != EINTR) return dt_set_error_errno(DT_ESYS, errno, "poll on %s", label);
        if (n == 0 && left >= 0 && dt_ms_left(deadline_ns) == 0)
            return dt_set_error(DT_ETIMEOUT, "waiting for %s", label);
    }
}

/* One non-blocking connect attempt to one address, finished before deadline. */
static int connect_one(const struct addrinfo *ai, int64_t deadline_ns, int *fd_out, int *err)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) { *err = errno; return -1; }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS && errno != EINTR) { *err = errno; dt__net_close(fd); return -1; }
        for (;;) {
            int64_t left = dt_ms_left(deadline_ns);
            int ms = left < 0 ? 1000 : left > 1000 ? 1000 : (int)left;
            struct pollfd p = {.fd = fd, .events = POLLOUT, .revents = 0};
            int n = poll(&p, 1, ms);
            if (n > 0) break;
            if (n < 0 && errno != EINTR) { *err = errno; dt__net_close(fd); return -1; }
            if (n == 0 && left >= 0 && dt_ms_left(deadline_ns) == 0) { *err = ETIMEDOUT; dt__net_close(fd); return -1; }
        }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
        if (soerr) { *err = soerr; dt__net_close(fd); return -1; }
    }
    if (dt__net_set_nodelay(fd) < 0) { *err = errno; dt__net_close(fd); return -1; }
    *fd_out = fd;
    return 0;
}

int dt__net_connect(const char *host, int port, int64_t deadline_ns, int *fd_out)
{
    char addr[300];
    if (!host || !*host) return dt_set_error(DT_EINVAL, "connect: no host given");
    dt__net_addr_str(host, port, addr, sizeof addr);
    if (port <= 0 || port > 65535 || !fd_out) return dt_set_error(DT_EINVAL, "connect to %s: bad port or output", addr);
    int64_t backoff_ms = 10, attempts = 0;
    int64_t t0 = dt_now_ns();
    char last[256] = "no attempt";
    for (;;) {
        attempts++;
        struct addrinfo *res = NULL;
        if (resolve(host, port, false, &res, addr) < 0) {
            snprintf(last, sizeof last, "%s", dt_last_error());
        } else {
            int err = 0;
            for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                if (connect_one(ai, deadline_ns, fd_out, &err) == 0) {
                    freeaddrinfo(res);
                    dt_clear_error();
                    return 0;
                }
            }
            freeaddrinfo(res);
            snprintf(last, sizeof last, "%s", strerror(err));
        }
        int64_t left = dt_ms_left(deadline_ns);
        if (left == 0)
            return dt_set_error(DT_ETIMEOUT, "connecting to %s: %lld attempt(s) over %lld ms, last: %s", addr,
                                (long long)attempts, (long long)((dt_now_ns() - t0) / 1000000), last);
        int64_t sleep_ms = (int64_t)((double)backoff_ms * (0.75 + 0.5 * dt__net_jitter01()));
        if (left > 0 && sleep_ms > left) sleep_ms = left;
        dt_sleep_ms(sleep_ms);
        backoff_ms = backoff_ms * 2 > 1000 ? 1000 : backoff_ms * 2;
    }
}

int dt__net_send_all(int fd, const void *buf, size_t n, int64_t deadline_ns, const char *label)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) { p += w; n -= (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            DT_CHECK(dt__net_wait(fd, POLLOUT, deadline_ns, label));
            continue;
        }
        if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
            return dt_set_error_errno(DT_EPEER, errno, "sending to %s", label);
        return dt_set_error_errno(DT_ESYS, w < 0 ? errno : EIO, "sending to %s", label);
    }
    return 0;
}

int dt__net_recv_all(int fd, void *buf, size_t n, int64_t deadline_ns, const char *label)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r > 0) { p += r; n -= (size_t)r; continue; }
        if (r == 0) return dt_set_error(DT_EPEER, "%s closed the connection", label);
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            DT_CHECK(dt__net_wait(fd, POLLIN, deadline_ns, label));
            continue;
        }
        if (errno == ECONNRESET || errno == EPIPE)
            return dt_set_error_errno(DT_EPEER, errno, "receiving from %s", label);
        return dt_set_error_errno(DT_ESYS, errno, "receiving from %s", label);
    }
    return 0;
}
