/* The tcp backend's connections: which address this rank listens on, and the
 * full mesh of nconn connections (lanes) per pair of ranks, set up through the
 * group's store. Rank i publishes "tcp/addr/<i>" = host:port; rank 0
 * publishes a random nonce ("tcp/nonce") naming this instance of the group.
 * Each rank connects nconn times to every higher rank and sends a hello on
 * each (magic, version, its rank, the size, nconn and the lane, the nonce, the
 * group name); it accepts nconn connections from every lower rank, checks
 * their hellos (a connection that is not one of ours is dropped and logged; a
 * rank with another DTRAIN_TCP_CONNS fails the group's creation) and answers
 * each with its own, which the connecting side checks in turn. Socket buffers
 * are sized for the large algorithms' segments in flight. Does not move
 * collective data. */
#define _GNU_SOURCE
#include "dist/backend/tcp/tcp.h"
#include "dist/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    uint32_t magic, version;
    int32_t rank, size;
    int32_t nconn, lane;
    uint64_t nonce;
    char group[64];
} hello;

static bool usable_addr(const struct sockaddr *sa)
{
    if (!sa) return false;
    if (sa->sa_family == AF_INET) return true;
    if (sa->sa_family != AF_INET6) return false;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    return !IN6_IS_ADDR_LINKLOCAL(a);
}

static int ntop(const struct sockaddr *sa, char *buf, size_t cap)
{
    const void *a = sa->sa_family == AF_INET ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                                             : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    return inet_ntop(sa->sa_family, a, buf, (socklen_t)cap) ? 0 : -1;
}

static int from_ifname(const char *ifname, char *buf, size_t cap)
{
    struct ifaddrs *all;
    if (getifaddrs(&all) != 0) return dt_set_error_errno(DT_ESYS, errno, "tcp: getifaddrs");
    char names[256] = "";
    size_t nl = 0;
    int found = 0;
    for (int pass = 0; pass < 2 && !found; pass++) /* IPv4 first */
        for (struct ifaddrs *i = all; i && !found; i = i->ifa_next) {
            if (!usable_addr(i->ifa_addr)) continue;
            if (pass == 0 && nl + strlen(i->ifa_name) + 3 < sizeof names && !strstr(names, i->ifa_name))
                nl += (size_t)snprintf(names + nl, sizeof names - nl, "%s%s", nl ? ", " : "", i->ifa_name);
            if (strcmp(i->ifa_name, ifname) != 0 || (pass == 0) != (i->ifa_addr->sa_family == AF_INET)) continue;
            found = ntop(i->ifa_addr, buf, cap) == 0;
        }
    freeifaddrs(all);
    if (!found)
        return dt_set_error(DT_EINVAL, "DTRAIN_SOCKET_IFNAME=%s: no interface of that name has an IP address (these do: %s)",
                            ifname, names);
    return 0;
}

/* The source address the kernel would use towards host (a UDP connect sends nothing). */
static int towards(const char *host, char *buf, size_t cap)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM}, *res;
    if (getaddrinfo(host, "9", &hints, &res) != 0) return -1;
    int ok = -1;
    for (struct addrinfo *ai = res; ai && ok < 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
            usable_addr((struct sockaddr *)&ss))
            ok = ntop((struct sockaddr *)&ss, buf, cap);
        close(fd);
    }
    freeaddrinfo(res);
    return ok;
}

/* The first address of this host's name that we can bind. */
static int from_hostname(char *buf, size_t cap)
{
    char name[256];
    if (gethostname(name, sizeof name - 1) != 0) return -1;
    name[sizeof name - 1] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(name, NULL, &hints, &res) != 0) return -1;
    int ok = -1;
    for (struct addrinfo *ai = res; ai && ok < 0; ai = ai->ai_next) {
        if (!usable_addr(ai->ai_addr)) continue;
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0) ok = ntop(ai->ai_addr, buf, cap);
        close(fd);
    }
    freeaddrinfo(res);
    return ok;
}

int dt__tcp_local_host(char *buf, size_t cap)
{
    const char *ifname = dt_param_str(DT_PARAM_SOCKET_IFNAME);
    if (ifname && *ifname) return from_ifname(ifname, buf, cap);
    const char *master = getenv("MASTER_ADDR");
    if (master && *master && towards(master, buf, cap) == 0) return 0;
    if (from_hostname(buf, cap) == 0) return 0;
    snprintf(buf, cap, "127.0.0.1");
    return 0;
}

/* "host:port" / "[v6]:port" back into its parts. */
static int split_addr(const char *s, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon) return -1;
    const char *h = s, *he = colon;
    if (*s == '[') {
        h = s + 1;
        he = strchr(s, ']');
        if (!he || he + 1 != colon) return -1;
    }
    if ((size_t)(he - h) >= cap) return -1;
    memcpy(host, h, (size_t)(he - h));
    host[he - h] = '\0';
    *port = atoi(colon + 1);
    return *port > 0 && *port < 65536 ? 0 : -1;
}

/* A rank's record: its address into buf, its connections per pair. */
static int get_record(dt_store *s, const char *key, char *buf, size_t cap, int *nconn)
{
    void *v = NULL;
    size_t len = 0;
    DT_CHECK(dt_store_get(s, key, &v, &len));
    const char *r = v;
    size_t al = strnlen(r, len);
    snprintf(buf, cap, "%.*s", (int)al, r);
    *nconn = 1;
    if (al + 1 < len) {
        char num[16];
        snprintf(num, sizeof num, "%.*s", (int)(len - al - 1), r + al + 1);
        *nconn = atoi(num);
    }
    dt_free(v);
    return 0;
}

/* A host that vanishes without closing (power, network) while this rank
 * waits on an idle connection: keepalive probes find it in about a minute
 * and the wait fails with DT_EPEER instead of running to the timeout. */
static void keepalive(int fd)
{
    int on = 1, idle = 30, intvl = 5, cnt = 6;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

/* Options of every connection of the mesh. */
static void tune(int fd)
{
    keepalive(fd);
}

static void make_hello(const dt__tcp *t, uint64_t nonce, int lane, hello *h)
{
    memset(h, 0, sizeof *h);
    h->magic = DT__TCP_HELLO_MAGIC;
    h->version = DT__TCP_VERSION;
    h->rank = t->rank;
    h->size = t->size;
    h->nconn = t->nconn;
    h->lane = lane;
    h->nonce = nonce;
    snprintf(h->group, sizeof h->group, "%s", t->group);
}

/* Why h is not a hello of this group (NULL: it is). */
static const char *bad_hello(const dt__tcp *t, const hello *h, uint64_t nonce)
{
    if (h->magic != DT__TCP_HELLO_MAGIC) return "not a dtrain tcp connection (bad magic)";
    if (h->version != DT__TCP_VERSION) return "another protocol version";
    if (h->size != t->size || h->nonce != nonce || strncmp(h->group, t->group, sizeof h->group) != 0)
        return "from another group or job";
    if (h->nconn != t->nconn) return "DTRAIN_TCP_CONNS differs between the two ranks";
    if (h->lane < 0 || h->lane >= t->nconn) return "a bad connection number";
    return NULL;
}

static uint64_t make_nonce(void)
{
    uint64_t x = (uint64_t)dt_now_ns() ^ ((uint64_t)getpid() << 32);
    x ^= (uint64_t)(dt__net_jitter01() * 18446744073709551615.0);
    return x ? x : 1;
}

int dt__tcp_connect_mesh(dt__tcp *t, const dt__backend_init *init)
{
    int64_t deadline = dt_deadline_ns(init->timeout_ms);
    char host[128], addr[160], key[64];
    DT_CHECK(dt__tcp_local_host(host, sizeof host));
    int lfd = -1, port = 0, rc = 0;
    DT_CHECK(dt__net_listen(host, 0, t->size + 16, &lfd, &port));
    dt__net_addr_str(host, port, addr, sizeof addr);
    for (int c = 0; c < t->nconn; c++)
        snprintf(t->peers[t->rank * t->nconn + c].addr, sizeof t->peers[0].addr, "%s", addr);
    DT_LOGI(TCP, "group '%s': rank %d of %d listens on %s", t->group, t->rank, t->size, addr);
    /* the record: "host:port", a NUL, the connections per pair in decimal */
    char rec[192];
    int rl = snprintf(rec, sizeof rec, "%s%c%d", addr, '\0', t->nconn);
    snprintf(key, sizeof key, "tcp/addr/%d", t->rank);
    DT_CHECK_GOTO(dt_store_set(init->store, key, rec, (size_t)rl), rc, out);
    uint64_t nonce = 0;
    if (t->rank == 0) {
        nonce = make_nonce();
        DT_CHECK_GOTO(dt_store_set(init->store, "tcp/nonce", &nonce, sizeof nonce), rc, out);
    } else {
        void *v = NULL;
        size_t len = 0;
        DT_CHECK_GOTO(dt_store_get(init->store, "tcp/nonce", &v, &len), rc, out);
        if (len == sizeof nonce) memcpy(&nonce, v, sizeof nonce);
        dt_free(v);
    }
    hello mine, h;
    const int nc = t->nconn;
    /* every rank's record: its address, and the same connections per pair
     * (checked here, so that every rank fails at once rather than some
     * waiting for connections that never come) */
    for (int j = 0; j < t->size; j++) {
        if (j == t->rank) continue;
        char jaddr[160];
        int jnc = 0;
        snprintf(key, sizeof key, "tcp/addr/%d", j);
        DT_CHECK_GOTO(get_record(init->store, key, jaddr, sizeof jaddr, &jnc), rc, out);
        if (jnc != nc) {
            rc = dt_set_error(DT_EINVAL, "tcp: rank %d has DTRAIN_TCP_CONNS=%d, rank %d has %d: every rank must use the same",
                              j, jnc, t->rank, nc);
            goto out;
        }
        for (int c = 0; c < nc; c++) snprintf(t->peers[j * nc + c].addr, sizeof t->peers[0].addr, "%s", jaddr);
    }
    /* connect up */
    for (int j = t->rank + 1; j < t->size; j++) {
        char jh[128], jaddr[160];
        int jp;
        snprintf(jaddr, sizeof jaddr, "%s", t->peers[j * nc].addr);
        if (split_addr(jaddr, jh, sizeof jh, &jp) < 0) {
            rc = dt_set_error(DT_EPROTO, "tcp: rank %d published a bad address '%s'", j, jaddr);
            goto out;
        }
        for (int c = 0; c < nc; c++) {
            dt__tcp_peer *p = &t->peers[j * nc + c];
            DT_CHECK_GOTO(dt__net_connect(jh, jp, deadline, &p->fd), rc, out);
            tune(p->fd);
            make_hello(t, nonce, c, &mine);
            DT_CHECK_GOTO(dt__net_send_all(p->fd, &mine, sizeof mine, deadline, p->addr), rc, out);
        }
    }
    /* accept from below */
    for (int need = t->rank * nc; need > 0;) {
        int fd;
        rc = dt__net_accept_until(lfd, deadline, &fd, addr);
        if (rc < 0) {
            char miss[160] = "";
            size_t ml = 0;
            for (int j = 0; j < t->rank && ml + 8 < sizeof miss; j++)
                if (t->peers[j * nc + nc - 1].fd < 0) ml += (size_t)snprintf(miss + ml, sizeof miss - ml, "%s%d", ml ? ", " : "", j);
            rc = dt_error_wrap(rc, "tcp: rank %d had no connection from ranks %s", t->rank, miss);
            goto out;
        }
        int64_t hd = dt_deadline_ns(30000);
        rc = dt__net_recv_all(fd, &h, sizeof h, hd < deadline ? hd : deadline, "tcp hello");
        const char *why = rc < 0 ? dt_last_error() : bad_hello(t, &h, nonce);
        if (!why && (h.rank < 0 || h.rank >= t->rank || t->peers[h.rank * nc + h.lane].fd >= 0))
            why = "a rank that should not connect";
        char who[96];
        dt__net_peer_str(fd, who, sizeof who);
        if (why) {
            DT_LOGW(TCP, "group '%s': dropped a connection from %s: %s", t->group, who, why);
            dt__net_close(fd);
            rc = 0;
            continue;
        }
        dt__tcp_peer *p = &t->peers[h.rank * nc + h.lane];
        p->fd = fd;
        tune(fd);
        make_hello(t, nonce, h.lane, &mine);
        DT_CHECK_GOTO(dt__net_send_all(fd, &mine, sizeof mine, deadline, p->addr), rc, out);
        need--;
    }
    /* the answers from above */
    for (int l = (t->rank + 1) * nc; l < t->nlink; l++) {
        dt__tcp_peer *p = &t->peers[l];
        int j = l / nc;
        DT_CHECK_GOTO(dt__net_recv_all(p->fd, &h, sizeof h, deadline, p->addr), rc, out);
        const char *why = bad_hello(t, &h, nonce);
        if (!why && (h.rank != j || h.lane != l % nc)) why = "another rank than the one published there";
        if (why) {
            rc = dt_set_error(DT_EPROTO, "tcp: the connection to rank %d (%s) answered: %s", j, p->addr, why);
            goto out;
        }
    }
    DT_LOGD(TCP, "group '%s': rank %d connected to all %d peers (%d connection%s each)", t->group, t->rank, t->size - 1,
            nc, nc == 1 ? "" : "s");
out:
    dt__net_close(lfd);
    return rc;
}
