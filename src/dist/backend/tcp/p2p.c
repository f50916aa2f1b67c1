/* tcp send/recv: each message is one P2P frame carrying its tag. A batch
 * posts all its sends (in order: messages to one rank arrive in the order
 * sent), then all its receives, and moves them together, so two ranks
 * exchanging large messages cannot deadlock. A receive from one source takes
 * that source's next message, which must have its tag and size (else
 * DT_EMISMATCH); one from any source takes the first message, from any rank,
 * whose tag and size match. Messages that arrive before their receive
 * (eagerly sent by a peer that went on) wait in the transfer engine's
 * unexpected list. Sends to self go straight onto that list. */
#include "dist/backend/tcp/tcp.h"

int dt__tcp_p2p_batch(dt__tcp *t, dt__p2p *ops, int nops, int64_t deadline_ns)
{
    dt__tcp_xfer local[16], *x = nops <= 16 ? local : dt_alloc((size_t)nops * sizeof *x, DT_MEM_COMM);
    if (!x) return dt_set_error(DT_ENOMEM, "tcp: no memory for %d messages", nops);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < nops; i++) {
            dt__tcp_frame f = {.type = DT__TCP_F_P2P, .tag = ops[i].tag};
            if (pass == 0 && ops[i].kind == DT_P2P_SEND)
                dt__tcp_post_send(t, &x[i], ops[i].peer, &f, ops[i].buf, ops[i].bytes);
            else if (pass == 1 && ops[i].kind == DT_P2P_RECV)
                dt__tcp_post_recv(t, &x[i], ops[i].peer, &f, ops[i].buf, ops[i].bytes);
        }
    int rc = dt__tcp_wait(t, x, nops, deadline_ns);
    if (rc == 0)
        for (int i = 0; i < nops; i++)
            if (ops[i].kind == DT_P2P_RECV) ops[i].source = x[i].source;
    if (x != local) dt_free(x);
    return rc;
}
