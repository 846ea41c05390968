/*
 * listen: the peer listening socket.  Opened by the composition root before
 * the filesystem is mounted, so that a bad address or a port in use fails
 * start-up with one clear line instead of surfacing after the mount.
 */
#ifndef ODOFS_LISTEN_H
#define ODOFS_LISTEN_H

#include "err.h"

/*
 * Splits "HOST:PORT" (HOST may be "[v6]") into host and port buffers.
 * Returns 0 or -EINVAL.
 */
int listen_split(const char *addr, char *host, size_t hostsz, char *port,
    size_t portsz);

/*
 * Resolves addr and binds a non-blocking, close-on-exec TCP socket to it,
 * listening.  Returns the descriptor, or -EADDRINUSE, -EADDRNOTAVAIL, ...
 * with e naming the address and the reason.
 */
int listen_open(const char *addr, struct err *e);

#endif
