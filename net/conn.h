/*
 * conn: one peer connection: a non-blocking TCP socket, mutual TLS over it,
 * and wire frames (wire.h) in both directions, driven by the net loop.
 *
 * Life cycle, and the order of the callbacks:
 *
 *	conn_connect() / conn_accept()
 *	  -> on_open            handshake done; conn_peer_id() is the peer's CN
 *	  -> on_frame ...       one per received frame, in order
 *	     on_writable ...    the send queue drained to CONN_SEND_LOW
 *	  -> on_close           exactly once, always last, with a reason
 *
 * on_open is skipped when the connection fails before the handshake
 * completes; on_close is not.  No callback is ever called from inside a
 * conn_* function: conn_connect() that fails at once, conn_close() and
 * conn_send() report through the loop later.  After on_close returns the
 * connection is freed (by a deferred task, never inside its own callback);
 * the owner must forget the pointer in on_close.  Until then every
 * function here may be called on it, whatever state it is in.
 *
 * Bounds: the receive buffer grows only to the size the frame being read
 * declares (at most CONN_RECV_MAX, checked before allocating) and shrinks
 * back afterwards; the send queue holds at most CONN_SEND_MAX bytes.  A
 * sender streams by sending while conn_send_space() allows and resuming in
 * on_writable.  A receiver that cannot keep up calls conn_set_reading(c,
 * false): TCP then pushes back on the peer.
 *
 * TLS 1.3 note: a client finishes its handshake before the server has
 * checked the client's certificate, so a dialled connection whose
 * certificate the server refuses sees on_open and then on_close ("tls
 * read: tlsv1 alert unknown ca").  A peer is introduced by its HELLO, not
 * by on_open.
 *
 * Dialling a name: resolve it off the loop thread (getaddrinfo() blocks;
 * a helper thread hands the addresses back and calls loop_wake()), then
 * conn_connect() each address in turn until one reaches on_open.
 * Accepting: register the listen_open() socket with loop_fd_add(EPOLLIN);
 * in its callback, accept4(SOCK_NONBLOCK | SOCK_CLOEXEC) until EAGAIN and
 * hand each socket to conn_accept().
 *
 * Errors end the connection with on_close and a one-line reason, e.g.
 * "connect: Connection refused", "handshake timeout", "tls handshake:
 * certificate verify failed (unable to get local issuer certificate)",
 * "frame too large: 4294967295 bytes", "connection closed by peer".
 *
 * Threads: everything here runs in the loop's thread.
 */
#ifndef ODOFS_CONN_H
#define ODOFS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "err.h"
#include "loop.h"
#include "tls.h"
#include "wire.h"

#define CONN_SEND_MAX	(16u << 20)	/* bytes queued for sending */
/* on_writable point: room for the largest frame is left below it */
#define CONN_SEND_LOW	(CONN_SEND_MAX - WIRE_FRAME_MAX - WIRE_HEADER)
#define CONN_RECV_MAX	(WIRE_FRAME_MAX + WIRE_HEADER)
#define CONN_LINGER_MS	2000		/* conn_close(): flush at most this */
/*
 * Bytes written into the socket and not yet sent that the kernel may hold
 * (TCP_NOTSENT_LOWAT; the queue is written on only below it): what is
 * queued later, a control frame, waits behind this much plus what is in
 * flight, not behind a send buffer sized for the bandwidth-delay product.
 */
#define CONN_UNSENT_MAX	(16u << 10)
#define CONN_ADDR_MAX	80		/* "[v6%zone]:port" */
#define CONN_REASON_MAX	256

struct conn;

typedef void (*conn_open_fn)(void *arg, struct conn *c);
/* payload (len bytes after the type) is valid only during the call. */
typedef void (*conn_frame_fn)(void *arg, struct conn *c, uint8_t type,
    const uint8_t *payload, size_t len);
typedef void (*conn_writable_fn)(void *arg, struct conn *c);
/* reason is valid only during the call; c is freed after it returns. */
typedef void (*conn_close_fn)(void *arg, struct conn *c,
    const char *reason);

/* The callbacks; on_open and on_writable may be NULL. */
struct conn_cb {
	conn_open_fn on_open;
	conn_frame_fn on_frame;
	conn_writable_fn on_writable;
	conn_close_fn on_close;
};

/* Counters, for .status and .metrics. */
struct conn_stats {
	uint64_t bytes_in;	/* decrypted */
	uint64_t bytes_out;
	uint64_t frames_in;
	uint64_t frames_out;
	size_t send_queued;	/* bytes waiting in the send queue */
	size_t recv_buffer;	/* bytes of receive buffer allocated */
};

/*
 * Dials sa (one resolved address: the caller resolves a name with
 * getaddrinfo() and dials its addresses in turn) and runs the TLS client
 * handshake, all within handshake_ms (0: no deadline).  Returns 0 and *out
 * (the connection is under way: its outcome comes through the callbacks),
 * or -errno with e when nothing could be started (socket(), memory); then
 * no callback will come.  cb is copied; tls must outlive the connection.
 */
int conn_connect(struct conn **out, struct loop *l, struct tls_ctx *tls,
    const struct sockaddr *sa, socklen_t salen, uint32_t handshake_ms,
    const struct conn_cb *cb, void *arg, struct err *e);

/*
 * Adopts fd, a socket returned by accept(2) (made non-blocking here), and
 * runs the TLS server handshake within handshake_ms.  fd is the
 * connection's in every case: on failure it is closed.  Returns as
 * conn_connect().
 */
int conn_accept(struct conn **out, struct loop *l, struct tls_ctx *tls,
    int fd, uint32_t handshake_ms, const struct conn_cb *cb, void *arg,
    struct err *e);

/* Changes the argument of the callbacks (adopting a connection). */
void conn_set_arg(struct conn *c, void *arg);

/*
 * Queues whole encoded frames (one or more, as the wire encoders write
 * them) for sending; the bytes are copied.  Allowed before on_open (they go
 * out after the handshake).  Returns 0; -ENOBUFS when they do not fit in
 * the queue (nothing queued; on_writable follows when it drains); -EINVAL
 * when p is not a sequence of whole valid frames; -EMSGSIZE when len
 * exceeds CONN_SEND_MAX; -EPIPE once the connection is closing or closed;
 * -ENOMEM.
 */
int conn_send(struct conn *c, const void *p, size_t len);

/* For tests: conn_send() without the frame check. */
int conn_send_raw(struct conn *c, const void *p, size_t len);

/* Bytes conn_send() would accept now (0 once closing). */
size_t conn_send_space(const struct conn *c);

/* Bytes in the send queue (not yet written into the socket). */
size_t conn_send_queued(const struct conn *c);

/*
 * Asks for one on_writable once the send queue holds at most below bytes:
 * a streamer that keeps little queued (so that what is queued after it
 * waits little) resumes there.  Ask only when more than below is queued.
 */
void conn_want_writable(struct conn *c, size_t below);

/*
 * Stops (false) or resumes (true) reading and delivering frames; on by
 * default.  Frames already received wait in the buffer.
 */
void conn_set_reading(struct conn *c, bool on);

/*
 * Closes: stops delivering frames, sends what is queued (at most
 * CONN_LINGER_MS), then TLS close_notify, and reports on_close(reason)
 * later.  Before the handshake completes, closes at once.  Further calls,
 * and calls after an error, do nothing: the first reason is reported.
 */
void conn_close(struct conn *c, const char *reason);

/*
 * Ends at once: what is queued is dropped, nothing is flushed, on_close
 * follows with reason (as later).  For a connection that cannot carry
 * anything any more (a stalled one whose peer we dial again).
 */
void conn_abort(struct conn *c, const char *reason);

/* The peer certificate's CN after on_open (also in on_close); else "". */
const char *conn_peer_id(const struct conn *c);

/* The peer's numeric address, "192.0.2.1:7400" or "[2001:db8::1]:7400". */
const char *conn_peer_addr(const struct conn *c);

/* The socket, or -1 once the connection has ended. */
int conn_fd(const struct conn *c);

/* Whether c was accepted (true) or dialled (false). */
bool conn_incoming(const struct conn *c);

void conn_stats(const struct conn *c, struct conn_stats *out);

/*
 * Whether TCP holds data of c that the peer has not acknowledged and has
 * backed off retransmitting it at least once: the path may be down, and
 * will be tried again only at TCP's next retransmission.
 */
bool conn_stalled(const struct conn *c);

/*
 * The frame being received: its type in *type and how many of its bytes
 * are in (0 when none is under way), so that a slow link shows progress
 * before a frame is whole.
 */
size_t conn_recv_partial(const struct conn *c, uint8_t *type);

#endif
