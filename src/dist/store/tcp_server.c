/* dist/store/tcp_server: the TCP store's server, a poll() event loop on one
 * background thread serving every client at once (protocol: tcp_wire.h).
 *
 * Each connection is a small state machine: HELLO (8 bytes), ANSWER (32-byte
 * HMAC), READY (frames), CLOSING (flush the last reply, then close). It reads
 * only the bytes the current message still needs and grows its buffer with
 * the bytes that actually arrived, so a huge length prefix costs nothing until
 * the data comes (and one past DT__WIRE_MAX_FRAME closes the connection). A
 * GET or WAIT whose keys are missing parks the connection (no other clients
 * wait for it) until a write makes the keys exist or its deadline passes. A
 * client that vanishes mid-message is just a closed socket: its half message
 * is dropped. The table lives on this thread only; the hosting process talks
 * to it through its own client connection like everyone else.
 *
 * It does not persist anything, and does not run on more than one thread. */
#define _GNU_SOURCE
#include "dist/store/tcp.h"
#include "dist/store/kvmap.h"
#include "dist/store/tcp_wire.h"
#include "dist/net.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SRV_MAX_CONNS    4096
#define SRV_HELLO_MS     30000      /* a connection must finish the handshake within this */
#define SRV_READ_CHUNK   65536

enum { C_HELLO, C_ANSWER, C_READY, C_CLOSING };

typedef struct {
    int fd;
    int state;
    unsigned char nonce[DT__WIRE_NONCE];
    int64_t hello_deadline;        /* ns; until the handshake is done */
    unsigned char *in;             /* the current message; in_cap grows with what arrived */
    size_t in_len, in_cap, in_need; /* in_need: bytes of the current message (0: header not yet read) */
    dt__wbuf out;                  /* replies not yet sent, from out_off */
    size_t out_off;
    /* A parked GET or WAIT: keys (one block, owned), its deadline (ns). */
    bool parked;
    int park_op;
    char **keys;
    int nkeys;
    int park_next;                 /* keys[0, park_next) have appeared (torch too does not recheck them) */
    int64_t park_deadline;
    bool dead;
} conn;

struct dt__tcp_server {
    int lfd, port;
    int wake[2];                  /* self-pipe: stop() writes a byte */
    pthread_t thread;
    bool thread_started;
    pid_t owner;                  /* the process whose thread serves; a forked child only frees */
    char addr[300];
    unsigned char *secret;
    size_t secret_len;
    dt__kvmap map;
    conn **conns;
    size_t nconns, cap;
    int64_t accept_paused_until;  /* ns; after EMFILE */
    pthread_mutex_t mu;           /* guards joined, for wait_joined */
    pthread_cond_t cv;
    int joined;
};

/* ------------------------------------------------------------ connections */

static void conn_free(conn *c)
{
    dt__net_close(c->fd);
    dt_free(c->in);
    dt_free(c->out.p);
    dt_free(c->keys);
    dt_free(c);
}

static void conn_kill(dt__tcp_server *srv, conn *c, const char *why)
{
    if (!c->dead) DT_LOGD(STORE, "tcp store server %s: closing connection fd %d: %s", srv->addr, c->fd, why);
    c->dead = true;
}

static void conn_flush(dt__tcp_server *srv, conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t w = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (w > 0) { c->out_off += (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        conn_kill(srv, c, "send failed");
        return;
    }
    c->out.len = c->out_off = 0;
    if (c->out.cap > SRV_READ_CHUNK) {  /* do not keep a large reply's buffer per idle client */
        dt_free(c->out.p);
        memset(&c->out, 0, sizeof c->out);
    }
    if (c->state == C_CLOSING) conn_kill(srv, c, "rejected");
}

/* Queue bytes for c and try to send them now. */
static void conn_send(dt__tcp_server *srv, conn *c, const void *p, size_t n)
{
    dt__wbuf_put(&c->out, p, n);
    if (c->out.err) { conn_kill(srv, c, "out of memory for a reply"); return; }
    conn_flush(srv, c);
}

/* A reply frame: status, then (status 0) the payload the caller wrote through
 * put, or (status < 0) the last error's message. */
typedef struct {
    dt__wbuf b;
    size_t at;
} reply;

static void reply_begin(reply *r, int32_t status)
{
    memset(r, 0, sizeof *r);
    r->at = dt__wbuf_begin_frame(&r->b);
    dt__wbuf_u32(&r->b, (uint32_t)status);
}

static void reply_finish(dt__tcp_server *srv, conn *c, reply *r)
{
    dt__wbuf_end_frame(&r->b, r->at);
    if (r->b.err) conn_kill(srv, c, "out of memory for a reply");
    else conn_send(srv, c, r->b.p, r->b.len);
    dt_free(r->b.p);
}

static void reply_status(dt__tcp_server *srv, conn *c, int status)
{
    reply r;
    reply_begin(&r, status);
    if (status < 0) {  /* the context only: the client prefixes its own text for the code */
        const char *m = dt_last_error();
        size_t pre = strlen(dt_strerror(status));
        if (strncmp(m, dt_strerror(status), pre) == 0 && strncmp(m + pre, ": ", 2) == 0) m += pre + 2;
        dt__wbuf_str(&r.b, m, strlen(m));
    }
    reply_finish(srv, c, &r);
}

static void reply_value(dt__tcp_server *srv, conn *c, const void *v, size_t n)
{
    reply r;
    reply_begin(&r, 0);
    dt__wbuf_str(&r.b, v, n);
    reply_finish(srv, c, &r);
}

static void reply_i64(dt__tcp_server *srv, conn *c, int64_t v)
{
    reply r;
    reply_begin(&r, 0);
    dt__wbuf_i64(&r.b, v);
    reply_finish(srv, c, &r);
}

static void reply_u8(dt__tcp_server *srv, conn *c, bool v)
{
    reply r;
    reply_begin(&r, 0);
    dt__wbuf_u8(&r.b, v ? 1 : 0);
    reply_finish(srv, c, &r);
}

/* ------------------------------------------------------------ handshake */

static void on_hello(dt__tcp_server *srv, conn *c)
{
    uint32_t magic = dt__le32_get(c->in), version = dt__le32_get(c->in + 4);
    if (magic != DT__WIRE_MAGIC) { conn_kill(srv, c, "wrong magic (not a dtrain store client)"); return; }
    unsigned char ch[DT__WIRE_CHALLENGE];
    memset(ch, 0, sizeof ch);
    dt__le32_put(ch, DT__WIRE_MAGIC);
    dt__le32_put(ch + 4, DT__WIRE_VERSION);
    dt__le32_put(ch + 8, srv->secret ? 1u : 0u);
    if (srv->secret) {
        if (RAND_bytes(c->nonce, sizeof c->nonce) != 1) { conn_kill(srv, c, "RAND_bytes failed"); return; }
        memcpy(ch + 12, c->nonce, sizeof c->nonce);
    }
    conn_send(srv, c, ch, sizeof ch);
    if (version != DT__WIRE_VERSION) {
        /* The client reads our version from the challenge and reports the mismatch. */
        c->state = C_CLOSING;
        conn_flush(srv, c);
        return;
    }
    c->state = C_ANSWER;
}

static void on_answer(dt__tcp_server *srv, conn *c)
{
    unsigned char st[DT__WIRE_WELCOME];
    if (srv->secret) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int maclen = 0;
        if (!HMAC(EVP_sha256(), srv->secret, (int)srv->secret_len, c->nonce, sizeof c->nonce, mac, &maclen) ||
            maclen != DT__WIRE_MAC || CRYPTO_memcmp(mac, c->in, DT__WIRE_MAC) != 0) {
            DT_LOGW(STORE, "tcp store server %s: a client failed the secret challenge", srv->addr);
            dt__le32_put(st, (uint32_t)DT_EAUTH);
            conn_send(srv, c, st, sizeof st);
            c->state = C_CLOSING;
            conn_flush(srv, c);
            return;
        }
    }
    dt__le32_put(st, 0);
    conn_send(srv, c, st, sizeof st);
    c->state = C_READY;
    pthread_mutex_lock(&srv->mu);
    srv->joined++;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
}

/* ------------------------------------------------------------ requests */

/* Keys of a request: n strings decoded from r into one owned block (an array
 * of pointers, then the NUL-terminated strings). NULL when malformed. */
static char **decode_keys(dt__rbuf *r, int n)
{
    size_t save = r->off, total = 0;
    for (int i = 0; i < n; i++) {
        size_t len;
        const unsigned char *k = dt__rbuf_str(r, DT__STORE_MAX_KEY, &len);
        if (!k || memchr(k, '\0', len)) return NULL;
        total += len + 1;
    }
    char **keys = dt_alloc((size_t)n * sizeof(char *) + total, DT_MEM_COMM);
    if (!keys) return NULL;
    char *p = (char *)(keys + n);
    r->off = save;
    for (int i = 0; i < n; i++) {
        size_t len;
        const unsigned char *k = dt__rbuf_str(r, DT__STORE_MAX_KEY, &len);
        memcpy(p, k, len);
        p[len] = '\0';
        keys[i] = p;
        p += len + 1;
    }
    return keys;
}

/* Answer a GET or WAIT whose keys all exist. */
static void answer_wait(dt__tcp_server *srv, conn *c, int op, char *const *keys)
{
    if (op == DT__OP_GET) {
        const dt__kv_entry *e = dt__kvmap_find(&srv->map, keys[0]);
        reply_value(srv, c, e->val, e->vlen);
    } else {
        reply_status(srv, c, 0);
    }
}

static void unpark(conn *c)
{
    c->parked = false;
    dt_free(c->keys);
    c->keys = NULL;
    c->nkeys = 0;
}

/* Whether a parked request's keys have all appeared; each key is looked up
 * until it appears, then not again, so a WAIT on n keys costs O(n) in all. */
static bool parked_ready(const dt__tcp_server *srv, conn *c)
{
    while (c->park_next < c->nkeys && dt__kvmap_find(&srv->map, c->keys[c->park_next])) c->park_next++;
    return c->park_next == c->nkeys;
}

/* After a write: answer every parked connection whose keys now all exist. */
static void wake_parked(dt__tcp_server *srv)
{
    for (size_t i = 0; i < srv->nconns; i++) {
        conn *c = srv->conns[i];
        if (c->dead || !c->parked || !parked_ready(srv, c)) continue;
        answer_wait(srv, c, c->park_op, c->keys);
        unpark(c);
    }
}

static int64_t clamp_timeout(int64_t ms) { return ms < 0 ? 0 : ms > DT__STORE_MAX_TIMEOUT_MS ? DT__STORE_MAX_TIMEOUT_MS : ms; }

/* Run one complete request body in c->in[4, in_len). */
static void on_request(dt__tcp_server *srv, conn *c)
{
    dt__rbuf r = {.p = c->in + 4, .len = c->in_len - 4, .off = 0, .bad = false};
    int op = dt__rbuf_u8(&r);
    int nkeys = 1;
    if (op == DT__OP_WAIT || op == DT__OP_CHECK) {
        uint32_t n = dt__rbuf_u32(&r);
        if (n < 1 || n > DT__STORE_MAX_KEYS) { conn_kill(srv, c, "bad key count"); return; }
        nkeys = (int)n;
    } else if (op == DT__OP_NUM_KEYS) {
        nkeys = 0;
    } else if (op < DT__OP_SET || op >= DT__OP_COUNT) {
        conn_kill(srv, c, "unknown op");
        return;
    }
    char **keys = nkeys ? decode_keys(&r, nkeys) : NULL;
    if (nkeys && !keys) { conn_kill(srv, c, r.bad ? "malformed key" : "out of memory"); return; }
    const unsigned char *v1 = NULL, *v2 = NULL;
    size_t n1 = 0, n2 = 0;
    int64_t num = 0;
    switch (op) {
    case DT__OP_SET: v1 = dt__rbuf_str(&r, DT__STORE_MAX_VALUE, &n1); break;
    case DT__OP_CAS:
        v1 = dt__rbuf_str(&r, DT__STORE_MAX_VALUE, &n1);
        v2 = dt__rbuf_str(&r, DT__STORE_MAX_VALUE, &n2);
        break;
    case DT__OP_GET: case DT__OP_ADD: case DT__OP_WAIT: num = dt__rbuf_i64(&r); break;
    default: break;
    }
    if (r.bad || r.off != r.len) { dt_free(keys); conn_kill(srv, c, "malformed request"); return; }

    int rc = 0;
    bool wrote = false;
    switch (op) {
    case DT__OP_SET:
        rc = dt__kvmap_set(&srv->map, keys[0], v1, n1);
        wrote = rc == 0;
        reply_status(srv, c, rc);
        break;
    case DT__OP_ADD: {
        int64_t nv = 0;
        char txt[24];
        rc = dt__kv_add_value(dt__kvmap_find(&srv->map, keys[0]), keys[0], num, &nv);
        if (rc == 0) rc = dt__kvmap_set(&srv->map, keys[0], txt, dt__kv_format_int(nv, txt));
        wrote = rc == 0;
        if (rc == 0) reply_i64(srv, c, nv);
        else reply_status(srv, c, rc);
        break;
    }
    case DT__OP_CAS: {
        const void *res;
        size_t rlen;
        if (dt__kv_cas_decide(dt__kvmap_find(&srv->map, keys[0]), v1, n1, v2, n2, &res, &rlen)) {
            rc = dt__kvmap_set(&srv->map, keys[0], v2, n2);
            wrote = rc == 0;
        }
        if (rc == 0) reply_value(srv, c, res, rlen);
        else reply_status(srv, c, rc);
        break;
    }
    case DT__OP_GET: case DT__OP_WAIT:
        if (dt__kvmap_has_all(&srv->map, (const char *const *)keys, nkeys)) {
            answer_wait(srv, c, op, keys);
            break;
        }
        c->parked = true;
        c->park_op = op;
        c->keys = keys;
        c->nkeys = nkeys;
        c->park_next = 0;
        c->park_deadline = dt_now_ns() + clamp_timeout(num) * 1000000LL;
        keys = NULL;
        break;
    case DT__OP_CHECK: reply_u8(srv, c, dt__kvmap_has_all(&srv->map, (const char *const *)keys, nkeys)); break;
    case DT__OP_DEL: reply_u8(srv, c, dt__kvmap_del(&srv->map, keys[0])); break;
    case DT__OP_NUM_KEYS: reply_i64(srv, c, (int64_t)srv->map.count); break;
    default: break;
    }
    dt_free(keys);
    if (wrote) wake_parked(srv);
}

/* ------------------------------------------------------------ reading */

/* Bytes the current message needs in total, given what has arrived. */
static size_t message_size(const conn *c)
{
    switch (c->state) {
    case C_HELLO: return DT__WIRE_HELLO;
    case C_ANSWER: return DT__WIRE_MAC;
    default: return c->in_len < 4 ? 4 : 4 + (size_t)dt__le32_get(c->in);
    }
}

/* Make room for want more bytes (want <= what the message still needs), growing
 * with what has arrived rather than what the header announced. */
static bool in_reserve(conn *c, size_t want)
{
    if (c->in_len + want <= c->in_cap) return true;
    size_t cap = c->in_cap ? c->in_cap * 2 : 64;
    if (cap < c->in_len + want) cap = c->in_len + want;
    unsigned char *p = dt_realloc(c->in, cap, DT_MEM_COMM);
    if (!p) return false;
    c->in = p;
    c->in_cap = cap;
    return true;
}

static void on_readable(dt__tcp_server *srv, conn *c)
{
    for (int rounds = 0; !c->dead && rounds < 64; rounds++) {
        if (c->parked || c->state == C_CLOSING) {
            /* Nothing may arrive now: data is a protocol violation, EOF a departure. */
            char b;
            ssize_t n = recv(c->fd, &b, 1, 0);
            if (n == 0) conn_kill(srv, c, "client left");
            else if (n > 0) conn_kill(srv, c, c->parked ? "request while one is pending" : "data after rejection");
            else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) conn_kill(srv, c, "recv failed");
            return;
        }
        size_t need = message_size(c);
        if (c->state == C_READY && c->in_len >= 4) {
            uint32_t body = dt__le32_get(c->in);
            if (body < 1 || body > DT__WIRE_MAX_FRAME) { conn_kill(srv, c, "frame length out of bounds"); return; }
        }
        size_t want = need - c->in_len;
        if (want > SRV_READ_CHUNK) want = SRV_READ_CHUNK;
        if (!in_reserve(c, want)) { conn_kill(srv, c, "out of memory for a request"); return; }
        ssize_t n = recv(c->fd, c->in + c->in_len, want, 0);
        if (n == 0) { conn_kill(srv, c, c->in_len ? "client left mid-message" : "client left"); return; }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) conn_kill(srv, c, "recv failed");
            return;
        }
        c->in_len += (size_t)n;
        if (c->in_len < message_size(c)) continue;
        switch (c->state) {
        case C_HELLO: on_hello(srv, c); break;
        case C_ANSWER: on_answer(srv, c); break;
        default: on_request(srv, c); break;
        }
        c->in_len = 0;
        if (c->in_cap > SRV_READ_CHUNK) {  /* do not keep a large buffer per idle client */
            dt_free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
    }
}

/* ------------------------------------------------------------ the loop */

static void accept_all(dt__tcp_server *srv)
{
    for (;;) {
        int fd = -1;
        int rc = dt__net_accept(srv->lfd, &fd);
        if (rc == 1) return;
        if (rc < 0) {
            DT_LOGW(STORE, "tcp store server %s: %s; pausing accepts for 100 ms", srv->addr, dt_last_error());
            srv->accept_paused_until = dt_now_ns() + 100000000LL;
            return;
        }
        conn *c = NULL;
        if (srv->nconns >= SRV_MAX_CONNS || !(c = dt_calloc(1, sizeof *c, DT_MEM_COMM))) {
            DT_LOGW(STORE, "tcp store server %s: refusing a connection (%zu open)", srv->addr, srv->nconns);
            dt__net_close(fd);
            continue;
        }
        if (srv->nconns == srv->cap) {
            size_t cap = srv->cap ? srv->cap * 2 : 16;
            conn **p = dt_realloc(srv->conns, cap * sizeof *p, DT_MEM_COMM);
            if (!p) { dt_free(c); dt__net_close(fd); continue; }
            srv->conns = p;
            srv->cap = cap;
        }
        c->fd = fd;
        c->state = C_HELLO;
        c->hello_deadline = dt_now_ns() + SRV_HELLO_MS * 1000000LL;
        srv->conns[srv->nconns++] = c;
    }
}

/* Time out parked requests and unfinished handshakes; returns the poll timeout (ms). */
static int expire(dt__tcp_server *srv)
{
    int64_t now = dt_now_ns(), next = now + 1000000000LL;
    for (size_t i = 0; i < srv->nconns; i++) {
        conn *c = srv->conns[i];
        if (c->dead) continue;
        if (c->parked) {
            if (c->park_deadline <= now) {
                dt_set_error(DT_ETIMEOUT, "waiting for keys");
                reply_status(srv, c, DT_ETIMEOUT);
                unpark(c);
            } else if (c->park_deadline < next) {
                next = c->park_deadline;
            }
        }
        if (c->state < C_READY) {
            if (c->hello_deadline <= now) conn_kill(srv, c, "no handshake in time");
            else if (c->hello_deadline < next) next = c->hello_deadline;
        }
    }
    if (srv->accept_paused_until > now && srv->accept_paused_until < next) next = srv->accept_paused_until;
    int64_t ms = (next - now + 999999) / 1000000;
    return ms < 1 ? 1 : (int)ms;
}

static void reap(dt__tcp_server *srv)
{
    size_t j = 0;
    for (size_t i = 0; i < srv->nconns; i++) {
        if (srv->conns[i]->dead) conn_free(srv->conns[i]);
        else srv->conns[j++] = srv->conns[i];
    }
    srv->nconns = j;
}

static void *server_main(void *arg)
{
    dt__tcp_server *srv = arg;
    struct pollfd *pfd = NULL;
    size_t pcap = 0;
    for (;;) {
        int timeout = expire(srv);
        reap(srv);
        size_t need = srv->nconns + 2;
        if (need > pcap) {
            struct pollfd *p = dt_realloc(pfd, need * sizeof *p, DT_MEM_COMM);
            if (!p) { dt_sleep_ms(10); continue; }
            pfd = p;
            pcap = need;
        }
        bool accepting = srv->accept_paused_until <= dt_now_ns();
        pfd[0] = (struct pollfd){.fd = srv->wake[0], .events = POLLIN};
        pfd[1] = (struct pollfd){.fd = accepting ? srv->lfd : -1, .events = POLLIN};
        for (size_t i = 0; i < srv->nconns; i++) {
            conn *c = srv->conns[i];
            short ev = POLLIN;
            if (c->out_off < c->out.len) ev |= POLLOUT;
            pfd[i + 2] = (struct pollfd){.fd = c->fd, .events = ev};
        }
        size_t polled = srv->nconns;
        int n = poll(pfd, polled + 2, timeout);
        if (n < 0 && errno != EINTR) {
            DT_LOGE(STORE, "tcp store server %s: poll failed: %s", srv->addr, strerror(errno));
            dt_sleep_ms(10);
            continue;
        }
        if (n <= 0) continue;
        if (pfd[0].revents) break;
        if (pfd[1].revents) accept_all(srv);
        for (size_t i = 0; i < polled; i++) {
            conn *c = srv->conns[i];
            short re = pfd[i + 2].revents;
            if (!re || c->dead) continue;
            if (re & POLLOUT) conn_flush(srv, c);
            if (re & (POLLIN | POLLHUP | POLLERR)) on_readable(srv, c);
            if (re & POLLNVAL) conn_kill(srv, c, "invalid fd");
        }
    }
    dt_free(pfd);
    return NULL;
}

/* ------------------------------------------------------------ life cycle */

dt__tcp_server *dt__tcp_server_start(const char *host, int port, const char *secret)
{
    dt__tcp_server *srv = dt_calloc(1, sizeof *srv, DT_MEM_COMM);
    if (!srv) return NULL;
    srv->lfd = srv->wake[0] = srv->wake[1] = -1;
    pthread_mutex_init(&srv->mu, NULL);
    dt__store_cond_init(&srv->cv);
    int rc = 0;
    DT_CHECK_GOTO(dt__kvmap_init(&srv->map), rc, fail);
    if (secret && *secret) {
        srv->secret_len = strlen(secret);
        srv->secret = dt__store_dup_value(secret, srv->secret_len);
        if (!srv->secret) goto fail;
    }
    DT_CHECK_GOTO(dt__net_listen(host, port, 512, &srv->lfd, &srv->port), rc, fail);
    dt__net_addr_str(host, srv->port, srv->addr, sizeof srv->addr);
    if (pipe2(srv->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        dt_set_error_errno(DT_ESYS, errno, "tcp store server %s: pipe", srv->addr);
        goto fail;
    }
    /* The loop thread takes no signals: they stay with the application's threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&srv->thread, NULL, server_main, srv);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e) {
        dt_set_error_errno(DT_ESYS, e, "tcp store server %s: starting its thread", srv->addr);
        goto fail;
    }
    srv->thread_started = true;
    srv->owner = getpid();
    DT_LOGI(STORE, "tcp store server listening on %s%s", srv->addr, srv->secret ? " (secret required)" : "");
    return srv;
fail:
    (void)rc;
    dt__tcp_server_stop(srv);
    return NULL;
}

int dt__tcp_server_port(const dt__tcp_server *srv) { return srv->port; }

int dt__tcp_server_wait_joined(dt__tcp_server *srv, int n, int64_t deadline_ns)
{
    int rc = 0;
    pthread_mutex_lock(&srv->mu);
    while (srv->joined < n) {
        if (dt__store_cond_wait(&srv->cv, &srv->mu, deadline_ns) == ETIMEDOUT && srv->joined < n) {
            rc = dt_set_error(DT_ETIMEOUT, "tcp store %s: waiting for %d workers, %d joined", srv->addr, n,
                              srv->joined);
            break;
        }
    }
    pthread_mutex_unlock(&srv->mu);
    return rc;
}

void dt__tcp_server_stop(dt__tcp_server *srv)
{
    if (!srv) return;
    if (srv->thread_started && srv->owner != getpid()) {
        /* A forked child releasing its copy: the thread, the table and the
         * connections are the parent's (and the copy may have been taken
         * mid-update). Let go of the listening socket and nothing else. */
        dt__net_close(srv->lfd);
        dt__net_close(srv->wake[0]);
        dt__net_close(srv->wake[1]);
        return;
    }
    if (srv->thread_started) {
        char b = 1;
        while (write(srv->wake[1], &b, 1) < 0 && errno == EINTR) {}
        pthread_join(srv->thread, NULL);
    }
    for (size_t i = 0; i < srv->nconns; i++) conn_free(srv->conns[i]);
    dt_free(srv->conns);
    dt__net_close(srv->lfd);
    dt__net_close(srv->wake[0]);
    dt__net_close(srv->wake[1]);
    dt__kvmap_destroy(&srv->map);
    if (srv->secret) OPENSSL_cleanse(srv->secret, srv->secret_len);
    dt_free(srv->secret);
    pthread_cond_destroy(&srv->cv);
    pthread_mutex_destroy(&srv->mu);
    dt_free(srv);
}
