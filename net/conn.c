/*
 * conn: see conn.h.  A small state machine driven by one loop_fd:
 *
 *	CONNECTING   TCP connect in progress (waits for EPOLLOUT)
 *	HANDSHAKE    TLS handshake; epoll interest follows what TLS wants
 *	OPEN         frames flow; interest: IN while reading, OUT while the
 *	             send queue is not empty (swapped while TLS wants the
 *	             other direction)
 *	CLOSING      conn_close(): flush, close_notify, shutdown(SHUT_WR), then
 *	             read and discard until the peer's EOF, so the close sends
 *	             FIN rather than RST and the last frames (a BYE) arrive
 *	DEAD         ended: unregistered, waiting for its task
 *
 * One timer serves as the handshake deadline and as the linger bound.
 * Every end goes through conn_end(): it unregisters the socket and posts
 * the connection's task, which runs after the round, frees the socket,
 * TLS and buffers, reports on_close and frees the struct.  So no callback
 * of ours is ever entered twice, and no memory in use by a caller up the
 * stack is freed under it; every loop below re-checks the state after a
 * user callback.
 *
 * Receiving: frames are parsed in place in one buffer; it holds at most
 * one frame being assembled, grown to the size its header declares (after
 * wire_frame_peek() has refused anything above WIRE_FRAME_MAX) and shrunk
 * back once the big frame is consumed.  TLS may hold decrypted bytes that
 * epoll does not know about, so reading continues until TLS wants more
 * from the socket; a per-event budget keeps one busy peer from starving
 * the others, and a "kick" task continues in the next round.
 *
 * Sending: a FIFO of chunks.  Partial TLS writes advance the head chunk;
 * after a WANT the same bytes are offered again (tls_write's contract).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"

#define CONN_RECV_MIN		(32u << 10)	/* receive buffer, usual */
#define CONN_READ_BUDGET	(1u << 20)	/* bytes per event */
#define CONN_CHUNK		(64u << 10)	/* send queue allocation */

_Static_assert(CONN_SEND_MAX - CONN_SEND_LOW >= WIRE_FRAME_MAX + WIRE_HEADER,
    "below CONN_SEND_LOW the largest frame must fit");

enum conn_state {
	CONN_CONNECTING,
	CONN_HANDSHAKE,
	CONN_OPEN,
	CONN_CLOSING,
	CONN_DEAD,
};

struct conn_chunk {
	struct conn_chunk *next;
	size_t off;		/* bytes already written */
	size_t len;		/* bytes filled */
	size_t cap;
	uint8_t data[];
};

struct conn {
	struct loop *l;
	struct tls_ctx *ctx;
	struct tls *tls;		/* NULL while CONNECTING */
	int fd;
	struct loop_fd *io;
	struct loop_timer *timer;	/* handshake deadline, linger */
	struct loop_task *task;		/* the end: on_close, free */
	struct loop_task *kick;		/* continue reading next round */
	struct conn_cb cb;
	void *arg;

	enum conn_state state;
	bool server;
	bool reading;			/* the owner wants frames */
	bool hs_wants_write;		/* handshake waits for EPOLLOUT */
	bool rd_wants_write;		/* TLS read waits for EPOLLOUT */
	bool wr_wants_read;		/* TLS write waits for EPOLLIN */
	bool want_writable;		/* on_writable owed at low */
	size_t low;			/* CONN_SEND_LOW, or what was asked */
	bool shut_sent;			/* close_notify and SHUT_WR done */

	uint8_t *rbuf;
	size_t rlen, rcap;

	struct conn_chunk *shead, *stail;
	size_t queued;

	struct conn_stats stats;
	char addr[CONN_ADDR_MAX];
	char peer_id[CONFIG_ID_MAX + 1];
	char reason[CONN_REASON_MAX];
};

static void conn_progress(struct conn *c);

/*
 * Ending.
 */

static void
conn_free_queue(struct conn *c)
{
	struct conn_chunk *k;

	while ((k = c->shead) != NULL) {
		c->shead = k->next;
		free(k);
	}
	c->stail = NULL;
	c->queued = 0;
}

/* The deferred end: release, report, free. */
static void
conn_done(void *arg)
{
	struct conn *c = arg;

	tls_close(c->tls);
	c->tls = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->rbuf);
	c->rbuf = NULL;
	c->rlen = c->rcap = 0;
	conn_free_queue(c);
	c->cb.on_close(c->arg, c, c->reason);
	loop_timer_del(c->timer);
	loop_task_del(c->kick);
	loop_task_del(c->task);
	free(c);
}

static void
conn_end(struct conn *c)
{
	if (c->state == CONN_DEAD)
		return;
	c->state = CONN_DEAD;
	loop_fd_del(c->io);
	c->io = NULL;
	loop_timer_cancel(c->timer);
	log_debug("connection %s%s%s closed: %s", c->addr,
	    c->peer_id[0] ? " peer " : "", c->peer_id, c->reason);
	loop_task_post(c->task);
}

/*
 * Ends c with a reason, unless conn_close() already gave one (an error
 * while closing does not replace the owner's reason).
 */
static void
conn_fail(struct conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void
conn_fail(struct conn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->state == CONN_DEAD)
		return;
	if (c->state != CONN_CLOSING) {
		va_start(ap, fmt);
		vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
		va_end(ap);
	}
	conn_end(c);
}

/*
 * Interest.
 */

static void
conn_update(struct conn *c)
{
	uint32_t ev = 0;
	int rc;

	switch (c->state) {
	case CONN_CONNECTING:
		ev = EPOLLOUT;
		break;
	case CONN_HANDSHAKE:
		ev = c->hs_wants_write ? EPOLLOUT : EPOLLIN;
		break;
	case CONN_OPEN:
		if (c->reading)
			ev |= c->rd_wants_write ? EPOLLOUT : EPOLLIN;
		if (c->shead != NULL)
			ev |= c->wr_wants_read ? EPOLLIN : EPOLLOUT;
		break;
	case CONN_CLOSING:
		ev = c->rd_wants_write ? EPOLLOUT : EPOLLIN;
		if (c->shead != NULL || !c->shut_sent)
			ev |= c->wr_wants_read ? EPOLLIN : EPOLLOUT;
		break;
	case CONN_DEAD:
		return;
	}
	if ((rc = loop_fd_mod(c->io, ev)) < 0)
		conn_fail(c, "event loop: %s", strerror(-rc));
}

/*
 * Receiving.
 */

/* Makes room to read into: the frame being assembled must fit whole. */
static int
conn_recv_room(struct conn *c)
{
	size_t flen, want = CONN_RECV_MIN;
	uint8_t *p;

	wire_frame_peek(c->rbuf, c->rlen, &flen);
	if (flen > want)
		want = flen;	/* <= CONN_RECV_MAX: checked by the peek */
	if (c->rcap >= want && c->rcap > c->rlen)
		return 0;
	if ((p = realloc(c->rbuf, want)) == NULL)
		return -ENOMEM;
	c->rbuf = p;
	c->rcap = want;
	return 0;
}

/* After a large frame: back to the usual size. */
static void
conn_recv_shrink(struct conn *c)
{
	size_t flen;
	uint8_t *p;

	if (c->rcap <= CONN_RECV_MIN || c->rlen > CONN_RECV_MIN)
		return;
	wire_frame_peek(c->rbuf, c->rlen, &flen);
	if (flen > CONN_RECV_MIN)
		return;
	if ((p = realloc(c->rbuf, CONN_RECV_MIN)) != NULL) {
		c->rbuf = p;
		c->rcap = CONN_RECV_MIN;
	}
}

/* Hands the complete frames in the buffer to on_frame, while allowed. */
static void
conn_deliver(struct conn *c)
{
	size_t off = 0, flen;
	const uint8_t *f;
	int rc;

	while (c->state == CONN_OPEN && c->reading && off < c->rlen) {
		rc = wire_frame_peek(c->rbuf + off, c->rlen - off, &flen);
		if (rc == 0)
			break;
		if (rc == -EMSGSIZE) {
			conn_fail(c, "frame too large: %zu bytes",
			    flen - WIRE_HEADER);
			return;
		}
		if (rc < 0) {
			conn_fail(c, "bad frame: zero length");
			return;
		}
		f = c->rbuf + off;
		off += flen;
		c->stats.frames_in++;
		if (c->cb.on_frame != NULL)
			c->cb.on_frame(c->arg, c, f[WIRE_HEADER],
			    f + WIRE_HEADER + 1, flen - WIRE_HEADER - 1);
	}
	if (off > 0) {
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
		conn_recv_shrink(c);
	}
}

static void
conn_read(struct conn *c)
{
	size_t budget = CONN_READ_BUDGET, got;
	struct err e;
	int rc;

	c->rd_wants_write = false;
	for (;;) {
		conn_deliver(c);
		if (c->state != CONN_OPEN || !c->reading)
			return;
		if (budget == 0) {
			loop_task_post(c->kick);
			return;
		}
		if (conn_recv_room(c) < 0) {
			conn_fail(c, "receive buffer: out of memory");
			return;
		}
		rc = tls_read(c->tls, c->rbuf + c->rlen, c->rcap - c->rlen,
		    &got, &e);
		switch (rc) {
		case TLS_OK:
			c->rlen += got;
			c->stats.bytes_in += got;
			budget -= got < budget ? got : budget;
			continue;
		case TLS_WANT_READ:
			return;
		case TLS_WANT_WRITE:
			c->rd_wants_write = true;
			return;
		case TLS_EOF:
			if (c->rlen > 0)
				conn_fail(c, "connection closed by peer in "
				    "the middle of a frame");
			else
				conn_fail(c, "connection closed by peer");
			return;
		default:
			conn_fail(c, "%s", e.msg);
			return;
		}
	}
}

/* CLOSING: reads and drops until the peer's EOF. */
static void
conn_drain(struct conn *c)
{
	size_t budget = CONN_READ_BUDGET, got;
	struct err e;
	int rc;

	c->rd_wants_write = false;
	c->rlen = 0;
	while (c->state == CONN_CLOSING) {
		if (budget == 0) {
			loop_task_post(c->kick);
			return;
		}
		if (conn_recv_room(c) < 0) {
			conn_end(c);
			return;
		}
		rc = tls_read(c->tls, c->rbuf, c->rcap, &got, &e);
		if (rc == TLS_OK) {
			budget -= got < budget ? got : budget;
			continue;
		}
		if (rc == TLS_WANT_WRITE)
			c->rd_wants_write = true;
		if (rc != TLS_WANT_READ && rc != TLS_WANT_WRITE)
			conn_end(c);	/* EOF or error: done either way */
		return;
	}
}

/*
 * Sending.
 */

static void
conn_flush(struct conn *c)
{
	struct conn_chunk *k;
	size_t put;
	struct err e;
	int rc;

	c->wr_wants_read = false;
	while ((k = c->shead) != NULL) {
		int unsent = 0;		/* valgrind does not know SIOCOUTQNSD */

		/* TCP_NOTSENT_LOWAT wakes us when it drains below this */
		if (ioctl(c->fd, SIOCOUTQNSD, &unsent) == 0 &&
		    unsent >= (int)CONN_UNSENT_MAX)
			break;
		rc = tls_write(c->tls, k->data + k->off, k->len - k->off, &put,
		    &e);
		if (rc == TLS_OK) {
			k->off += put;
			c->queued -= put;
			c->stats.bytes_out += put;
			if (k->off == k->len) {
				if ((c->shead = k->next) == NULL)
					c->stail = NULL;
				free(k);
			}
			continue;
		}
		if (rc == TLS_WANT_READ)
			c->wr_wants_read = true;
		else if (rc < 0) {
			conn_fail(c, "%s", e.msg);
			return;
		}
		break;
	}
	if (c->state == CONN_OPEN && c->want_writable && c->queued <= c->low) {
		c->want_writable = false;
		c->low = CONN_SEND_LOW;
		if (c->cb.on_writable != NULL)
			c->cb.on_writable(c->arg, c);
	}
	if (c->state == CONN_CLOSING && c->shead == NULL && !c->shut_sent) {
		rc = tls_shutdown(c->tls, &e);
		if (rc == TLS_OK) {
			c->shut_sent = true;
			shutdown(c->fd, SHUT_WR);
		} else if (rc == TLS_WANT_READ)
			c->wr_wants_read = true;
		else if (rc < 0)
			conn_end(c);
	}
}

static int
conn_queue(struct conn *c, const void *p, size_t len)
{
	struct conn_chunk *k = c->stail, *fresh = NULL;
	size_t room, first, cap;

	if (c->state == CONN_CLOSING || c->state == CONN_DEAD)
		return -EPIPE;
	if (len > CONN_SEND_MAX)
		return -EMSGSIZE;
	if (len > CONN_SEND_MAX - c->queued) {
		c->want_writable = true;
		return -ENOBUFS;
	}
	if (len == 0)
		return 0;
	room = k != NULL ? k->cap - k->len : 0;
	first = len < room ? len : room;
	if (len > first) {
		cap = len - first > CONN_CHUNK ? len - first : CONN_CHUNK;
		if ((fresh = malloc(sizeof(*fresh) + cap)) == NULL)
			return -ENOMEM;
		fresh->next = NULL;
		fresh->off = 0;
		fresh->len = len - first;
		fresh->cap = cap;
		memcpy(fresh->data, (const uint8_t *)p + first, len - first);
	}
	if (first > 0) {
		memcpy(k->data + k->len, p, first);
		k->len += first;
	}
	if (fresh != NULL) {
		if (k != NULL)
			k->next = fresh;
		else
			c->shead = fresh;
		c->stail = fresh;
	}
	c->queued += len;
	if (c->queued > CONN_SEND_LOW)
		c->want_writable = true;
	if (c->state == CONN_OPEN)
		conn_update(c);
	return 0;
}

int
conn_send(struct conn *c, const void *p, size_t len)
{
	const uint8_t *q = p;
	size_t off = 0, flen;
	uint64_t frames = 0;
	int rc;

	while (off < len) {
		if (wire_frame_peek(q + off, len - off, &flen) <= 0)
			return -EINVAL;
		off += flen;
		frames++;
	}
	if (len == 0)
		return -EINVAL;
	if ((rc = conn_queue(c, p, len)) == 0)
		c->stats.frames_out += frames;
	return rc;
}

int
conn_send_raw(struct conn *c, const void *p, size_t len)
{
	return conn_queue(c, p, len);
}

size_t
conn_send_space(const struct conn *c)
{
	if (c->state == CONN_CLOSING || c->state == CONN_DEAD)
		return 0;
	return CONN_SEND_MAX - c->queued;
}

size_t
conn_send_queued(const struct conn *c)
{
	return c->queued;
}

void
conn_want_writable(struct conn *c, size_t below)
{
	if (!c->want_writable || below < c->low)
		c->low = below;
	c->want_writable = true;
}

/*
 * Connecting and the handshake.
 */

static void
conn_handshake(struct conn *c)
{
	struct err e;
	int rc;

	rc = tls_handshake(c->tls, &e);
	switch (rc) {
	case TLS_OK:
		break;
	case TLS_WANT_READ:
	case TLS_WANT_WRITE:
		c->hs_wants_write = rc == TLS_WANT_WRITE;
		conn_update(c);
		return;
	case TLS_EOF:
		conn_fail(c, "tls handshake: connection closed by peer");
		return;
	default:
		conn_fail(c, "tls handshake: %s", e.msg);
		return;
	}
	loop_timer_cancel(c->timer);
	snprintf(c->peer_id, sizeof(c->peer_id), "%s", tls_peer_id(c->tls));
	c->state = CONN_OPEN;
	log_debug("connection %s peer %s: tls established", c->addr,
	    c->peer_id);
	if (c->cb.on_open != NULL)
		c->cb.on_open(c->arg, c);
	/* TLS may already hold application data; frames may be queued */
	conn_progress(c);
}

static void
conn_connected(struct conn *c)
{
	struct err e;
	socklen_t len = sizeof(int);
	int err = 0, rc;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0) {
		conn_fail(c, "connect: %s", strerror(err));
		return;
	}
	if ((rc = tls_open(&c->tls, c->ctx, c->fd, false, &e)) < 0) {
		conn_fail(c, "%s", e.msg);
		return;
	}
	c->state = CONN_HANDSHAKE;
	conn_handshake(c);
}

/*
 * Driving.
 */

static void
conn_progress(struct conn *c)
{
	if (c->state == CONN_OPEN && c->reading)
		conn_read(c);
	if (c->state == CONN_OPEN || c->state == CONN_CLOSING)
		conn_flush(c);
	if (c->state == CONN_CLOSING)
		conn_drain(c);
	conn_update(c);
}

static void
conn_io(void *arg, uint32_t events)
{
	struct conn *c = arg;
	socklen_t len = sizeof(int);
	int err = 0;

	switch (c->state) {
	case CONN_CONNECTING:
		conn_connected(c);
		break;
	case CONN_HANDSHAKE:
		conn_handshake(c);
		break;
	case CONN_OPEN:
		if ((events & (EPOLLERR | EPOLLHUP)) && !c->reading) {
			/* not reading, so nothing else would notice */
			getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
			conn_fail(c, "%s", err != 0 ? strerror(err) :
			    "connection closed by peer");
			break;
		}
		conn_progress(c);
		break;
	case CONN_CLOSING:
		conn_progress(c);
		break;
	case CONN_DEAD:
		break;
	}
}

static void
conn_kick(void *arg)
{
	struct conn *c = arg;

	if (c->state == CONN_OPEN || c->state == CONN_CLOSING)
		conn_progress(c);
}

static void
conn_timeout(void *arg)
{
	struct conn *c = arg;

	switch (c->state) {
	case CONN_CONNECTING:
		conn_fail(c, "connect timeout");
		break;
	case CONN_HANDSHAKE:
		conn_fail(c, "handshake timeout");
		break;
	case CONN_CLOSING:
		log_debug("connection %s peer %s: closed before flushing",
		    c->addr, c->peer_id);
		conn_end(c);
		break;
	default:
		break;
	}
}

/*
 * Making one.
 */

static void
conn_format_addr(char *buf, size_t size, const struct sockaddr *sa,
    socklen_t salen)
{
	char host[INET6_ADDRSTRLEN + IF_NAMESIZE], port[8];

	if (getnameinfo(sa, salen, host, sizeof(host), port, sizeof(port),
	    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		snprintf(buf, size, "?");
	else if (sa->sa_family == AF_INET6)
		snprintf(buf, size, "[%s]:%s", host, port);
	else
		snprintf(buf, size, "%s:%s", host, port);
}

static int
conn_new(struct conn **out, struct loop *l, struct tls_ctx *tls, int fd,
    bool server, uint32_t handshake_ms, const struct conn_cb *cb, void *arg,
    struct err *e)
{
	struct conn *c;
	int one = 1, lowat = CONN_UNSENT_MAX, rc;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return err_set(e, -ENOMEM, "connection: out of memory");
	c->low = CONN_SEND_LOW;
	c->l = l;
	c->ctx = tls;
	c->fd = fd;
	c->server = server;
	c->reading = true;
	c->cb = *cb;
	c->arg = arg;
	c->state = server ? CONN_HANDSHAKE : CONN_CONNECTING;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
	if ((rc = loop_timer_add(&c->timer, l, conn_timeout, c, e)) < 0 ||
	    (rc = loop_task_add(&c->task, l, conn_done, c, e)) < 0 ||
	    (rc = loop_task_add(&c->kick, l, conn_kick, c, e)) < 0 ||
	    (server && (rc = tls_open(&c->tls, tls, fd, true, e)) < 0) ||
	    (rc = loop_fd_add(&c->io, l, fd, server ? EPOLLIN : EPOLLOUT,
	    conn_io, c, e)) < 0) {
		tls_close(c->tls);
		loop_task_del(c->kick);
		loop_task_del(c->task);
		loop_timer_del(c->timer);
		free(c);
		return rc;
	}
	if (handshake_ms > 0)
		loop_timer_arm(c->timer, handshake_ms);
	*out = c;
	return 0;
}

int
conn_connect(struct conn **out, struct loop *l, struct tls_ctx *tls,
    const struct sockaddr *sa, socklen_t salen, uint32_t handshake_ms,
    const struct conn_cb *cb, void *arg, struct err *e)
{
	char addr[CONN_ADDR_MAX];
	struct conn *c;
	int fd, rc, saved;

	*out = NULL;
	conn_format_addr(addr, sizeof(addr), sa, salen);
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0) {
		saved = errno;
		return err_set(e, -saved, "connect %s: socket: %s", addr,
		    strerror(saved));
	}
	if ((rc = conn_new(&c, l, tls, fd, false, handshake_ms, cb, arg,
	    e)) < 0) {
		close(fd);
		return rc;
	}
	snprintf(c->addr, sizeof(c->addr), "%s", addr);
	if (connect(fd, sa, salen) < 0 && errno != EINPROGRESS)
		conn_fail(c, "connect: %s", strerror(errno));
	*out = c;
	return 0;
}

int
conn_accept(struct conn **out, struct loop *l, struct tls_ctx *tls, int fd,
    uint32_t handshake_ms, const struct conn_cb *cb, void *arg,
    struct err *e)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	struct conn *c;
	int flags, rc, saved;

	*out = NULL;
	if ((flags = fcntl(fd, F_GETFL)) < 0 ||
	    fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		saved = errno;
		close(fd);
		return err_set(e, -saved, "accept: %s", strerror(saved));
	}
	if ((rc = conn_new(&c, l, tls, fd, true, handshake_ms, cb, arg,
	    e)) < 0) {
		close(fd);
		return rc;
	}
	if (getpeername(fd, (struct sockaddr *)&ss, &sslen) == 0)
		conn_format_addr(c->addr, sizeof(c->addr),
		    (struct sockaddr *)&ss, sslen);
	else
		snprintf(c->addr, sizeof(c->addr), "?");
	*out = c;
	return 0;
}

/*
 * The rest of the interface.
 */

void
conn_set_arg(struct conn *c, void *arg)
{
	c->arg = arg;
}

void
conn_set_reading(struct conn *c, bool on)
{
	if (c->reading == on)
		return;
	c->reading = on;
	if (c->state != CONN_OPEN)
		return;
	if (on)
		loop_task_post(c->kick);	/* frames may be waiting */
	conn_update(c);
}

void
conn_close(struct conn *c, const char *reason)
{
	if (c->state == CONN_CLOSING || c->state == CONN_DEAD)
		return;
	snprintf(c->reason, sizeof(c->reason), "%s", reason);
	if (c->state != CONN_OPEN) {
		conn_end(c);
		return;
	}
	c->state = CONN_CLOSING;
	loop_timer_arm(c->timer, CONN_LINGER_MS);
	conn_update(c);
}

void
conn_abort(struct conn *c, const char *reason)
{
	if (c->state == CONN_DEAD)
		return;
	snprintf(c->reason, sizeof(c->reason), "%s", reason);
	conn_end(c);
}

const char *
conn_peer_id(const struct conn *c)
{
	return c->peer_id;
}

const char *
conn_peer_addr(const struct conn *c)
{
	return c->addr;
}

int
conn_fd(const struct conn *c)
{
	return c->state == CONN_DEAD ? -1 : c->fd;
}

bool
conn_incoming(const struct conn *c)
{
	return c->server;
}

void
conn_stats(const struct conn *c, struct conn_stats *out)
{
	*out = c->stats;
	out->send_queued = c->queued;
	out->recv_buffer = c->rcap;
}

size_t
conn_recv_partial(const struct conn *c, uint8_t *type)
{
	if (c->rlen <= WIRE_HEADER)
		return 0;
	*type = c->rbuf[WIRE_HEADER];
	return c->rlen;
}

bool
conn_stalled(const struct conn *c)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (c->fd < 0 || c->state != CONN_OPEN ||
	    getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return false;
	return ti.tcpi_unacked > 0 && ti.tcpi_backoff > 0;
}
