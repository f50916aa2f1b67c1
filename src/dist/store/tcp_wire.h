/* dist/store/tcp_wire: the TCP store's wire protocol, shared by client and server.
 *
 * All integers little-endian. A connection starts with the handshake:
 *   client -> server  hello      u32 magic 'DTSK', u32 version
 *   server -> client  challenge  u32 magic, u32 version, u32 auth (1: secret
 *                                required), u8 nonce[32] (random; zeros when auth 0)
 *   client -> server  answer     u8 mac[32] = HMAC-SHA256(secret, nonce) (zeros
 *                                when auth 0)
 *   server -> client  welcome    i32 status (0, or DT_EAUTH / DT_EPROTO, then close)
 * A wrong magic gets no reply: the server closes. Then requests and replies,
 * one at a time per connection, each a frame: u32 body length, then the body.
 *   request body: u8 op, then per op (str = u32 length + bytes; keys never
 *   contain NUL):
 *     SET key val | GET key i64 timeout_ms | ADD key i64 delta
 *     CAS key expected desired | WAIT u32 n, n x key, i64 timeout_ms
 *     CHECK u32 n, n x key | DEL key | NUM_KEYS
 *   reply body: i32 status; if 0: GET/CAS str value, ADD/NUM_KEYS i64,
 *     CHECK/DEL u8, SET/WAIT nothing; if < 0: str message.
 * GET and WAIT park on the server until the keys exist or timeout_ms passes
 * (then status DT_ETIMEOUT). The server caps every length it reads (a body at
 * DT__WIRE_MAX_FRAME, keys, values, counts at the store limits) and closes a
 * connection that breaks a rule. */
#ifndef DT_STORE_TCP_WIRE_H
#define DT_STORE_TCP_WIRE_H

#include "dist/store/store_impl.h"

#include <string.h>

#define DT__WIRE_MAGIC     0x4b535444u   /* "DTSK" as little-endian bytes */
#define DT__WIRE_VERSION   1u
#define DT__WIRE_HELLO     8u
#define DT__WIRE_NONCE     32u
#define DT__WIRE_CHALLENGE (12u + DT__WIRE_NONCE)
#define DT__WIRE_MAC       32u
#define DT__WIRE_WELCOME   4u
/* The largest body either side accepts: a CAS with two maximal values, or a
 * WAIT with the most keys, whichever is larger, and some slack for the fields. */
#define DT__WIRE_MAX_FRAME ((uint32_t)(2u * DT__STORE_MAX_VALUE + 2u * DT__STORE_MAX_KEY + 64u))
_Static_assert((uint64_t)DT__STORE_MAX_KEYS * (4u + DT__STORE_MAX_KEY) + 64u < DT__WIRE_MAX_FRAME,
               "a maximal WAIT fits a frame");

enum {
    DT__OP_SET = 1, DT__OP_GET, DT__OP_ADD, DT__OP_CAS, DT__OP_WAIT, DT__OP_CHECK, DT__OP_DEL,
    DT__OP_NUM_KEYS, DT__OP_COUNT
};

static inline void dt__le32_put(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}
static inline uint32_t dt__le32_get(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A growable output buffer; the first failed growth sets err and later puts do nothing. */
typedef struct {
    unsigned char *p;
    size_t len, cap;
    int err;
} dt__wbuf;

static inline void dt__wbuf_put(dt__wbuf *b, const void *src, size_t n)
{
    if (b->err) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        unsigned char *np = dt_realloc(b->p, cap, DT_MEM_COMM);
        if (!np) { b->err = DT_ENOMEM; return; }
        b->p = np;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}
static inline void dt__wbuf_u8(dt__wbuf *b, uint8_t v) { dt__wbuf_put(b, &v, 1); }
static inline void dt__wbuf_u32(dt__wbuf *b, uint32_t v)
{
    unsigned char t[4];
    dt__le32_put(t, v);
    dt__wbuf_put(b, t, 4);
}
static inline void dt__wbuf_i64(dt__wbuf *b, int64_t v)
{
    dt__wbuf_u32(b, (uint32_t)((uint64_t)v & 0xffffffffu));
    dt__wbuf_u32(b, (uint32_t)((uint64_t)v >> 32));
}
static inline void dt__wbuf_str(dt__wbuf *b, const void *s, size_t n)
{
    dt__wbuf_u32(b, (uint32_t)n);
    dt__wbuf_put(b, s, n);
}
/* Start a frame: a length placeholder the caller fills with dt__wbuf_end_frame. */
static inline size_t dt__wbuf_begin_frame(dt__wbuf *b)
{
    size_t at = b->len;
    dt__wbuf_u32(b, 0);
    return at;
}
static inline void dt__wbuf_end_frame(dt__wbuf *b, size_t at)
{
    if (!b->err) dt__le32_put(b->p + at, (uint32_t)(b->len - at - 4));
}

/* A bounds-checked reader over one received body; any short read sets bad. */
typedef struct {
    const unsigned char *p;
    size_t len, off;
    bool bad;
} dt__rbuf;

static inline const unsigned char *dt__rbuf_take(dt__rbuf *r, size_t n)
{
    if (r->bad || r->len - r->off < n) { r->bad = true; return NULL; }
    const unsigned char *q = r->p + r->off;
    r->off += n;
    return q;
}
static inline uint8_t dt__rbuf_u8(dt__rbuf *r)
{
    const unsigned char *q = dt__rbuf_take(r, 1);
    return q ? q[0] : 0;
}
static inline uint32_t dt__rbuf_u32(dt__rbuf *r)
{
    const unsigned char *q = dt__rbuf_take(r, 4);
    return q ? dt__le32_get(q) : 0;
}
static inline int64_t dt__rbuf_i64(dt__rbuf *r)
{
    uint64_t lo = dt__rbuf_u32(r), hi = dt__rbuf_u32(r);
    return (int64_t)(lo | hi << 32);
}
/* A string of at most max bytes; *n its length; points into the body. */
static inline const unsigned char *dt__rbuf_str(dt__rbuf *r, size_t max, size_t *n)
{
    uint32_t len = dt__rbuf_u32(r);
    if (r->bad || len > max) { r->bad = true; *n = 0; return NULL; }
    *n = len;
    return dt__rbuf_take(r, len);
}

#endif /* DT_STORE_TCP_WIRE_H */
