/* dist/store/tcp: the TCP store's server, as the client side (tcp_client.c)
 * sees it. The server is an event loop on its own thread in the hosting
 * process; see tcp_server.c. */
#ifndef DT_STORE_TCP_H
#define DT_STORE_TCP_H

#include "dist/store/store_impl.h"

typedef struct dt__tcp_server dt__tcp_server;

/* Listen on host:port (port 0: a free one) and start serving on a background
 * thread. secret: NULL or "" for none; copied. NULL + last error on failure.
 * Owned by the caller: stop it with dt__tcp_server_stop. */
dt__tcp_server *dt__tcp_server_start(const char *host, int port, const char *secret);
int dt__tcp_server_port(const dt__tcp_server *srv);
/* Block until n clients have completed the handshake (ever, not at once), or
 * deadline_ns: 0 or DT_ETIMEOUT naming how many joined. */
int dt__tcp_server_wait_joined(dt__tcp_server *srv, int n, int64_t deadline_ns);
/* Stop the loop, close every connection (their clients see the connection
 * close) and free everything. NULL ok. */
void dt__tcp_server_stop(dt__tcp_server *srv);

#endif /* DT_STORE_TCP_H */
