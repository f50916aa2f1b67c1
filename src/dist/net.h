/* dist/net: the socket helpers every TCP user in dist shares (the TCP store, the
 * tcp backend, the launcher's rendezvous): listen on exactly the address asked
 * for, connect with retry, exponential backoff and jitter until a deadline, and
 * move exactly n bytes with a deadline. IPv4, IPv6 and host names (getaddrinfo).
 *
 * Every socket these return is non-blocking, close-on-exec, and (for
 * connections) TCP_NODELAY; the all-bytes calls wait with poll() and never
 * raise SIGPIPE. Errors: DT_ETIMEOUT (deadline passed), DT_EPEER (the peer
 * closed or reset the connection), DT_ESYS (a system call failed, with errno's
 * text), DT_EINVAL (bad arguments, unknown host); every message names the
 * address or the caller's label. Internal: not installed, not public API.
 *
 * It does not frame messages, authenticate or choose interfaces: callers do. */
#ifndef DT_DIST_NET_H
#define DT_DIST_NET_H

#include <dtrain/util.h>

/* "host:port", or "[v6addr]:port" when host holds a ':'. Writes at most cap
 * bytes (cut, always terminated) into buf and returns buf. */
char *dt__net_addr_str(const char *host, int port, char *buf, size_t cap);

/* Listen on host:port (port 0: the kernel picks a free one). host must be
 * given: "0.0.0.0" or "::" for every interface, never implied. The first
 * address of host that binds wins (SO_REUSEADDR is set). *fd_out receives the
 * listening socket (the caller closes it), *port_out (may be NULL) the port. */
int dt__net_listen(const char *host, int port, int backlog, int *fd_out, int *port_out);

/* Accept one pending connection on a listening socket: 0 with *fd_out set,
 * 1 when none is pending (EAGAIN, ECONNABORTED, EINTR: try again later), or
 * DT_ESYS (e.g. EMFILE). The new socket is non-blocking and TCP_NODELAY. */
int dt__net_accept(int lfd, int *fd_out);

/* Accept one connection, waiting until deadline_ns: 0 with *fd_out set,
 * DT_ETIMEOUT (label names the listener), or DT_ESYS. */
int dt__net_accept_until(int lfd, int64_t deadline_ns, int *fd_out, const char *label);

/* The other end of a connected socket as "host:port" ("[v6]:port"), numeric,
 * into buf (at most cap bytes, terminated); "?" when unknown. Returns buf. */
char *dt__net_peer_str(int fd, char *buf, size_t cap);

/* Connect to host:port, trying each address of host in turn and retrying the
 * whole list with exponential backoff (10 ms doubling to 1 s, +-25 % jitter)
 * until deadline_ns (dt_deadline_ns; INT64_MAX = forever), so a client may
 * start before its server. Returns 0 and the socket in *fd_out, or
 * DT_ETIMEOUT naming the address, the attempts and the last failure. */
int dt__net_connect(const char *host, int port, int64_t deadline_ns, int *fd_out);

/* Write exactly n bytes, or read exactly n bytes, before deadline_ns.
 * label names the other end in error messages ("tcp store 10.0.0.1:29500").
 * A peer that closes before n bytes gives DT_EPEER. */
int dt__net_send_all(int fd, const void *buf, size_t n, int64_t deadline_ns, const char *label);
int dt__net_recv_all(int fd, void *buf, size_t n, int64_t deadline_ns, const char *label);

/* Wait until fd is readable (POLLIN) or writable (POLLOUT) per events, or the
 * deadline: 0 ready, DT_ETIMEOUT, DT_ESYS. */
int dt__net_wait(int fd, short events, int64_t deadline_ns, const char *label);

/* Socket options: non-blocking on/off, TCP_NODELAY. 0 or DT_ESYS. */
int dt__net_set_nonblock(int fd, bool on);
int dt__net_set_nodelay(int fd);

/* close() that keeps errno and ignores fd < 0. */
void dt__net_close(int fd);

/* A uniform random number in [0, 1) from a per-thread generator seeded by
 * time and pid (for jitter; not for secrets). */
double dt__net_jitter01(void);

#endif /* DT_DIST_NET_H */
