/* The tcp backend's insides: the per-process state, the wire frame, and the
 * transfer engine the algorithms in allreduce.c, gather.c and p2p.c are built
 * from. Only src/dist/backend/tcp/ includes this.
 *
 * Connections (conn.c). DTRAIN_TCP_CONNS (nconn) TCP connections per pair
 * of ranks, a full mesh: the lower rank connects, both sides exchange a hello
 * (magic, version, rank, size, connections per pair and which one this is,
 * group name, the group's nonce from the store) and check it. Each connection
 * is a link, t->peers[rank * nconn + lane]: lane 0 carries p2p messages and
 * small collectives, the large algorithms stripe their segments over all lanes
 * (segment s on lane s % nconn). Frames on one link arrive in the order sent;
 * nothing orders frames of different links.
 *
 * Frames. Everything on a connection is a frame: a dt__tcp_frame header and
 * `len` payload bytes. COLL frames carry collective data and, in the header,
 * the op's sequence number, kind, dtype, redop, root and count (or a
 * fingerprint of the count lists) and the algorithm's step, so every frame is
 * also the always-on mismatch check. P2P frames carry a send's tag. ABORT
 * carries a failure (code, the ranks missing, the message) to the peers.
 *
 * Transfers (xfer.c). An algorithm posts sends and receives (dt__tcp_xfer,
 * owned by the caller, alive until complete) and waits on some of them; a
 * single poll() loop moves every posted transfer of every link at once, so
 * pipelined segments and exchanges in both directions cannot deadlock. Per
 * link, sends go out in the order posted; an arriving COLL frame goes to the
 * receive posted for its op and step from that peer, a P2P frame to the first
 * P2P receive posted for that peer, streaming straight into the caller's
 * buffer; a frame nobody has asked for yet (p2p data that
 * arrives during a collective, a peer already in the next collective) is read
 * into a buffer on the peer's `unexpected` list and taken by the next receive
 * posted for it. A receive from any source takes the first p2p frame, from any
 * peer, with its tag and size.
 *
 * Failure (fail.c). The first failure this rank sees (a peer's connection closing or
 * erroring, a deadline, a mismatch, abort()) is recorded in fail_code and
 * fail_msg; it is sent as an ABORT frame to every peer whose connection is at
 * a frame boundary, then every connection is shut for writing, so the peers
 * fail at once with the same message. Before that the record is also
 * offered to the group's store ("tcp/fail", compare-and-set: the first rank
 * to fail wins and every later one adopts the winner's record), because a
 * connection in the middle of a frame cannot carry an ABORT frame: a peer that
 * then sees only the connection close adopts the stored record, written
 * before the close, and so names the rank that really failed rather than the
 * one that hung up on it. Every later op returns the record. */
#ifndef DTRAIN_DIST_TCP_H
#define DTRAIN_DIST_TCP_H

#include "dist/backend/backend.h"

#include <pthread.h>
#include <stdatomic.h>

#define DT__TCP_HELLO_MAGIC 0x64747463u  /* "dttc" */
#define DT__TCP_FRAME_MAGIC 0x64746672u  /* "dtfr" */
#define DT__TCP_VERSION 2u
#define DT__TCP_SEG (256u << 10)         /* bytes per segment of the large algorithms */
#define DT__TCP_DEPTH 4                  /* reduce-scatter segments in flight */
#define DT__TCP_MAX_CONNS 16             /* DTRAIN_TCP_CONNS's upper bound */
#define DT__TCP_SMALL (64u << 10)        /* all_reduce up to here: everyone sends everyone its input */
#define DT__TCP_MSG_CAP 512

enum { DT__TCP_F_COLL = 1, DT__TCP_F_P2P = 2, DT__TCP_F_ABORT = 3 };

/* The header of every frame (native byte order: little-endian hosts only is
 * checked by the magic). */
typedef struct {
    uint32_t magic;
    uint8_t type;            /* DT__TCP_F_* */
    uint8_t kind, dtype, redop;  /* COLL: the op */
    int32_t tag;             /* P2P: the tag; COLL: the root; ABORT: the code */
    uint32_t step;           /* COLL: the algorithm's step; ABORT: the rank that recorded it */
    uint64_t seq;            /* COLL: the op's sequence number */
    uint64_t fp;             /* COLL: count or fingerprint; ABORT: the missing ranks (bits) */
    uint64_t len;            /* payload bytes */
} dt__tcp_frame;

/* One posted send or receive. */
typedef struct dt__tcp_xfer {
    struct dt__tcp_xfer *next;   /* in its link's queue (or the any-source list) */
    int peer;                    /* the rank; DT_ANY_SOURCE: a p2p receive from anyone */
    bool is_send, complete;
    dt__tcp_frame f;             /* send: the header to write; receive: the header expected */
    char *buf;
    size_t len;
    size_t done;                 /* send: header + payload bytes written; receive: payload read */
    int source;                  /* receive: the rank the frame came from */
} dt__tcp_xfer;

/* A frame read before anyone asked for it. */
typedef struct dt__tcp_msg {
    struct dt__tcp_msg *next;
    dt__tcp_frame f;
    char data[];
} dt__tcp_msg;

/* One connection to a peer (a link), or this rank's own slot. */
typedef struct {
    int fd;                      /* -1 for this rank */
    bool eof;                    /* the peer closed its side: no more frames */
    char addr[160];              /* "host:port", for messages */
    dt__tcp_xfer *sq, *sq_tail;  /* sends in order; sq is being written */
    dt__tcp_xfer *rq, *rq_tail;  /* posted receives, in order */
    dt__tcp_msg *uq, *uq_tail;   /* unexpected frames, in arrival order */
    /* the frame being read: header bytes got, then its target */
    dt__tcp_frame rf;
    size_t rf_got;
    dt__tcp_xfer *rx;            /* the receive it streams into, or */
    dt__tcp_msg *rmsg;           /* the buffer it is read into */
    size_t r_done;
} dt__tcp_peer;

typedef struct {
    int rank, size;
    int nconn;                   /* connections per pair of ranks (lanes) */
    int nlink;                   /* size * nconn */
    char group[64];
    dt__tcp_peer *peers;         /* [nlink]: link rank * nconn + lane */
    int wake[2];                 /* pipe: abort() writes a byte to wake the poll loop */
    _Atomic int abort_req;
    pthread_mutex_t mu;          /* held while an op runs, and to send abort frames */
    bool abort_sent;
    _Atomic int fail_code;       /* 0 while healthy */
    char fail_msg[DT__TCP_MSG_CAP];
    dt__tcp_xfer *any;           /* posted any-source receives */
    const char *op;              /* the op running, for messages */
    uint64_t seq;
    dt_store *store;             /* the group's (borrowed): the failure record's second copy */
    int64_t spin_ns;             /* poll without sleeping up to this long before blocking */
    int64_t spin_cur;            /* the spin now, 0..spin_ns, adapted (xfer.c) */
    struct dt__tcp_p2px *p2p;    /* the group layer's messages posted here and not yet complete (p2p.c) */
    size_t seg;                  /* bytes per segment of the large algorithms */
    size_t depth;                /* reduce-scatter segments in flight */
    char *tmp;                   /* scratch of the large algorithms */
    size_t tmp_bytes;
} dt__tcp;

/* ---- conn.c */
/* The address this rank listens on (DTRAIN_SOCKET_IFNAME, else the one that
 * routes to MASTER_ADDR, else the host name's, else 127.0.0.1). */
int dt__tcp_local_host(char *buf, size_t cap);
/* The mesh: listen, publish, connect, hello. Fills t->peers[*].fd. */
int dt__tcp_connect_mesh(dt__tcp *t, const dt__backend_init *init);

/* ---- fail.c */
/* Record a failure (first one wins), tell the peers, set this thread's error;
 * returns the recorded code. */
int dt__tcp_fail(dt__tcp *t, int code, uint64_t missing, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* 0, or the recorded failure (as this thread's error). */
int dt__tcp_check(dt__tcp *t);
/* Send ABORT frames where a frame boundary allows and shut every connection
 * for writing (t->mu held). */
void dt__tcp_tell_peers(dt__tcp *t);
/* Free the unexpected frames and forget every posted transfer. */
void dt__tcp_drop_queues(dt__tcp *t);
/* Rank j's ABORT frame m (freed here): adopt its record, pass it on. */
int dt__tcp_adopt_abort(dt__tcp *t, int j, dt__tcp_msg *m);

/* ---- xfer.c */
/* Post on lane `lane` (mod nconn) of the connections to peer; a frame must be
 * received on the lane it was sent on. P2P frames use lane 0. */
void dt__tcp_post_send_on(dt__tcp *t, dt__tcp_xfer *x, int peer, int lane, const dt__tcp_frame *f, const void *buf,
                          size_t len);
void dt__tcp_post_recv_on(dt__tcp *t, dt__tcp_xfer *x, int peer, int lane, const dt__tcp_frame *f, void *buf,
                          size_t len);
static inline void dt__tcp_post_send(dt__tcp *t, dt__tcp_xfer *x, int peer, const dt__tcp_frame *f, const void *buf,
                                     size_t len)
{
    dt__tcp_post_send_on(t, x, peer, 0, f, buf, len);
}
static inline void dt__tcp_post_recv(dt__tcp *t, dt__tcp_xfer *x, int peer, const dt__tcp_frame *f, void *buf,
                                     size_t len)
{
    dt__tcp_post_recv_on(t, x, peer, 0, f, buf, len);
}
/* Move every posted transfer until x[0..nx) are complete (nx < 0: until
 * nothing is posted). Fails (recording it) on a deadline, a peer's failure,
 * a mismatch or an abort. */
int dt__tcp_wait(dt__tcp *t, dt__tcp_xfer *x, int nx, int64_t deadline_ns);
/* The same until done(t, arg) holds (checked before each poll). */
int dt__tcp_wait_until(dt__tcp *t, bool (*done)(dt__tcp *t, void *arg), void *arg, int64_t deadline_ns);
static inline int dt__tcp_wait_all(dt__tcp *t, int64_t deadline_ns) { return dt__tcp_wait(t, NULL, -1, deadline_ns); }
/* At an op's start: read to the end what peers that shut their side sent,
 * so an ABORT frame queued behind data is seen (fails the op). */
int dt__tcp_check_hangups(dt__tcp *t);

/* The COLL header of op c for a frame of len bytes at algorithm step `step`. */
dt__tcp_frame dt__tcp_coll_frame(const dt__coll *c, uint64_t fp, uint32_t step, size_t len);
/* Scratch of at least bytes (t->tmp), or NULL + DT_ENOMEM. */
void *dt__tcp_scratch(dt__tcp *t, size_t bytes);

static inline void dt__tcp_split(size_t count, int n, int i, size_t *lo, size_t *hi)
{
    size_t q = count / (size_t)n, rem = count % (size_t)n;
    *lo = (size_t)i * q + ((size_t)i < rem ? (size_t)i : rem);
    *hi = *lo + q + ((size_t)i < rem ? 1 : 0);
}
static inline uint64_t dt__tcp_counts_fp(const size_t *counts, int n)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) h = (h ^ (uint64_t)counts[i]) * 1099511628211ull;
    return h;
}

/* ---- the ops (allreduce.c, gather.c, p2p.c); called with t->mu held */
int dt__tcp_allreduce(dt__tcp *t, const dt__coll *c);
int dt__tcp_reduce_scatter(dt__tcp *t, const dt__coll *c);
int dt__tcp_broadcast(dt__tcp *t, const dt__coll *c);
int dt__tcp_allgather(dt__tcp *t, const dt__coll *c);
int dt__tcp_scatter(dt__tcp *t, const dt__coll *c);
int dt__tcp_alltoall(dt__tcp *t, const dt__coll *c);
int dt__tcp_barrier(dt__tcp *t, const dt__coll *c);
int dt__tcp_p2p(dt__tcp *t, dt__p2p *const *ops, int nops, int64_t deadline_ns, _Atomic int *kick);
/* Forget the messages p2p() posted (after a failure, and at destroy). */
void dt__tcp_p2p_drop(dt__tcp *t);

#endif /* DTRAIN_DIST_TCP_H */
