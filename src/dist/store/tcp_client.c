/* dist/store/tcp_client: the TCP store as its users see it: one connection to
 * the server (hosted by this process on a background thread when is_server),
 * one request at a time (protocol: tcp_wire.h).
 *
 * GET and WAIT are answered by the server when the keys appear or its deadline
 * (the call's timeout) passes; the client's own deadline is later by a grace,
 * a hang detector for a server that stopped answering. Any I/O failure marks
 * the connection lost: that call reports why (DT_EPEER, DT_ETIMEOUT), every
 * later call DT_ECLOSED with the same reason. It does not reconnect. */
#include "dist/store/tcp.h"
#include "dist/store/tcp_wire.h"
#include "dist/net.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    dt_store base;
    int fd;
    int port;
    char host[256];
    char lost[400];            /* non-empty once the connection is lost: why */
    dt__tcp_server *server;    /* owned when this store hosts it */
} tcp_store;

static const dt__store_ops tcp_ops;

static int64_t grace_ms(int64_t timeout_ms)
{
    int64_t g = timeout_ms / 4;
    return g < 5000 ? 5000 : g;
}

/* Record the current error as the reason the connection is gone. */
static int lose(tcp_store *t, int rc)
{
    snprintf(t->lost, sizeof t->lost, "%s", dt_last_error());
    dt__net_close(t->fd);
    t->fd = -1;
    return rc;
}

/* ------------------------------------------------------------ handshake */

static int handshake(tcp_store *t, const char *secret, int64_t deadline)
{
    const char *label = t->base.desc;
    unsigned char hello[DT__WIRE_HELLO], ch[DT__WIRE_CHALLENGE], mac[EVP_MAX_MD_SIZE], st[DT__WIRE_WELCOME];
    dt__le32_put(hello, DT__WIRE_MAGIC);
    dt__le32_put(hello + 4, DT__WIRE_VERSION);
    DT_CHECK(dt__net_send_all(t->fd, hello, sizeof hello, deadline, label));
    int rc = dt__net_recv_all(t->fd, ch, sizeof ch, deadline, label);
    if (rc < 0) return dt_error_wrap(rc, "handshake");
    if (dt__le32_get(ch) != DT__WIRE_MAGIC)
        return dt_set_error(DT_EPROTO, "%s: the peer is not a dtrain store server (wrong magic)", label);
    if (dt__le32_get(ch + 4) != DT__WIRE_VERSION)
        return dt_set_error(DT_EPROTO, "%s: the server speaks store protocol version %u, this client %u", label,
                            dt__le32_get(ch + 4), DT__WIRE_VERSION);
    bool auth = dt__le32_get(ch + 8) != 0, have = secret && *secret;
    if (auth && !have)
        return dt_set_error(DT_EAUTH, "%s requires a shared secret: set DTRAIN_SECRET (or opts.secret) to the "
                            "server's", label);
    if (!auth && have)
        return dt_set_error(DT_EAUTH, "%s requires no secret but this client has one: set DTRAIN_SECRET alike "
                            "on both sides", label);
    memset(mac, 0, sizeof mac);
    if (auth) {
        unsigned int maclen = 0;
        if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), ch + 12, DT__WIRE_NONCE, mac, &maclen) ||
            maclen != DT__WIRE_MAC)
            return dt_set_error(DT_EINTERNAL, "%s: HMAC-SHA256 failed", label);
    }
    DT_CHECK(dt__net_send_all(t->fd, mac, DT__WIRE_MAC, deadline, label));
    OPENSSL_cleanse(mac, sizeof mac);
    rc = dt__net_recv_all(t->fd, st, sizeof st, deadline, label);
    if (rc < 0) return dt_error_wrap(rc, "handshake");
    int32_t status = (int32_t)dt__le32_get(st);
    if (status == DT_EAUTH)
        return dt_set_error(DT_EAUTH, "%s rejected this client's secret: DTRAIN_SECRET (or opts.secret) differs "
                            "from the server's", label);
    if (status != 0) return dt_set_error(DT_EPROTO, "%s refused the handshake (status %d)", label, status);
    return 0;
}

/* ------------------------------------------------------------ requests */

/* What a timeout reply should name. */
typedef struct {
    const char *const *keys;
    int nkeys;
    int64_t timeout_ms;
} wait_ctx;

/* Send the request in b, receive the reply body into *body (owned by the
 * caller) and check its status. reply_deadline bounds the wait for the reply. */
static int roundtrip(tcp_store *t, dt__wbuf *b, int64_t reply_deadline, const wait_ctx *w, unsigned char **body,
                     dt__rbuf *r)
{
    *body = NULL;
    if (b->err) { dt_free(b->p); return dt_set_error(DT_ENOMEM, "%s: building a request", t->base.desc); }
    if (t->fd < 0) {
        dt_free(b->p);
        return dt_set_error(DT_ECLOSED, "%s: the connection was lost earlier: %s", t->base.desc, t->lost);
    }
    int64_t send_deadline = dt_deadline_ns(atomic_load(&t->base.timeout_ms));
    int rc = dt__net_send_all(t->fd, b->p, b->len, send_deadline, t->base.desc);
    dt_free(b->p);
    if (rc < 0) return lose(t, rc);
    unsigned char hdr[4];
    rc = dt__net_recv_all(t->fd, hdr, 4, reply_deadline, t->base.desc);
    if (rc < 0) return lose(t, rc);
    uint32_t n = dt__le32_get(hdr);
    if (n < 4 || n > DT__WIRE_MAX_FRAME)
        return lose(t, dt_set_error(DT_EPROTO, "%s: reply of %u bytes is out of bounds", t->base.desc, n));
    *body = dt_alloc(n, DT_MEM_COMM);
    if (!*body) return lose(t, DT_ENOMEM);
    rc = dt__net_recv_all(t->fd, *body, n, reply_deadline, t->base.desc);
    if (rc < 0) { dt_free(*body); *body = NULL; return lose(t, rc); }
    *r = (dt__rbuf){.p = *body, .len = n, .off = 0, .bad = false};
    int32_t status = (int32_t)dt__rbuf_u32(r);
    if (status == 0) return 0;
    if (status == DT_ETIMEOUT && w) rc = dt__store_timeout_error(&t->base, w->keys, w->nkeys, w->timeout_ms);
    else {
        size_t mlen = 0;
        const unsigned char *m = dt__rbuf_str(r, n, &mlen);
        rc = dt_set_error(status > -100 && status < 0 ? status : DT_EPROTO, "%s: %.*s", t->base.desc, (int)mlen,
                          m ? (const char *)m : "");
    }
    dt_free(*body);
    *body = NULL;
    return rc;
}

/* A reply payload that did not parse: the stream cannot be trusted any more. */
static int bad_reply(tcp_store *t, unsigned char *body)
{
    dt_free(body);
    return lose(t, dt_set_error(DT_EPROTO, "%s: malformed reply", t->base.desc));
}

static int64_t plain_deadline(const tcp_store *t) { return dt_deadline_ns(atomic_load(&t->base.timeout_ms)); }

/* One request and its reply: begin() writes the frame header and the op,
 * the caller the fields, send() ends the frame and does the round trip, a
 * take_*() reads the payload and frees the reply. */
typedef struct {
    dt__wbuf b;
    size_t at;
    unsigned char *body;
    dt__rbuf r;
} call;

static void begin(call *c, int op)
{
    memset(c, 0, sizeof *c);
    c->at = dt__wbuf_begin_frame(&c->b);
    dt__wbuf_u8(&c->b, (uint8_t)op);
}

static void put_key(call *c, const char *key) { dt__wbuf_str(&c->b, key, strlen(key)); }

static void put_keys(call *c, const char *const *keys, int nkeys)
{
    dt__wbuf_u32(&c->b, (uint32_t)nkeys);
    for (int i = 0; i < nkeys; i++) put_key(c, keys[i]);
}

static int send_call(tcp_store *t, call *c, int64_t reply_deadline, const wait_ctx *w)
{
    dt__wbuf_end_frame(&c->b, c->at);
    return roundtrip(t, &c->b, reply_deadline, w, &c->body, &c->r);
}

/* Receive a str payload as a fresh dt_alloc'd value. */
static int take_value(tcp_store *t, call *c, void **val, size_t *len)
{
    size_t n = 0;
    const unsigned char *v = dt__rbuf_str(&c->r, DT__STORE_MAX_VALUE, &n);
    if (!v || c->r.off != c->r.len) return bad_reply(t, c->body);
    *val = dt__store_dup_value(v, n);
    dt_free(c->body);
    if (!*val) return dt_error_wrap(DT_ENOMEM, "%s: value", t->base.desc);
    *len = n;
    return 0;
}

static int take_i64(tcp_store *t, call *c, int64_t *out)
{
    int64_t v = dt__rbuf_i64(&c->r);
    if (c->r.bad || c->r.off != c->r.len) return bad_reply(t, c->body);
    dt_free(c->body);
    *out = v;
    return 0;
}

static int take_bool(tcp_store *t, call *c, bool *out)
{
    uint8_t v = dt__rbuf_u8(&c->r);
    if (c->r.bad || c->r.off != c->r.len || v > 1) return bad_reply(t, c->body);
    dt_free(c->body);
    *out = v != 0;
    return 0;
}

static int take_none(tcp_store *t, call *c)
{
    if (c->r.off != c->r.len) return bad_reply(t, c->body);
    dt_free(c->body);
    return 0;
}

static int tcp_set(dt_store *s, const char *key, const void *val, size_t len)
{
    tcp_store *t = (tcp_store *)s;
    call c;
    begin(&c, DT__OP_SET);
    put_key(&c, key);
    dt__wbuf_str(&c.b, val, len);
    DT_CHECK(send_call(t, &c, plain_deadline(t), NULL));
    return take_none(t, &c);
}

static int tcp_get(dt_store *s, const char *key, int64_t timeout_ms, void **val, size_t *len)
{
    tcp_store *t = (tcp_store *)s;
    call c;
    begin(&c, DT__OP_GET);
    put_key(&c, key);
    dt__wbuf_i64(&c.b, timeout_ms);
    wait_ctx w = {&key, 1, timeout_ms};
    DT_CHECK(send_call(t, &c, dt_deadline_ns(timeout_ms + grace_ms(timeout_ms)), &w));
    return take_value(t, &c, val, len);
}

static int tcp_add(dt_store *s, const char *key, int64_t delta, int64_t *out)
{
    tcp_store *t = (tcp_store *)s;
    call c;
    begin(&c, DT__OP_ADD);
    put_key(&c, key);
    dt__wbuf_i64(&c.b, delta);
    DT_CHECK(send_call(t, &c, plain_deadline(t), NULL));
    return take_i64(t, &c, out);
}

static int tcp_compare_set(dt_store *s, const char *key, const void *expected, size_t elen, const void *desired,
                           size_t dlen, void **cur, size_t *cur_len)
{
    tcp_store *t = (tcp_store *)s;
    call c;
    begin(&c, DT__OP_CAS);
    put_key(&c, key);
    dt__wbuf_str(&c.b, expected, elen);
    dt__wbuf_str(&c.b, desired, dlen);
    DT_CHECK(send_call(t, &c, plain_deadline(t), NULL));
    return take_value(t, &c, cur, cur_len);
}

static int tcp_wait(dt_store *s, const char *const *keys, int nkeys, int64_t timeout_ms)
{
    tcp_store *t = (tcp_store *)s;
    call c;
    begin(&c, DT__OP_WAIT);
    put_keys(&c, keys, nkeys);
    dt__wbuf_i64(&c.b, timeout_ms);
    wait_ctx w = {keys, nkeys, timeout_ms};
    DT_CHECK(send_call(t, &c, dt_deadline_ns(timeout_ms + grace_ms(timeout_ms)), &w));
    return take_none(t, &c);
}

static int tcp_check(dt_store *s, const char *const *keys, int nkeys, bool *exists)
{
    tcp_store *t = (tcp_store *)s;
    call c;
    begin(&c, DT__OP_CHECK);
    put_keys(&c, keys, nkeys);
    DT_CHECK(send_call(t, &c, plain_deadline(t), NULL));
    return take_bool(t, &c, exists);
}

static int tcp_del(dt_store *s, const char *key, bool *deleted)
{
    tcp_store *t = (tcp_store *)s;
    call c;
    begin(&c, DT__OP_DEL);
    put_key(&c, key);
    DT_CHECK(send_call(t, &c, plain_deadline(t), NULL));
    return take_bool(t, &c, deleted);
}

static int tcp_num_keys(dt_store *s, int64_t *out)
{
    tcp_store *t = (tcp_store *)s;
    call c;
    begin(&c, DT__OP_NUM_KEYS);
    DT_CHECK(send_call(t, &c, plain_deadline(t), NULL));
    return take_i64(t, &c, out);
}

static int tcp_port(const dt_store *s) { return ((const tcp_store *)s)->port; }

static void tcp_destroy(dt_store *s)
{
    tcp_store *t = (tcp_store *)s;
    dt__net_close(t->fd);
    dt__tcp_server_stop(t->server);
    dt_free(t);
}

static const dt__store_ops tcp_ops = {
    .kind = "tcp", .set = tcp_set, .get = tcp_get, .add = tcp_add, .compare_set = tcp_compare_set,
    .wait = tcp_wait, .check = tcp_check, .del = tcp_del, .num_keys = tcp_num_keys, .port = tcp_port,
    .destroy = tcp_destroy,
};

/* The address the hosting process's own client dials: a wildcard is not a peer. */
static const char *dial_host(const char *host)
{
    if (strcmp(host, "0.0.0.0") == 0) return "127.0.0.1";
    if (strcmp(host, "::") == 0) return "::1";
    return host;
}

dt_store *dt_store_tcp(const char *host, int port, bool is_server, const dt_store_opts *opts)
{
    dt_store_opts defaults = DT_STORE_OPTS_INIT;
    if (!opts) opts = &defaults;
    if (!host || !*host) {
        dt_set_error(DT_EINVAL, "tcp store: no host given%s", is_server ? " (use 0.0.0.0 or :: for every interface)" : "");
        return NULL;
    }
    if (strlen(host) >= sizeof ((tcp_store *)0)->host || port < (is_server ? 0 : 1) || port > 65535) {
        dt_set_error(DT_EINVAL, "tcp store: bad address %s:%d", host, port);
        return NULL;
    }
    tcp_store *t = dt_calloc(1, sizeof *t, DT_MEM_COMM);
    if (!t) return NULL;
    t->fd = -1;
    snprintf(t->host, sizeof t->host, "%s", host);
    const char *secret = opts->secret ? opts->secret : dt_param_str(DT_PARAM_SECRET);
    char addr[300];
    int rc = 0;
    DT_CHECK_GOTO(dt__store_init(&t->base, &tcp_ops, opts, "tcp store %s", dt__net_addr_str(host, port, addr, sizeof addr)),
                  rc, fail);
    int64_t deadline = dt_deadline_ns(atomic_load(&t->base.timeout_ms));
    if (is_server) {
        t->server = dt__tcp_server_start(host, port, secret);
        if (!t->server) goto fail;
        port = dt__tcp_server_port(t->server);
        snprintf(t->base.desc, sizeof t->base.desc, "tcp store %s", dt__net_addr_str(host, port, addr, sizeof addr));
    }
    t->port = port;
    DT_CHECK_GOTO(dt__net_connect(dial_host(host), port, deadline, &t->fd), rc, fail);
    DT_CHECK_GOTO(handshake(t, secret, deadline), rc, fail);
    if (is_server && opts->wait_for_workers && opts->num_workers > 0)
        DT_CHECK_GOTO(dt__tcp_server_wait_joined(t->server, opts->num_workers, deadline), rc, fail);
    return &t->base;
fail:
    (void)rc;
    dt_error_wrap(dt_last_error_code() ? dt_last_error_code() : DT_EINTERNAL, "creating %s",
                  t->base.desc[0] ? t->base.desc : "tcp store");
    tcp_destroy(&t->base);
    return NULL;
}
